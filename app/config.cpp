#include "app/config.hpp"

#include <toml++/toml.h>

#include <cctype>

#include <algorithm>
#include <cstdlib>
#include <fstream>
#include <limits>
#include <regex>
#include <map>
#include <set>
#include <sstream>

#include "sinks/kafka_sink.hpp"

namespace chainidx::app {
namespace {

using schema::Error;

struct ConfigError {
  std::string message;
};

[[noreturn]] void fail(const std::string& key, const std::string& problem, const std::string& fix) {
  throw ConfigError{key + ": " + problem + "; " + fix};
}

std::string join(const std::string& prefix, const std::string& key) { return prefix.empty() ? key : prefix + "." + key; }

void check_known(const toml::table& t, const std::string& prefix, const std::set<std::string>& known) {
  for (auto&& [k, v] : t) {
    std::string key(k.str());
    if (!known.contains(key)) {
      std::string list;
      for (auto& n : known) list += (list.empty() ? "" : ", ") + n;
      fail(join(prefix, key), "unknown key", "remove it or use one of: " + list);
    }
  }
}

const toml::table& table_at(const toml::table& t, const std::string& prefix, const std::string& key, bool required) {
  static const toml::table kEmpty;
  const toml::node* n = t.get(key);
  if (!n) {
    if (required) fail(join(prefix, key), "missing section", "add a [" + join(prefix, key) + "] table");
    return kEmpty;
  }
  if (!n->is_table()) fail(join(prefix, key), "expected a table", "write it as [" + join(prefix, key) + "]");
  return *n->as_table();
}

class Reader {
 public:
  explicit Reader(const EnvLookup& env) : env_(env) {}

  std::optional<std::string> string(const toml::table& t, const std::string& prefix, const std::string& key, bool required,
                                    const std::string& example) {
    const toml::node* n = t.get(key);
    if (!n) {
      if (required) fail(join(prefix, key), "missing", "add " + key + " = " + example);
      return std::nullopt;
    }
    if (!n->is_string()) fail(join(prefix, key), "expected a string", "quote it, e.g. " + key + " = " + example);
    return substitute(join(prefix, key), n->as_string()->get());
  }

  /// How an error message may show the value of `key`: quoted as written, or, when it came
  /// (even in part) from the environment, as the file wrote it, so that no substituted secret
  /// reaches a message.
  std::string shown(const std::string& key, const std::string& value) const {
    auto it = raw_.find(key);
    if (it == raw_.end()) return "\"" + value + "\"";
    return "\"" + it->second + "\" (after substitution; value not shown)";
  }

  /// Whether `key`'s value came (even in part) from the environment.
  bool substituted(const std::string& key) const { return raw_.contains(key); }

  std::optional<std::int64_t> integer(const toml::table& t, const std::string& prefix, const std::string& key, bool required,
                                      const std::string& example) {
    const toml::node* n = t.get(key);
    if (!n) {
      if (required) fail(join(prefix, key), "missing", "add " + key + " = " + example);
      return std::nullopt;
    }
    if (!n->is_integer()) fail(join(prefix, key), "expected an integer", "write it without quotes, e.g. " + key + " = " + example);
    return n->as_integer()->get();
  }

  /// A true / false key; `hint` says what each means, for the message when it is neither.
  std::optional<bool> boolean(const toml::table& t, const std::string& prefix, const std::string& key, const std::string& hint) {
    const toml::node* n = t.get(key);
    if (!n) return std::nullopt;
    if (!n->is_boolean()) fail(join(prefix, key), "expected true or false", hint);
    return n->as_boolean()->get();
  }

  std::optional<double> number(const toml::table& t, const std::string& prefix, const std::string& key, const std::string& example) {
    const toml::node* n = t.get(key);
    if (!n) return std::nullopt;
    if (n->is_integer()) return static_cast<double>(n->as_integer()->get());
    if (!n->is_floating_point()) fail(join(prefix, key), "expected a number", "e.g. " + key + " = " + example);
    return n->as_floating_point()->get();
  }

 private:
  // "${VAR}" is replaced from the environment, so secrets stay out of config files.
  std::string substitute(const std::string& key, const std::string& in) {
    std::string out;
    std::size_t pos = 0;
    while (true) {
      auto open = in.find("${", pos);
      if (open == std::string::npos) break;
      auto close = in.find('}', open);
      if (close == std::string::npos) fail(key, "unterminated ${...}", "close it with }");
      std::string var = in.substr(open + 2, close - open - 2);
      if (!std::regex_match(var, std::regex("[A-Za-z_][A-Za-z0-9_]*")))
        fail(key, "\"${" + var + "}\" is not an environment variable name", "use letters, digits and _");
      auto value = env_(var);
      if (!value) fail(key, "environment variable " + var + " is not set", "export " + var + " before starting chainidx");
      out.append(in, pos, open - pos).append(*value);
      pos = close + 1;
      raw_[key] = in;
    }
    out.append(in, pos);
    return out;
  }
  const EnvLookup& env_;
  std::map<std::string, std::string> raw_;  // key -> text before substitution, for keys that had ${...}
};

std::uint64_t in_range(const std::string& key, std::int64_t v, std::int64_t lo, std::int64_t hi, const std::string& fix) {
  if (v < lo || v > hi)
    fail(key, "must be between " + std::to_string(lo) + " and " + std::to_string(hi) + " (got " + std::to_string(v) + ")", fix);
  return static_cast<std::uint64_t>(v);
}

// scheme://host[:port][/path][?query]; host non-empty, port numeric.
void check_url(const std::string& key, const std::string& url, std::initializer_list<const char*> schemes, const std::string& example) {
  static const std::regex kUrl(R"(^([a-z][a-z0-9+.-]*)://([^/?#@]*@)?(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+)(:([0-9]{1,5}))?([/?#].*)?$)");
  std::smatch m;
  std::string allowed;
  for (auto s : schemes) allowed += (allowed.empty() ? "" : " or ") + std::string(s) + "://";
  if (!std::regex_match(url, m, kUrl)) fail(key, "not a valid URL", "write it as " + example);
  bool scheme_ok = false;
  for (auto s : schemes) scheme_ok |= m[1] == s;
  if (!scheme_ok) fail(key, "scheme must be " + allowed, "write it as " + example);
  if (m[5].matched && std::stoi(m[5]) > 65535) fail(key, "port out of range", "use a port from 1 to 65535");
}

void check_host_port(const std::string& key, const std::string& value, const std::string& shown, const std::string& example) {
  static const std::regex kHostPort(R"(^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+):([0-9]{1,5})$)");
  std::smatch m;
  if (!std::regex_match(value, m, kHostPort) || std::stoi(m[2]) > 65535)
    fail(key, "expected host:port (got " + shown + ")", "e.g. " + example);
}

// [kafka]'s security keys and [kafka.properties], checked against each other and by librdkafka.
void read_kafka_security(const toml::table& kafka, Reader& r, Config::Kafka& k) {
  if (auto v = r.string(kafka, "kafka", "security_protocol", false, "\"sasl_ssl\"")) {
    static const std::set<std::string> protocols = {"plaintext", "ssl", "sasl_plaintext", "sasl_ssl"};
    std::string lower = *v;
    std::transform(lower.begin(), lower.end(), lower.begin(), [](unsigned char ch) { return std::tolower(ch); });
    if (!protocols.contains(lower))
      fail("kafka.security_protocol", r.shown("kafka.security_protocol", *v) + " is not a security protocol",
           "use \"plaintext\" (the default), \"ssl\" (TLS), \"sasl_ssl\" (SASL over TLS, what managed clusters ask for) or \"sasl_plaintext\"");
    k.security_protocol = lower;
  }
  const bool sasl = k.security_protocol.starts_with("sasl_");
  const bool tls = k.security_protocol.ends_with("ssl");
  auto text = [&](const char* key, std::string& out, const char* example) {
    if (auto v = r.string(kafka, "kafka", key, false, example)) out = *v;
  };
  text("sasl_mechanism", k.sasl_mechanism, "\"SCRAM-SHA-512\"");
  text("sasl_username", k.sasl_username, "\"indexer\"");
  text("sasl_password", k.sasl_password, "\"${KAFKA_PASSWORD}\"");
  if (sasl) {
    if (k.sasl_mechanism != "PLAIN" && k.sasl_mechanism != "SCRAM-SHA-256" && k.sasl_mechanism != "SCRAM-SHA-512")
      fail("kafka.sasl_mechanism", k.sasl_mechanism.empty() ? "missing (security_protocol is " + k.security_protocol + ")"
                                                            : r.shown("kafka.sasl_mechanism", k.sasl_mechanism) + " is not a SASL mechanism",
           "use \"SCRAM-SHA-512\", \"SCRAM-SHA-256\" or \"PLAIN\", as the cluster's provider says");
    if (k.sasl_username.empty()) fail("kafka.sasl_username", "missing (SASL needs a user)", "add sasl_username = \"...\"");
    if (k.sasl_password.empty())
      fail("kafka.sasl_password", "missing (SASL needs a password)", "export it and add sasl_password = \"${KAFKA_PASSWORD}\"");
  } else {
    for (const char* key : {"sasl_mechanism", "sasl_username", "sasl_password"})
      if (kafka.get(key))
        fail(std::string("kafka.") + key, "is set but security_protocol is " + k.security_protocol,
             "set security_protocol = \"sasl_ssl\" (or \"sasl_plaintext\"), or remove the key");
  }
  auto file = [&](const char* key, std::string& out) {
    auto v = r.string(kafka, "kafka", key, false, "\"/etc/chainidx/kafka.pem\"");
    if (!v) return;
    if (!tls)
      fail(std::string("kafka.") + key, "is set but security_protocol is " + k.security_protocol,
           "set security_protocol = \"ssl\" or \"sasl_ssl\", or remove the key");
    if (!std::ifstream(*v))
      fail(std::string("kafka.") + key, "cannot read " + r.shown(std::string("kafka.") + key, *v), "point it at a readable PEM file");
    out = *v;
  };
  file("ssl_ca_file", k.ssl_ca_file);
  file("ssl_certificate_file", k.ssl_certificate_file);
  file("ssl_key_file", k.ssl_key_file);
  text("ssl_key_password", k.ssl_key_password, "\"${KAFKA_KEY_PASSWORD}\"");
  if (k.ssl_certificate_file.empty() != k.ssl_key_file.empty())
    fail(k.ssl_key_file.empty() ? "kafka.ssl_key_file" : "kafka.ssl_certificate_file", "is missing its pair",
         "mutual TLS needs both ssl_certificate_file and ssl_key_file");

  const toml::table& props = table_at(kafka, "kafka", "properties", false);
  for (auto&& [name, node] : props) {
    const std::string key(name.str());
    const std::string full = "kafka.properties.\"" + key + "\"";
    if (const char* instead = sinks::kafka_property_owner(key))
      fail(full, "is set by chainidx itself", std::string(instead));
    std::string value;
    if (node.is_string()) value = *r.string(props, "kafka.properties", key, true, "\"...\"");
    else if (node.is_integer()) value = std::to_string(node.as_integer()->get());
    else if (node.is_boolean()) value = node.as_boolean()->get() ? "true" : "false";
    else if (node.is_floating_point()) value = std::to_string(node.as_floating_point()->get());
    else fail(full, "expected a string, a number or true/false", "write it as librdkafka's CONFIGURATION.md shows it");
    if (auto problem = sinks::check_kafka_property(key, value))
      fail(full, "librdkafka refuses it: " + (r.substituted("kafka.properties." + key) ? std::string("(value not shown)") : *problem),
           "see librdkafka's CONFIGURATION.md for the property and its values");
    k.properties.emplace_back(key, value);
  }
}

// A contract address: 0x and 40 hex digits; a mixed-case one must carry a valid EIP-55 checksum
// (a typo in a checksummed address is caught here, not by an empty table).
schema::Address read_address(const std::string& key, const std::string& text) {
  schema::Address a;
  if (!schema::parse_fixed(text, a))
    fail(key, "\"" + text + "\" is not an address", "write it as 0x and 40 hex digits, e.g. \"0xA0b86991c6218b36c1d19D4a2e9Eb0cE3606eB48\"");
  const std::string digits = text.substr(2);
  const bool lower = std::none_of(digits.begin(), digits.end(), [](char c) { return std::isupper(static_cast<unsigned char>(c)); });
  const bool upper = std::none_of(digits.begin(), digits.end(), [](char c) { return std::islower(static_cast<unsigned char>(c)); });
  if (!lower && !upper) {
    const std::string hex_lower = schema::to_hex(a).substr(2);
    const schema::Hash32 h = abi::keccak256(hex_lower);
    for (std::size_t i = 0; i < 40; ++i) {
      const int nibble = (h.bytes[i / 2] >> (i % 2 ? 0 : 4)) & 0xf;
      const bool want_upper = std::isalpha(static_cast<unsigned char>(hex_lower[i])) && nibble >= 8;
      if (std::isalpha(static_cast<unsigned char>(digits[i])) && (std::isupper(static_cast<unsigned char>(digits[i])) != 0) != want_upper)
        fail(key, "\"" + text + "\" fails its EIP-55 checksum (a mistyped character?)",
             "copy the address again from its source, or write it all in lower case to skip the check");
    }
  }
  return a;
}

// [[contracts]] below `P` ("" for the top level, "chains[i]" below a chain). ABI paths are
// relative to the config file's folder.
std::vector<abi::ContractEvents> read_contracts(const toml::node* node, const std::string& P, Reader& r, const std::string& base_dir) {
  std::vector<abi::ContractEvents> out;
  if (!node) return out;
  const std::string K = join(P, "contracts");
  if (!node->is_array_of_tables()) fail(K, "expected an array of tables", P.empty() ? "write each contract as a [[contracts]] table" : "write each contract as a [[chains.contracts]] table below its [[chains]]");
  const toml::array& arr = *node->as_array();
  for (std::size_t i = 0; i < arr.size(); ++i) {
    const toml::table& t = *arr[i].as_table();
    const std::string at = K + "[" + std::to_string(i) + "]";
    check_known(t, at, {"name", "address", "abi", "events", "start_block", "factory"});
    abi::ContractEvents c;
    c.name = *r.string(t, at, "name", true, "\"usdc\"");
    if (!std::regex_match(c.name, std::regex("[a-z_][a-z0-9_]{0,39}")))
      fail(at + ".name", r.shown(at + ".name", c.name) + " is not usable in table and topic names",
           "use lower-case letters, digits and _ (starting with a letter), at most 40 characters");
    for (const auto& other : out)
      if (other.name == c.name) fail(at + ".name", "\"" + c.name + "\" names two contracts", "give each [[contracts]] entry its own name");

    const toml::node* addr = t.get("address");
    if (const toml::node* f = t.get("factory")) {
      const std::string fk = at + ".factory";
      if (!f->is_table())
        fail(fk, "expected a table", "write factory = { contract = \"factory\", event = \"PoolCreated\", parameter = \"pool\" }");
      const toml::table& ft = *f->as_table();
      check_known(ft, fk, {"contract", "event", "parameter"});
      c.factory = abi::FactoryRef{*r.string(ft, fk, "contract", true, "\"factory\""), *r.string(ft, fk, "event", true, "\"PoolCreated\""),
                                  *r.string(ft, fk, "parameter", true, "\"pool\"")};
      if (addr)
        fail(at + ".address", "a contract made by a factory takes its addresses from the factory's events",
             "remove `address`, or remove `factory` and list the addresses");
    } else if (!addr) {
      fail(at + ".address", "missing",
           "add address = [\"0x...\"] (one or more addresses of the contract), or factory = { contract, event, parameter } for "
           "contracts a factory makes");
    }
    if (addr && addr->is_string()) {
      c.addresses.push_back(read_address(at + ".address", *r.string(t, at, "address", true, "")));
    } else if (addr && addr->is_array() && !addr->as_array()->empty()) {
      std::size_t j = 0;
      for (const auto& item : *addr->as_array()) {
        const std::string key = at + ".address[" + std::to_string(j++) + "]";
        if (!item.is_string()) fail(key, "expected a string", "quote the address, e.g. \"0xA0b8...eB48\"");
        c.addresses.push_back(read_address(key, item.as_string()->get()));
      }
    } else if (addr) {
      fail(at + ".address", "expected an address or a non-empty array of addresses", "write address = [\"0x...\", ...]");
    }

    const std::string abi_path = *r.string(t, at, "abi", true, "\"abis/erc20.json\"");
    const std::string full = abi_path.starts_with("/") || base_dir.empty() ? abi_path : base_dir + "/" + abi_path;
    std::ifstream in(full);
    if (!in) fail(at + ".abi", "cannot read " + full, "point it at the contract's JSON ABI (a path relative to the config file's folder)");
    std::stringstream text;
    text << in.rdbuf();
    auto events = abi::parse_abi_json(text.str());
    if (!events) fail(at + ".abi", full + ": " + events.error().message, "give a standard Solidity JSON ABI, as solc or forge writes it");
    if (events->empty()) fail(at + ".abi", full + " has no events", "index a contract whose ABI declares events");
    for (const auto& e : *events)
      if (!e.anonymous) c.abi_topics.push_back(e.topic0());

    std::string available;
    for (const auto& e : *events) available += (available.empty() ? "" : ", ") + e.signature();
    if (const toml::node* list = t.get("events")) {
      if (!list->is_array() || list->as_array()->empty())
        fail(at + ".events", "expected a non-empty array of event names", "e.g. events = [\"Transfer\", \"Approval\"], or remove it for every event");
      std::size_t j = 0;
      for (const auto& item : *list->as_array()) {
        const std::string key = at + ".events[" + std::to_string(j++) + "]";
        if (!item.is_string()) fail(key, "expected a string", "name the event, e.g. \"Transfer\"");
        const std::string want = item.as_string()->get();
        const bool by_signature = want.find('(') != std::string::npos;
        std::vector<const abi::Event*> found;
        for (const auto& e : *events)
          if (by_signature ? e.signature() == want : e.name == want) found.push_back(&e);
        if (found.empty())
          fail(key, "\"" + want + "\" is not an event of " + abi_path, "use one of: " + available);
        if (found.size() > 1)
          fail(key, "\"" + want + "\" is overloaded in " + abi_path, "name one by its signature: " + found[0]->signature() + " or " + found[1]->signature());
        if (std::find(c.events.begin(), c.events.end(), *found[0]) != c.events.end())
          fail(key, "\"" + want + "\" is listed twice", "list each event once");
        c.events.push_back(*found[0]);
      }
    } else {
      c.events = std::move(*events);
    }
    if (auto v = r.integer(t, at, "start_block", false, "0"))
      c.start_block = static_cast<std::uint64_t>(in_range(at + ".start_block", *v, 0, std::numeric_limits<std::int64_t>::max(),
                                                          "the first block whose events are decoded, e.g. the contract's deployment block"));
    out.push_back(std::move(c));
  }
  for (std::uint32_t i = 0; i < out.size(); ++i) {
    if (!out[i].factory) continue;
    std::string field;
    auto target = abi::resolve_factory(out, i, field);
    if (target) continue;
    const std::string key = K + "[" + std::to_string(i) + "].factory." + field;
    if (field == "contract") fail(key, target.error().message, "name the [[contracts]] entry whose event makes these contracts");
    if (field == "event")
      fail(key, target.error().message, "name the factory's event that announces each new contract (and keep it in the factory's `events`)");
    fail(key, target.error().message, "name the event's parameter that holds the new contract's address");
  }
  // The names of tables and columns come from the events: refuse what Postgres could not hold.
  auto catalog = abi::EventCatalog::build(out);
  if (!catalog) fail(K, catalog.error().message, "choose the events with `events`, or rename the contract");
  return out;
}

// chain.index = "events" needs contracts, and an eth_getLogs filter that fetches all their logs:
// factory-made contracts' logs are asked for by topic0 alone, which an anonymous event has not.
void check_events_only(const Config::Chain& ch, const std::string& P, const std::string& contracts) {
  if (!ch.index_events_only) return;
  if (ch.contracts.empty())
    fail(P + ".index", "\"events\" with no " + contracts, "name the contracts to index in " + contracts + " tables, or use index = \"all\"");
  const bool factories = std::any_of(ch.contracts.begin(), ch.contracts.end(), [](const auto& c) { return c.factory.has_value(); });
  for (const auto& c : ch.contracts)
    for (const auto& e : c.events)
      if (factories && e.anonymous)
        fail(P + ".index", "\"events\" with factory-made contracts and the anonymous event " + e.name + " of " + c.name +
                               ": no single eth_getLogs filter fetches both (factory-made contracts' logs are asked for by topic0, "
                               "which an anonymous event has not)",
             "leave the anonymous event out with `events`, or use index = \"all\"");
}

// One chain's settings: the [chain] table, or one of [[chains]] (`P` names it in messages).
Config::Chain read_chain(const toml::table& chain, const std::string& P, Reader& r) {
  Config::Chain ch;
  check_known(chain, P, {"name", "chain_id", "confirmations", "start_block", "deep_reorg_policy", "verify_block_hash",
                               "head_stall_timeout_seconds", "tls_ca_file", "endpoints", "ws_ping_interval_seconds",
                               "ws_handshake_timeout_seconds", "http_timeout_seconds", "retry_after_max_seconds",
                               "backoff_initial_ms", "backoff_max_ms", "undecodable_after_rounds", "circuit_failures",
                               "circuit_cooldown_seconds", "endpoint_max_lag_blocks", "block_interval_ms",
                               "repoll_interval_seconds", "repoll_blocks", "verify_with", "contracts", "index", "raw_logs"});
  ch.name = *r.string(chain, P, "name", true, "\"mainnet\"");
  if (!std::regex_match(ch.name, std::regex("[a-z_][a-z0-9_]{0,62}")))
    fail(P + ".name", r.shown(P + ".name", ch.name) + " is not usable as a Postgres schema and Kafka topic prefix",
         "use lower-case letters, digits and _ (starting with a letter), at most 63 characters");
  // At most 2^53 - 1, so that it travels exactly as a JSON number (schema/kafka/README.md).
  ch.chain_id = in_range(P + ".chain_id", *r.integer(chain, P, "chain_id", true, "1"), 1,
                              (std::int64_t{1} << 53) - 1, "set the chain's id as eth_chainId reports it");
  if (const toml::node* n = chain.get("confirmations"); n && n->is_string()) {
    // The node's own block tags instead of a depth: a block is confirmed once the node's safe
    // (or finalized) block is it or above it. The depth stays as the buffer's ceiling.
    const std::string tag = n->as_string()->get();
    if (tag != "safe" && tag != "finalized")
      fail(P + ".confirmations", "unknown block tag \"" + tag + "\"",
           "use a depth such as 12, or \"safe\" / \"finalized\" for chains whose nodes serve those tags");
    ch.confirm_tag = tag;
    ch.confirmations = kMaxConfirmations;
  } else if (auto v = r.integer(chain, P, "confirmations", false, "12")) {
    ch.confirmations = in_range(P + ".confirmations", *v, 1, static_cast<std::int64_t>(kMaxConfirmations),
                                     "set the depth at which a block counts as final, e.g. 12 (64 for Ethereum finality), or \"safe\" / \"finalized\"");
  }
  if (auto v = r.integer(chain, P, "start_block", false, "0"))
    ch.start_block = in_range(P + ".start_block", *v, 0, std::numeric_limits<std::int64_t>::max(), "use a block number >= 0");
  if (auto v = r.string(chain, P, "index", false, "\"all\"")) {
    if (*v != "all" && *v != "events")
      fail(P + ".index", r.shown(P + ".index", *v) + " is not an index mode",
           "use \"all\" (every block, transaction and log, and the contracts' events) or \"events\" (only the contracts' logs and events)");
    ch.index_events_only = *v == "events";
  }
  if (auto v = r.boolean(chain, P, "raw_logs",
                         "write raw_logs = false to keep the contracts' logs out of the logs table and topic (their events are still written), or true"))
    ch.raw_logs = *v;
  if (auto v = r.string(chain, P, "deep_reorg_policy", false, "\"halt\"")) {
    if (*v != "halt") fail(P + ".deep_reorg_policy", "unknown policy " + r.shown(P + ".deep_reorg_policy", *v), "use \"halt\" (the only policy so far)");
  }

  if (auto v = r.boolean(chain, P, "verify_block_hash", "write verify_block_hash = true (or false for chains whose headers are not Ethereum's)"))
    ch.verify_block_hash = *v;

  if (auto v = r.integer(chain, P, "head_stall_timeout_seconds", false, "60"))
    ch.head_stall_timeout_seconds = static_cast<std::uint32_t>(in_range(
        P + ".head_stall_timeout_seconds", *v, 1, 86400, "set it well above the chain's block time, e.g. 60 for Ethereum"));
  if (auto v = r.string(chain, P, "tls_ca_file", false, "\"/etc/chainidx/ca.pem\"")) {
    // Empty means "none", as in the documented example.
    if (!v->empty() && !std::ifstream(*v))
      fail(P + ".tls_ca_file", "cannot read " + r.shown(P + ".tls_ca_file", *v), "point it at a readable PEM file of CA certificates, or remove the key");
    ch.tls_ca_file = *v;
  }
  auto bounded = [&](const char* key, std::uint32_t& out, std::int64_t lo, std::int64_t hi, const char* fix) {
    if (auto v = r.integer(chain, P, key, false, std::to_string(out)))
      out = static_cast<std::uint32_t>(in_range(P + "." + key, *v, lo, hi, fix));
  };
  bounded("ws_ping_interval_seconds", ch.ws_ping_interval_seconds, 1, 3600,
          "set how often an idle WebSocket is pinged, e.g. 10; it counts as dead after two intervals without an answer");
  bounded("ws_handshake_timeout_seconds", ch.ws_handshake_timeout_seconds, 1, 600, "e.g. 10");
  bounded("http_timeout_seconds", ch.http_timeout_seconds, 1, 600, "set the longest one JSON-RPC request may take, e.g. 15");
  bounded("retry_after_max_seconds", ch.retry_after_max_seconds, 0, 86400,
          "set the longest wait a provider's Retry-After may impose, e.g. 60");
  bounded("backoff_initial_ms", ch.backoff_initial_ms, 1, 600000, "e.g. 200");
  bounded("backoff_max_ms", ch.backoff_max_ms, 1, 3600000, "e.g. 30000");
  bounded("undecodable_after_rounds", ch.undecodable_after_rounds, 1, 1000,
          "set how many times every endpoint may send a block that fails validation before the indexer stops, e.g. 5");
  bounded("circuit_failures", ch.circuit_failures, 1, 1000,
          "set how many failures in a row open an endpoint's circuit breaker, e.g. 5");
  bounded("circuit_cooldown_seconds", ch.circuit_cooldown_seconds, 1, 86400,
          "set how long an open circuit sends nothing to its endpoint before one probe, e.g. 60");
  bounded("endpoint_max_lag_blocks", ch.endpoint_max_lag_blocks, 1, 100000,
          "set how many blocks an endpoint's head may trail the best one's before it serves no head, e.g. 5");
  bounded("block_interval_ms", ch.block_interval_ms, 0, 3600000,
          "set the chain's block interval, e.g. 12000 for Ethereum, or 0 to learn it from the heads");
  bounded("repoll_interval_seconds", ch.repoll_interval_seconds, 0, 86400,
          "set how often the newest confirmed blocks' hashes are compared with the node's again, e.g. 60, or 0 for never");
  bounded("repoll_blocks", ch.repoll_blocks, 1, 10000, "set how many of the newest confirmed blocks the re-poll compares, e.g. 64");
  if (ch.backoff_max_ms < ch.backoff_initial_ms)
    fail(P + ".backoff_max_ms", "is below chain.backoff_initial_ms", "make the longest wait at least the first one");

  const toml::node* eps = chain.get("endpoints");
  // How an endpoint table is written: [[chain.endpoints]], or [[chains.endpoints]] below its [[chains]].
  const std::string ep_table = P == "chain" ? "[[chain.endpoints]]" : "[[chains.endpoints]] (below the chain's [[chains]])";
  if (!eps) fail(P + ".endpoints", "missing", "add at least one " + ep_table + " table with ws and http URLs");
  if (!eps->is_array_of_tables()) fail(P + ".endpoints", "expected an array of tables", "write each endpoint as " + ep_table);
  const toml::array& arr = *eps->as_array();
  if (arr.empty()) fail(P + ".endpoints", "empty", "add at least one " + ep_table + " table");
  for (std::size_t i = 0; i < arr.size(); ++i) {
    std::string prefix = P + ".endpoints[" + std::to_string(i) + "]";
    const toml::table& t = *arr[i].as_table();
    check_known(t, prefix, {"name", "ws", "http", "preset", "requests_per_second", "burst", "max_in_flight"});
    EndpointConfig e;
    if (auto v = r.string(t, prefix, "preset", false, "\"alchemy\"")) {
      const auto& presets = endpoint_presets();
      auto it = std::find_if(presets.begin(), presets.end(), [&](const EndpointPreset& p) { return *v == p.name; });
      if (it == presets.end())
        fail(prefix + ".preset", r.shown(prefix + ".preset", *v) + " is not a known preset",
             "use \"alchemy\", \"infura\", \"quicknode\" or \"public\", or leave it out and set requests_per_second, burst and max_in_flight");
      e.preset = *v;
      e.requests_per_second = it->requests_per_second;
      e.burst = it->burst;
      e.max_in_flight = it->max_in_flight;
    }
    if (auto v = r.string(t, prefix, "name", false, "\"alchemy\"")) {
      if (!std::regex_match(*v, std::regex("[A-Za-z0-9_.:-]{1,64}")))
        fail(prefix + ".name", r.shown(prefix + ".name", *v) + " is not a usable endpoint name", "use 1 to 64 letters, digits, _ . : or -");
      e.name = *v;
    }
    e.ws = *r.string(t, prefix, "ws", true, "\"ws://127.0.0.1:8545\"");
    check_url(prefix + ".ws", e.ws, {"ws", "wss"}, "ws://HOST:PORT/PATH or wss://HOST/PATH");
    e.http = *r.string(t, prefix, "http", true, "\"http://127.0.0.1:8545\"");
    check_url(prefix + ".http", e.http, {"http", "https"}, "http://HOST:PORT/PATH or https://HOST/PATH");
    if (auto v = r.number(t, prefix, "requests_per_second", "50")) {
      if (!(*v > 0 && *v <= 1e6)) fail(prefix + ".requests_per_second", "must be above 0 and at most 1000000", "set the provider's rate limit, e.g. 50");
      e.requests_per_second = *v;
    }
    if (auto v = r.integer(t, prefix, "burst", false, "100"))
      e.burst = static_cast<std::uint32_t>(in_range(prefix + ".burst", *v, 1, 1000000, "set how many requests may go at once, e.g. 100"));
    if (auto v = r.integer(t, prefix, "max_in_flight", false, "4"))
      e.max_in_flight = static_cast<std::uint32_t>(in_range(prefix + ".max_in_flight", *v, 1, 256,
                                                            "set how many HTTP requests may be open at once, e.g. 4"));
    ch.endpoints.push_back(std::move(e));
  }
  if (auto v = r.integer(chain, P, "verify_with", false, "0")) {
    const std::int64_t others = static_cast<std::int64_t>(ch.endpoints.size()) - 1;
    ch.verify_with = static_cast<std::uint32_t>(in_range(
        P + ".verify_with", *v, 0, std::max<std::int64_t>(0, others),
        others > 0 ? "set how many other endpoints must confirm each batch's newest hash, at most the number of endpoints less one, or 0 for none"
                   : "verification asks other endpoints: add endpoints, or set 0"));
  }

  return ch;
}

Config build(const toml::table& root, const EnvLookup& env, const std::string& base_dir) {
  Reader r(env);
  Config c;
  check_known(root, "", {"chain", "chains", "postgres", "kafka", "server", "pipeline", "log", "ha", "contracts"});

  const toml::node* one = root.get("chain");
  const toml::node* many = root.get("chains");
  if (one && many)
    fail("chains", "both [chain] and [[chains]] are set", "index one chain with [chain], or several with one [[chains]] table each, not both");
  if (many) {
    if (!many->is_array_of_tables() || many->as_array()->empty())
      fail("chains", "expected one or more [[chains]] tables", "write each chain as a [[chains]] table with the keys of [chain]");
    const toml::array& arr = *many->as_array();
    for (std::size_t i = 0; i < arr.size(); ++i) {
      const std::string P = "chains[" + std::to_string(i) + "]";
      c.chains.push_back(read_chain(*arr[i].as_table(), P, r));
      c.chains.back().contracts = read_contracts(arr[i].as_table()->get("contracts"), P, r, base_dir);
      for (std::size_t j = 0; j < i; ++j) {
        if (c.chains[j].name == c.chains[i].name)
          fail("chains[" + std::to_string(i) + "].name", "\"" + c.chains[i].name + "\" is also chains[" + std::to_string(j) + "]'s name",
               "give each chain its own name: it names the chain's Postgres schema, Kafka topics and metrics");
      }
    }
    if (root.get("contracts"))
      fail("contracts", "top-level [[contracts]] with several chains", "write each chain's contracts as [[chains.contracts]] below its [[chains]] table");
    for (std::size_t i = 0; i < c.chains.size(); ++i) check_events_only(c.chains[i], "chains[" + std::to_string(i) + "]", "[[chains.contracts]]");
  } else {
    const toml::table& chain = table_at(root, "", "chain", true);
    if (chain.get("contracts")) fail("chain.contracts", "contracts belong at the top level", "write them as [[contracts]] tables");
    c.chains.push_back(read_chain(chain, "chain", r));
    c.chains.back().contracts = read_contracts(root.get("contracts"), "", r, base_dir);
    check_events_only(c.chains.back(), "chain", "[[contracts]]");
  }
  c.chain = c.chains.front();

  const toml::table& pg = table_at(root, "", "postgres", true);
  check_known(pg, "postgres", {"url"});
  c.postgres.url = *r.string(pg, "postgres", "url", true, "\"postgresql://127.0.0.1:5432/chainidx\"");
  check_url("postgres.url", c.postgres.url, {"postgresql", "postgres"}, "postgresql://USER:${PGPASSWORD}@HOST:PORT/DATABASE");

  const toml::table& kafka = table_at(root, "", "kafka", true);
  check_known(kafka, "kafka", {"brokers", "partitions", "replication_factor", "transaction_timeout_seconds", "compression",
                               "security_protocol", "sasl_mechanism", "sasl_username", "sasl_password", "ssl_ca_file",
                               "ssl_certificate_file", "ssl_key_file", "ssl_key_password", "properties", "event_topics"});
  read_kafka_security(kafka, r, c.kafka);
  if (auto v = r.string(kafka, "kafka", "event_topics", false, "\"contract\"")) {
    if (*v != "contract" && *v != "event")
      fail("kafka.event_topics", r.shown("kafka.event_topics", *v) + " is not a topic layout",
           "use \"contract\" (one topic per contract, the default) or \"event\" (one per contract event)");
    c.kafka.topic_per_event = *v == "event";
  }
  if (auto v = r.string(kafka, "kafka", "compression", false, "\"lz4\"")) {
    static const std::vector<std::string> codecs = {"none", "gzip", "snappy", "lz4", "zstd"};
    if (std::find(codecs.begin(), codecs.end(), *v) == codecs.end())
      fail("kafka.compression", r.shown("kafka.compression", *v) + " is not a codec", "use \"lz4\" (the default), \"zstd\", \"snappy\", \"gzip\" or \"none\"");
    c.kafka.compression = *v;
  }
  c.kafka.brokers = *r.string(kafka, "kafka", "brokers", true, "\"127.0.0.1:9092\"");
  if (c.kafka.brokers.empty())
    fail("kafka.brokers", "is empty", "set the cluster's bootstrap servers, e.g. \"127.0.0.1:9092\", or \"embedded\" for a development broker");
  if (c.kafka.brokers != "embedded") {
    std::stringstream ss(c.kafka.brokers);
    std::string one;
    while (std::getline(ss, one, ','))
      check_host_port("kafka.brokers", one, r.shown("kafka.brokers", one), "\"127.0.0.1:9092\" or \"embedded\"");
  }
  if (auto v = r.integer(kafka, "kafka", "partitions", false, "3"))
    c.kafka.partitions = static_cast<std::uint32_t>(in_range("kafka.partitions", *v, 1, 10000, "e.g. 3"));
  if (auto v = r.integer(kafka, "kafka", "replication_factor", false, "3"))
    c.kafka.replication_factor = static_cast<std::uint32_t>(in_range("kafka.replication_factor", *v, 1, 100, "e.g. 3 on a real cluster, 1 on the dev broker"));
  if (auto v = r.integer(kafka, "kafka", "transaction_timeout_seconds", false, "60"))
    c.kafka.transaction_timeout_seconds = static_cast<std::uint32_t>(in_range(
        "kafka.transaction_timeout_seconds", *v, 5, 900, "e.g. 60; at most the broker's transaction.max.timeout.ms (900 s by default)"));

  const toml::table& server = table_at(root, "", "server", false);
  check_known(server, "server", {"listen", "ready_max_lag_blocks", "unhealthy_after_seconds", "hold_on_halt", "admin_token"});
  if (auto v = r.string(server, "server", "admin_token", false, "\"${CHAINIDX_ADMIN_TOKEN}\"")) {
    // The token guards replays: a short or guessable one is refused rather than trusted.
    if (v->size() < 16 || v->size() > 256 || v->find_first_of(" \t\r\n") != std::string::npos)
      fail("server.admin_token", "must be 16 to 256 characters without spaces",
           "generate one (e.g. openssl rand -hex 32), export it and write admin_token = \"${CHAINIDX_ADMIN_TOKEN}\"; "
           "remove the key to keep the admin API off");
    c.server.admin_token = *v;
  }

  const toml::table& ha = table_at(root, "", "ha", false);
  check_known(ha, "ha", {"lease_seconds"});
  if (auto v = r.integer(ha, "ha", "lease_seconds", false, "15"))
    c.ha.lease_seconds = static_cast<std::uint32_t>(in_range(
        "ha.lease_seconds", *v, 3, 600, "e.g. 15: a standby takes over a leader that has not renewed its lease for this long"));

  const toml::table& log = table_at(root, "", "log", false);
  check_known(log, "log", {"format", "level"});
  if (auto v = r.string(log, "log", "format", false, "\"json\"")) {
    if (*v != "text" && *v != "json")
      fail("log.format", r.shown("log.format", *v) + " is not a log format", "use \"text\" (key=value lines, the default) or \"json\" (one object per line)");
    c.log.format = *v;
  }
  if (auto v = r.string(log, "log", "level", false, "\"info\"")) {
    static const std::set<std::string> levels = {"trace", "debug", "info", "warn", "error", "critical", "off"};
    if (!levels.contains(*v))
      fail("log.level", r.shown("log.level", *v) + " is not a log level", "use one of trace, debug, info (the default), warn, error, critical, off");
    c.log.level = *v;
  }
  if (auto v = r.boolean(server, "server", "hold_on_halt",
                         "write hold_on_halt = true (after a deep-reorg halt, keep serving /healthz and /metrics until stopped) or false (exit at once)"))
    c.server.hold_on_halt = *v;
  if (auto v = r.string(server, "server", "listen", false, "\"127.0.0.1:9464\"")) {
    check_host_port("server.listen", *v, r.shown("server.listen", *v), "\"127.0.0.1:9464\"");
    c.server.listen = *v;
  }
  if (auto v = r.integer(server, "server", "ready_max_lag_blocks", false, "10"))
    c.server.ready_max_lag_blocks = static_cast<std::uint32_t>(
        in_range("server.ready_max_lag_blocks", *v, 0, 1000000, "e.g. 10: /readyz answers 503 while more confirmed blocks wait"));
  if (auto v = r.integer(server, "server", "unhealthy_after_seconds", false, "300"))
    c.server.unhealthy_after_seconds = static_cast<std::uint32_t>(in_range(
        "server.unhealthy_after_seconds", *v, 10, 86400, "e.g. 300: /healthz answers 503 once a sink write has failed this long"));

  const toml::table& pipeline = table_at(root, "", "pipeline", false);
  check_known(pipeline, "pipeline",
              {"batch_blocks", "sink_retry_initial_ms", "sink_retry_max_ms", "max_batch_delay_ms", "range_batch_blocks", "range_buffer_mb",
               "stage_ahead", "log_range_blocks", "log_range_max_blocks"});
  if (auto v = r.string(pipeline, "pipeline", "stage_ahead", false, "\"postgres\"")) {
    if (*v != "off" && *v != "postgres" && *v != "all")
      fail("pipeline.stage_ahead", r.shown("pipeline.stage_ahead", *v) + " is not a staging mode",
           "use \"postgres\" (the default), \"all\" (Kafka too: only on a cluster whose read_committed consumers never see aborted "
           "transactions) or \"off\"");
    c.pipeline.stage_ahead = *v;
  }
  if (auto v = r.integer(pipeline, "pipeline", "range_batch_blocks", false, "50"))
    c.pipeline.range_batch_blocks = static_cast<std::uint32_t>(in_range("pipeline.range_batch_blocks", *v, 1, 1000,
                                                                        "set how many blocks one JSON-RPC batch of history asks for, e.g. 50"));
  if (auto v = r.integer(pipeline, "pipeline", "range_buffer_mb", false, "64"))
    c.pipeline.range_buffer_mb = static_cast<std::uint32_t>(in_range("pipeline.range_buffer_mb", *v, 1, 65536,
                                                                     "set how many MiB of fetched history may wait for the sinks, e.g. 64"));
  if (auto v = r.integer(pipeline, "pipeline", "log_range_blocks", false, "2000"))
    c.pipeline.log_range_blocks = static_cast<std::uint32_t>(in_range("pipeline.log_range_blocks", *v, 1, 10000000,
                                                                      "set how many blocks the first eth_getLogs query of logs-only history spans, e.g. 2000"));
  if (auto v = r.integer(pipeline, "pipeline", "log_range_max_blocks", false, "100000"))
    c.pipeline.log_range_max_blocks = static_cast<std::uint32_t>(in_range("pipeline.log_range_max_blocks", *v, c.pipeline.log_range_blocks, 10000000,
                                                                          "set the widest eth_getLogs query, at least pipeline.log_range_blocks"));
  if (auto v = r.integer(pipeline, "pipeline", "max_batch_delay_ms", false, "2000"))
    c.pipeline.max_batch_delay_ms = static_cast<std::uint32_t>(in_range(
        "pipeline.max_batch_delay_ms", *v, 0, 3600000, "set how long a confirmed block may wait for its batch to fill, e.g. 2000"));
  if (auto v = r.integer(pipeline, "pipeline", "batch_blocks", false, "100"))
    c.pipeline.batch_blocks = static_cast<std::uint32_t>(in_range("pipeline.batch_blocks", *v, 1, 10000, "e.g. 100"));
  if (auto v = r.integer(pipeline, "pipeline", "sink_retry_initial_ms", false, "500"))
    c.pipeline.sink_retry_initial_ms = static_cast<std::uint32_t>(in_range("pipeline.sink_retry_initial_ms", *v, 1, 600000, "e.g. 500"));
  if (auto v = r.integer(pipeline, "pipeline", "sink_retry_max_ms", false, "30000"))
    c.pipeline.sink_retry_max_ms = static_cast<std::uint32_t>(in_range("pipeline.sink_retry_max_ms", *v, 1, 3600000, "e.g. 30000"));
  if (c.pipeline.sink_retry_max_ms < c.pipeline.sink_retry_initial_ms)
    fail("pipeline.sink_retry_max_ms", "is below pipeline.sink_retry_initial_ms", "make the longest wait at least the first one");
  return c;
}

}  // namespace

abi::EventCatalog Config::Chain::catalog() const {
  auto c = abi::EventCatalog::build(contracts);
  if (!c) throw std::logic_error("chain " + name + ": the contracts' catalog did not build after validation: " + c.error().message);
  return std::move(*c);
}

std::vector<std::pair<std::string, std::string>> Config::Kafka::client_properties() const {
  std::vector<std::pair<std::string, std::string>> out;
  if (security_protocol != "plaintext") out.emplace_back("security.protocol", security_protocol);
  if (!sasl_mechanism.empty()) out.emplace_back("sasl.mechanisms", sasl_mechanism);
  if (!sasl_username.empty()) out.emplace_back("sasl.username", sasl_username);
  if (!sasl_password.empty()) out.emplace_back("sasl.password", sasl_password);
  if (!ssl_ca_file.empty()) out.emplace_back("ssl.ca.location", ssl_ca_file);
  if (!ssl_certificate_file.empty()) out.emplace_back("ssl.certificate.location", ssl_certificate_file);
  if (!ssl_key_file.empty()) out.emplace_back("ssl.key.location", ssl_key_file);
  if (!ssl_key_password.empty()) out.emplace_back("ssl.key.password", ssl_key_password);
  out.insert(out.end(), properties.begin(), properties.end());
  return out;
}

const std::vector<EndpointPreset>& endpoint_presets() {
  // The providers' documented limits for their entry plans (calls per second, burst,
  // concurrent requests); a paid plan sets its own figures with the explicit keys.
  static const std::vector<EndpointPreset> presets = {
      {"alchemy", 25, 100, 10},
      {"infura", 10, 50, 5},
      {"quicknode", 15, 60, 8},
      {"public", 5, 10, 3},
  };
  return presets;
}

EnvLookup process_env() {
  return [](const std::string& name) -> std::optional<std::string> {
    const char* v = std::getenv(name.c_str());
    if (!v) return std::nullopt;
    return std::string(v);
  };
}

schema::Result<Config> parse_config(const std::string& text, const std::string& source, const EnvLookup& env) {
  try {
    toml::table root = toml::parse(text, source);
    const auto slash = source.rfind('/');
    return build(root, env, slash == std::string::npos ? std::string(".") : source.substr(0, slash));
  } catch (const toml::parse_error& e) {
    std::ostringstream m;
    m << source << ":" << e.source().begin.line << ":" << e.source().begin.column << ": TOML syntax error: " << e.description();
    return Error{m.str()};
  } catch (const ConfigError& e) {
    return Error{source + ": " + e.message};
  }
}

schema::Result<Config> load_config(const std::string& path, const EnvLookup& env) {
  std::ifstream in(path);
  if (!in) return Error{path + ": cannot read the config file; check the path given to --config"};
  std::stringstream ss;
  ss << in.rdbuf();
  return parse_config(ss.str(), path, env);
}

}  // namespace chainidx::app

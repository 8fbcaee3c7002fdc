#include "sinks/kafka_message.hpp"

#include "schema/tx_json.hpp"

#include <algorithm>
#include <charconv>

namespace chainidx::sinks {
namespace {

// A JSON object writer for the values we emit: keys are literals and strings are hex or
// validated names, so no escaping is needed. Each field has one JSON type whatever its value
// (schema/kafka/README.md): num() for integers bounded below 2^53, dec() for 64-bit quantities
// that the protocol lets exceed it (gas, nonce), u256() for 256-bit ones.
class Json {
 public:
  Json() {
    s_.reserve(1024);
    s_.push_back('{');
  }
  Json& num(const char* key, std::uint64_t v) {
    this->key(key);
    append_number(v);
    return *this;
  }
  Json& dec(const char* key, std::uint64_t v) {
    this->key(key);
    s_.push_back('"');
    append_number(v);
    s_.push_back('"');
    return *this;
  }
  Json& str(const char* key, std::string_view v) {
    this->key(key);
    s_.push_back('"');
    s_.append(v);
    s_.push_back('"');
    return *this;
  }
  Json& hex(const char* key, const std::uint8_t* data, std::size_t size) {
    this->key(key);
    append_hex(data, size);
    return *this;
  }
  template <std::size_t N>
  Json& hex(const char* key, const schema::FixedBytes<N>& v) { return hex(key, v.data(), N); }
  Json& hex(const char* key, const schema::Bytes& v) { return hex(key, v.data(), v.size()); }
  template <class T>
  Json& opt_hex(const char* key, const std::optional<T>& v) { return v ? hex(key, *v) : raw(key, "null"); }
  Json& hashes(const char* key, std::span<const schema::Hash32> values) {
    this->key(key);
    schema::append_hashes_json(s_, values);
    return *this;
  }
  Json& u256(const char* key, const schema::U256& v) { return str(key, v.to_decimal()); }
  /// Any UTF-8 text, escaped.
  Json& text(const char* key, std::string_view v) {
    this->key(key);
    schema::append_json_string(s_, v);
    return *this;
  }
  Json& opt_u256(const char* key, const std::optional<schema::U256>& v) { return v ? u256(key, *v) : raw(key, "null"); }
  template <class T>
  Json& opt_num(const char* key, const std::optional<T>& v) { return v ? num(key, *v) : raw(key, "null"); }
  Json& raw(const char* key, std::string_view v) {
    this->key(key);
    s_.append(v);
    return *this;
  }
  std::string done() {
    s_.push_back('}');
    return std::move(s_);
  }

 private:
  void key(const char* key) {
    if (s_.size() > 1) s_.push_back(',');
    s_.push_back('"');
    s_.append(key);
    s_.append("\":");
  }
  void append_number(std::uint64_t v) {
    char digits[20];
    auto end = std::to_chars(digits, digits + sizeof digits, v).ptr;
    s_.append(digits, end);
  }
  void append_hex(const std::uint8_t* data, std::size_t size) {
    s_.append("\"0x");
    schema::append_hex_digits(s_, data, size);
    s_.push_back('"');
  }
  std::string s_;
};

// The `args` object of a decoded event: each column's value under its key, in its JSON form.
std::string args_json(const schema::EventTable& table, const schema::DecodedEvent& e) {
  std::string s = "{";
  for (std::size_t i = 0; i < table.columns.size(); ++i) {
    const schema::EventColumn& c = table.columns[i];
    const schema::EventArg& a = e.args[i];
    if (i) s.push_back(',');
    schema::append_json_string(s, c.key);
    s.push_back(':');
    switch (c.kind) {
      case schema::ArgKind::kInteger:
        if (c.json_number) {
          s.append(a.text);
        } else {
          s.push_back('"');
          s.append(a.text);
          s.push_back('"');
        }
        break;
      case schema::ArgKind::kBool: s.append(a.boolean ? "true" : "false"); break;
      case schema::ArgKind::kBytes:
        s.append("\"0x");
        schema::append_hex_digits(s, a.bytes.data(), a.bytes.size());
        s.push_back('"');
        break;
      case schema::ArgKind::kText: schema::append_json_string(s, a.text); break;
      case schema::ArgKind::kJson: s.append(a.text); break;
    }
  }
  s.push_back('}');
  return s;
}

}  // namespace

EventTopics::EventTopics(std::vector<schema::EventTable> t, bool per_event) : tables(std::move(t)) {
  for (const auto& table : tables) {
    // The table is <contract>_<event in snake_case>: its event part names the event's topic.
    std::string suffix = "events." + table.contract;
    if (per_event) suffix += "." + table.table.substr(table.contract.size() + 1);
    auto at = std::find(suffixes.begin(), suffixes.end(), suffix);
    if (at == suffixes.end()) at = suffixes.insert(suffixes.end(), suffix);
    topic_of.push_back(static_cast<std::uint32_t>(at - suffixes.begin()));
  }
}

std::vector<std::string> topic_names(const std::string& prefix, const EventTopics& events) {
  std::vector<std::string> names;
  for (int i = 0; i < 3; ++i) names.push_back(prefix + "." + kTopicSuffixes[i]);
  if (events.empty()) return names;
  names.push_back(prefix + "." + kTopicSuffixes[static_cast<int>(Topic::kUndecodable)]);
  for (const auto& suffix : events.suffixes) names.push_back(prefix + "." + suffix);
  return names;
}

std::string event_message_schema(const schema::EventTable& table, const std::vector<std::string>& arg_schemas) {
  const std::string hash = R"({"type":"string","pattern":"^0x[0-9a-f]{64}$"})";
  const std::string index = R"({"type":"integer","minimum":0,"maximum":9007199254740991})";
  auto constant = [](const std::string& v) {
    std::string s = R"({"const":)";
    schema::append_json_string(s, v);
    return s + "}";
  };
  std::string args_properties, args_required;
  for (std::size_t i = 0; i < table.columns.size(); ++i) {
    std::string key;
    schema::append_json_string(key, table.columns[i].key);
    args_properties += (i ? "," : "") + key + ":" + arg_schemas.at(i);
    args_required += (i ? "," : "") + key;
  }
  std::string title, id;
  schema::append_json_string(title, table.contract + "." + table.event + ": " + table.signature);
  schema::append_json_string(id, "chainidx/events/" + table.contract + "/" + table.event);
  return R"({"$schema":"https://json-schema.org/draft/2020-12/schema","$id":)" + id + R"(,"title":)" + title +
         R"(,"description":"One message per decoded log of this event in a confirmed block. Key: the contract address. Header chain_id.")"
         R"(,"type":"object","additionalProperties":false,"required":["chain_id","block_number","block_hash","block_timestamp",)"
         R"("transaction_hash","transaction_index","log_index","address","contract","event","signature","args"],"properties":{)"
         R"("chain_id":)" + index + R"(,"block_number":)" + index + R"(,"block_hash":)" + hash + R"(,"block_timestamp":)" + index +
         R"(,"transaction_hash":)" + hash + R"(,"transaction_index":)" + index + R"(,"log_index":)" + index +
         R"(,"address":{"type":"string","pattern":"^0x[0-9a-f]{40}$"},"contract":)" + constant(table.contract) +
         R"(,"event":)" + constant(table.event) + R"(,"signature":)" + constant(table.signature) +
         R"(,"args":{"type":"object","additionalProperties":false,"properties":{)" + args_properties + R"(},"required":[)" +
         args_required + "]}}}";
}

namespace {

void encode_events(std::vector<KafkaMessage>& out, const schema::Block& b, std::uint64_t chain_id, const EventTopics& topics) {
  for (const auto& e : b.events) {
    const schema::Log& g = b.logs.at(e.log);
    const schema::EventTable& table = topics.tables.at(e.table);
    Json j;
    j.num("chain_id", chain_id)
        .num("block_number", g.block_number)
        .hex("block_hash", g.block_hash)
        .num("block_timestamp", b.timestamp)
        .hex("transaction_hash", g.transaction_hash)
        .num("transaction_index", g.transaction_index)
        .num("log_index", g.log_index)
        .hex("address", g.address)
        .str("contract", table.contract);
    if (e.decoded()) {
      j.str("event", table.event).str("signature", table.signature).raw("args", args_json(table, e));
      out.push_back({Topic::kEvents, topics.topic_of[e.table], schema::to_hex(g.address), j.done()});
    } else {
      j.str("signature", table.signature).hashes("topics", g.topics).hex("data", g.data).text("reason", e.error);
      out.push_back({Topic::kUndecodable, 0, schema::to_hex(g.address), j.done()});
    }
  }
}

}  // namespace

std::vector<KafkaMessage> encode_block(const schema::Block& b, std::uint64_t chain_id, const std::string& chain_name,
                                       const EventTopics* events, bool raw_logs) {
  std::vector<KafkaMessage> out;
  out.reserve(1 + b.transactions.size() + (raw_logs ? b.logs.size() : 0) + b.events.size());
  if (!b.sparse)  // a sparse block (chain.index = "events") is known by its logs alone
    out.push_back({Topic::kBlocks, 0, chain_name,
                   Json()
                       .num("chain_id", chain_id)
                       .num("block_number", b.number)
                       .hex("block_hash", b.hash)
                       .hex("parent_hash", b.parent_hash)
                       .num("timestamp", b.timestamp)
                       .hex("miner", b.miner)
                       .dec("gas_limit", b.gas_limit)
                       .dec("gas_used", b.gas_used)
                       .opt_u256("base_fee_per_gas", b.base_fee_per_gas)
                       .opt_u256("total_difficulty", b.total_difficulty)
                       .num("transaction_count", b.transaction_count)
                       .num("log_count", b.logs.size())
                       .raw("withdrawals", schema::withdrawals_json(b.withdrawals))
                       .done()});
  for (const auto& t : b.transactions) {
    out.push_back({Topic::kTransactions, 0, schema::to_hex(t.from_address),
                   Json()
                       .num("chain_id", chain_id)
                       .num("block_number", t.block_number)
                       .hex("block_hash", t.block_hash)
                       .num("transaction_index", t.transaction_index)
                       .hex("transaction_hash", t.hash)
                       .hex("from_address", t.from_address)
                       .opt_hex("to_address", t.to_address)
                       .u256("value", t.value)
                       .dec("gas", t.gas)
                       .opt_u256("gas_price", t.gas_price)
                       .hex("input", t.input)
                       .dec("nonce", t.nonce)
                       .num("type", t.type)
                       .opt_num("status", t.status)
                       .opt_hex("root", t.root)
                       .dec("gas_used", t.gas_used)
                       .opt_u256("effective_gas_price", t.effective_gas_price)
                       .opt_hex("contract_address", t.contract_address)
                       .opt_u256("v", t.v)
                       .opt_u256("r", t.r)
                       .opt_u256("s", t.s)
                       .opt_num("y_parity", t.y_parity)
                       .opt_num("tx_chain_id", t.chain_id)
                       .raw("access_list", t.access_list ? schema::access_list_json(*t.access_list) : "null")
                       .opt_u256("max_fee_per_blob_gas", t.max_fee_per_blob_gas)
                       .raw("blob_versioned_hashes", t.type == 3 || !t.blob_versioned_hashes.empty()
                                                         ? schema::hashes_json(t.blob_versioned_hashes)
                                                         : "null")
                       .raw("authorization_list", t.authorization_list ? schema::authorization_list_json(*t.authorization_list) : "null")
                       .opt_hex("logs_bloom", t.logs_bloom)
                       .done()});
  }
  if (raw_logs) {
    for (const auto& g : b.logs) {
      out.push_back({Topic::kLogs, 0, schema::to_hex(g.address),
                     Json()
                         .num("chain_id", chain_id)
                         .num("block_number", g.block_number)
                         .hex("block_hash", g.block_hash)
                         .num("log_index", g.log_index)
                         .hex("transaction_hash", g.transaction_hash)
                         .num("transaction_index", g.transaction_index)
                         .hex("address", g.address)
                         .hashes("topics", g.topics)
                         .hex("data", g.data)
                         .done()});
    }
  }
  if (events && !events->empty()) encode_events(out, b, chain_id, *events);
  return out;
}

}  // namespace chainidx::sinks

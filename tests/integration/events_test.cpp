// Decoded contract events end to end: [[contracts]] in the config, logs of real contracts on anvil
// (an ERC-20-style Transfer emitter and a contract that emits whatever log its caller asks for),
// decoded into typed Postgres tables and <chain>.events.<contract> topics, with values held
// against what foundry's `cast` (an ABI implementation that is not ours) decodes from the same
// data; logs that do not decode land in the dead-letter table and topic; a reorg below the depth
// leaves no orphaned event; an ABI change that would alter a table is refused.

#include <gtest/gtest.h>
#include <pqxx/pqxx>
#include <simdjson.h>

#include <atomic>
#include <csignal>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <regex>
#include <set>
#include <thread>

#include "chain_checks.hpp"
#include "fault_proxy.hpp"
#include "harness.hpp"

namespace chainidx::testing {
namespace {

// A contract whose every call emits one log: calldata word 0 is the topic count k (0..4), words
// 1..k the topics, the rest the data. Init code copies the 57-byte runtime and returns it; the
// runtime copies the data to memory, loads four topic words and jumps to LOGk in a table of
// JUMPDEST LOGk STOP entries at 0x2a.
constexpr const char* kLogEmitterInitCode =
    "0x603980600b6000396000f3"
    "6000358060010160051b803603809160003760803560603560403560203584600087600302602a0156005ba0005ba1005ba2005ba3005ba400";

constexpr const char* kRichAbi = R"([
  {"type": "event", "name": "Transfer", "anonymous": false, "inputs": [
    {"name": "from", "type": "address", "indexed": true},
    {"name": "to", "type": "address", "indexed": true},
    {"name": "value", "type": "uint256", "indexed": false}]},
  {"type": "event", "name": "Rich", "anonymous": false, "inputs": [
    {"name": "tag", "type": "string", "indexed": true},
    {"name": "delta", "type": "int64", "indexed": false},
    {"name": "note", "type": "string", "indexed": false},
    {"name": "blob", "type": "bytes", "indexed": false},
    {"name": "levels", "type": "uint16[]", "indexed": false},
    {"name": "items", "type": "tuple[]", "indexed": false, "components": [
      {"name": "kind", "type": "uint8"}, {"name": "pair", "type": "bytes32[2]"}]},
    {"name": "flag", "type": "bool", "indexed": false}]},
  {"type": "event", "name": "Ping", "anonymous": true, "inputs": [
    {"name": "who", "type": "address", "indexed": true},
    {"name": "n", "type": "uint256", "indexed": false}]},
  {"type": "function", "name": "poke", "stateMutability": "nonpayable", "inputs": [], "outputs": []}
])";

constexpr const char* kRichTypes = "(int64,string,bytes,uint16[],(uint8,bytes32[2])[],bool)";
constexpr const char* kRichSignature = "Rich(string,int64,string,bytes,uint16[],(uint8,bytes32[2])[],bool)";
// The non-indexed parameters with their names, as `cast decode-event` reads the data.
constexpr const char* kRichDataSignature =
    "E(int64 delta,string note,bytes blob,uint16[] levels,(uint8,bytes32[2])[] items,bool flag)";
constexpr const char* kTransferTopic0 = "0xddf252ad1be2c89b69c2b068fc378daa952ba7f163c4a11628f55a4df523b3ef";

std::string word(std::uint64_t v) {
  char buf[65];
  std::snprintf(buf, sizeof buf, "%064llx", static_cast<unsigned long long>(v));
  return buf;
}

std::string strip0x(const std::string& hex) { return hex.rfind("0x", 0) == 0 ? hex.substr(2) : hex; }

// A topic word holding an address.
std::string address_topic(const std::string& address) { return "0x" + std::string(24, '0') + strip0x(address); }

// Has the log emitter at `emitter` emit one log with these topics and data.
void emit(const Anvil& anvil, const std::string& emitter, int account, const std::vector<std::string>& topics,
          const std::string& data) {
  std::string calldata = "0x" + word(topics.size());
  for (const auto& t : topics) calldata += strip0x(t);
  calldata += strip0x(data);
  anvil.send(account, emitter, calldata);
}

// A value tree as one line: scalars as their text (strings unquoted, numbers as written), arrays
// and objects as [a,b,...] of their values in order. cast writes tuples as arrays and small
// integers as numbers; chainidx writes tuples as objects and 64-bit integers as strings: the same
// values either way.
std::string canon(simdjson::dom::element e) {
  switch (e.type()) {
    case simdjson::dom::element_type::ARRAY: {
      std::string s = "[";
      bool first = true;
      for (auto v : e.get_array()) {
        if (!first) s += ",";
        first = false;
        s += canon(v);
      }
      return s + "]";
    }
    case simdjson::dom::element_type::OBJECT: {
      std::string s = "[";
      bool first = true;
      for (auto field : e.get_object()) {
        if (!first) s += ",";
        first = false;
        s += canon(field.value);
      }
      return s + "]";
    }
    case simdjson::dom::element_type::STRING: return std::string(e.get_string().value());
    case simdjson::dom::element_type::INT64: return std::to_string(e.get_int64().value());
    case simdjson::dom::element_type::UINT64: return std::to_string(e.get_uint64().value());
    case simdjson::dom::element_type::BOOL: return e.get_bool().value() ? "true" : "false";
    default: return simdjson::minify(e);
  }
}

std::string canon_json(const std::string& json) {
  simdjson::dom::parser parser;
  return canon(parser.parse(json).value());
}

struct RichCase {
  std::string tag, delta, note, blob, levels, items, flag;
};

// The Rich log's data as cast encodes it, and what cast decodes from that data (with the indexed
// tag's hash in front): the values every output must hold.
struct Encoded {
  std::string tag_hash, data, expected;
};

Encoded encode_rich(const RichCase& c) {
  Encoded e;
  e.tag_hash = cast({"keccak", c.tag});
  e.data = cast({"abi-encode", std::string("f") + kRichTypes, "--", c.delta, c.note, c.blob, c.levels, c.items, c.flag});
  const std::string decoded = canon_json(cast({"decode-event", "--json", "--sig", kRichDataSignature, e.data}));
  e.expected = "[" + e.tag_hash + "," + decoded.substr(1);
  return e;
}

template <typename T>
T one(pqxx::transaction_base& tx, const std::string& sql) {
  return tx.exec1(sql)[0].as<T>();
}

std::string key_of(std::uint64_t block, std::uint64_t log_index) { return std::to_string(block) + ":" + std::to_string(log_index); }

struct EventsRun {
  TempDir dir;
  Anvil anvil{dir.path()};
  DevBroker broker{dir.path(), "anvil", 3, {"anvil.events.token", "anvil.events.rich", "anvil.undecodable"}};
  std::string token = anvil.deploy_emitter();
  std::string emitter = anvil.deploy(kLogEmitterInitCode);
  std::string abi_path = dir.path() + "/abis/rich.json";

  EventsRun() {
    std::filesystem::create_directories(dir.path() + "/abis");
    std::filesystem::copy_file(std::string(CHAINIDX_SOURCE_DIR) + "/deploy/abis/erc20.json", dir.path() + "/abis/erc20.json");
    std::ofstream(abi_path) << kRichAbi;
  }

  std::string contracts() const {
    return "[[contracts]]\nname = \"token\"\naddress = \"" + token + "\"\nabi = \"abis/erc20.json\"\nevents = [\"Transfer\"]\n\n"
           "[[contracts]]\nname = \"rich\"\naddress = [\"" + emitter + "\"]\nabi = \"abis/rich.json\"\n";
  }
};

TEST(Events, ContractEventsLandDecodedInTypedTablesAndTopicsAndUndecodableOnesInTheDeadLetterPlace) {
  EventsRun run;
  const Anvil& anvil = run.anvil;
  const std::string db = Postgres::instance().create_database("events");
  std::map<std::string, std::string> rich_expected;  // "block:log" -> values
  std::map<std::string, std::string> ping_expected;
  std::set<std::string> doomed_tx;
  auto emit_rich = [&](int account, const RichCase& c) {
    Encoded e = encode_rich(c);
    emit(anvil, run.emitter, account, {cast({"keccak", kRichSignature}), e.tag_hash}, e.data);
    return e;
  };
  // Records a mined Rich log by the block and log index the node gives it.
  auto mined_at = [&](const std::string& tx) {
    const std::string receipt = anvil.rpc("eth_getTransactionReceipt", "[\"" + tx + "\"]");
    simdjson::dom::parser parser;
    auto r = parser.parse(receipt).value();
    const std::string block(r["blockNumber"].get_string().value());
    const std::string index(r["logs"].at(0)["logIndex"].get_string().value());
    return key_of(std::stoull(block, nullptr, 16), std::stoull(index, nullptr, 16));
  };
  auto last_tx = [&] {
    const std::string block = anvil.rpc("eth_getBlockByNumber", "[\"latest\",false]");
    simdjson::dom::parser parser;
    auto txs = parser.parse(block).value()["transactions"].get_array().value();
    std::vector<std::string> out;
    for (auto t : txs) out.emplace_back(t.get_string().value());
    return out;
  };

  // History, before the indexer starts: Transfers of the token, a Rich and an anonymous Ping.
  mine_transfers(anvil, 3, 5);
  const RichCase first{"release-1", "-5", "héllo wörld", "0x0102ff", "[1,2,65535]",
                       "[(7,[0x0000000000000000000000000000000000000000000000000000000000000001,"
                       "0x00000000000000000000000000000000000000000000000000000000000000ff]),"
                       "(255,[0x1111111111111111111111111111111111111111111111111111111111111111,"
                       "0x2222222222222222222222222222222222222222222222222222222222222222])]",
                       "true"};
  Encoded e1 = emit_rich(1, first);
  const std::string who = "0x90f79bf6eb2c4f870365e785982e1f101e93b906";
  const std::string ping_data = cast({"abi-encode", "f(uint256)", "123456789012345678901234567890"});
  emit(anvil, run.emitter, 2, {address_topic(who)}, ping_data);
  anvil.mine();
  {
    auto txs = last_tx();
    ASSERT_EQ(txs.size(), 2u);
    rich_expected[mined_at(txs[0])] = e1.expected;
    ping_expected[mined_at(txs[1])] = "[" + who + ",123456789012345678901234567890]";
  }

  Indexer indexer(run.dir.path(), anvil, db, run.broker.bootstrap(), {.extra_tables = run.contracts()});
  indexer.start();
  ASSERT_TRUE(wait_until([&] { return cursor_of(db) + 3 >= anvil.block_number(); }, 60s)) << indexer.log();

  // Live: Rich events at the edges of their types, a Transfer of the rich contract's own ABI, and
  // two logs that match an event's topic0 but not its shape.
  Encoded e2 = emit_rich(3, {"", "-9223372036854775808", "", "0x", "[]", "[]", "false"});
  Encoded e3 = emit_rich(4, {"big", "9223372036854775807", "quote \" backslash \\ newline \n tab \t end",
                             "0x" + std::string(80, 'a'), "[0]",
                             "[(0,[0x0000000000000000000000000000000000000000000000000000000000000000,"
                             "0xffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff])]",
                             "true"});
  anvil.mine();
  {
    auto txs = last_tx();
    ASSERT_EQ(txs.size(), 2u);
    rich_expected[mined_at(txs[0])] = e2.expected;
    rich_expected[mined_at(txs[1])] = e3.expected;
  }
  emit(anvil, run.emitter, 5, {kTransferTopic0, address_topic(who), address_topic(run.token)}, word(42));
  // Transfer's topic0 with a fourth topic: no Transfer has that shape.
  emit(anvil, run.emitter, 6, {kTransferTopic0, address_topic(who), address_topic(who), word(1)}, word(42));
  // Rich with its data cut short.
  Encoded cut = encode_rich({"cut", "1", "x", "0x", "[]", "[]", "true"});
  emit(anvil, run.emitter, 7, {cast({"keccak", kRichSignature}), cut.tag_hash}, cut.data.substr(0, cut.data.size() - 64));
  // A topic0 the ABI does not know, with two topics: no event of interest (not undecodable).
  emit(anvil, run.emitter, 8, {word(0xfeed), word(1)}, "");
  anvil.mine();
  mine_transfers(anvil, 1, 6);

  // A Rich event in blocks that a reorg below the depth replaces.
  emit_rich(9, {"doomed", "66", "never confirmed", "0x", "[]", "[]", "true"});
  anvil.mine();
  for (const auto& t : last_tx()) doomed_tx.insert(t);
  anvil.mine();
  std::this_thread::sleep_for(500ms);  // the heads reach the indexer's buffer
  anvil.reorg(2);
  mine_transfers(anvil, 5, 7);
  ASSERT_TRUE(wait_until([&] { return cursor_of(db) + 3 >= anvil.block_number(); }, 60s)) << indexer.log();
  // Counted once written, per contract and event; accepted by promtool.
  const HttpAnswer scrape = http_request(indexer.ops_port(), "GET", "/metrics");
  ASSERT_EQ(scrape.status, 200);
  EXPECT_EQ(metric_sample(scrape.body, "chainidx_events_total{chain=\"anvil\",contract=\"rich\",event=\"Rich\"}"), 3) << scrape.body;
  EXPECT_EQ(metric_sample(scrape.body, "chainidx_events_total{chain=\"anvil\",contract=\"rich\",event=\"Ping\"}"), 1) << scrape.body;
  EXPECT_EQ(metric_sample(scrape.body, "chainidx_events_total{chain=\"anvil\",contract=\"token\",event=\"Transfer\"}"), 12) << scrape.body;
  EXPECT_EQ(metric_sample(scrape.body, "chainidx_undecodable_logs_total{chain=\"anvil\",contract=\"rich\"}"), 2) << scrape.body;
  EXPECT_EQ(metric_sample(scrape.body, "chainidx_undecodable_logs_total{chain=\"anvil\",contract=\"token\"}"), 0) << scrape.body;
  const std::string scrape_path = run.dir.path() + "/scrape.txt";
  std::ofstream(scrape_path) << scrape.body;
  int promtool_code = -1;
  const std::string promtool = run_capture({"sh", "-c", "promtool check metrics < " + scrape_path}, &promtool_code);
  EXPECT_EQ(promtool_code, 0) << promtool;
  EXPECT_EQ(indexer.stop(SIGTERM), 0) << indexer.log();
  EXPECT_NE(indexer.log().find("event=reorg"), std::string::npos) << "the reorg was not seen: " << indexer.log();
  ASSERT_EQ(doomed_tx.size(), 1u);

  pqxx::connection c(db);
  pqxx::read_transaction tx(c);

  // Typed columns, as the ABI says.
  std::map<std::string, std::string> types;
  for (const auto& r : tx.exec("SELECT column_name, data_type, is_nullable FROM information_schema.columns "
                               "WHERE table_schema = 'anvil' AND table_name = 'rich_rich'"))
    types[r[0].as<std::string>()] = r[1].as<std::string>() + (r[2].as<std::string>() == "NO" ? " not null" : "");
  EXPECT_EQ(types["tag_hash"], "bytea not null");
  EXPECT_EQ(types["delta"], "numeric not null");
  EXPECT_EQ(types["note"], "text not null");
  EXPECT_EQ(types["blob"], "bytea not null");
  EXPECT_EQ(types["levels"], "jsonb not null");
  EXPECT_EQ(types["items"], "jsonb not null");
  EXPECT_EQ(types["flag"], "boolean not null");
  EXPECT_EQ(types["block_number"], "bigint not null");
  EXPECT_EQ(types["transaction_hash"], "bytea not null");
  EXPECT_EQ(one<std::string>(tx, "SELECT format_type(atttypid, atttypmod) FROM pg_attribute "
                                        "WHERE attrelid = 'anvil.rich_rich'::regclass AND attname = 'delta'"),
            "numeric(78,0)");
  // An index on the indexed parameter.
  EXPECT_EQ(one<int>(tx, "SELECT count(*) FROM pg_indexes WHERE schemaname = 'anvil' AND tablename = 'rich_rich' "
                                "AND indexdef LIKE '%(tag_hash, block_number)%'"),
            1);

  // Every Rich row holds what cast decodes, at the block and log index the node gave it, and no
  // other row exists.
  std::map<std::string, std::string> rich_rows;
  for (const auto& r : tx.exec("SELECT block_number, log_index, '0x' || encode(tag_hash, 'hex'), delta::text, note, "
                               "'0x' || encode(blob, 'hex'), levels::text, items::text, flag::text "
                               "FROM anvil.rich_rich ORDER BY block_number, log_index")) {
    std::string values = "[" + r[2].as<std::string>() + "," + r[3].as<std::string>() + "," + r[4].as<std::string>() + "," +
                         r[5].as<std::string>() + "," + canon_json(r[6].as<std::string>()) + "," +
                         canon_json(r[7].as<std::string>()) + "," + r[8].as<std::string>() + "]";
    rich_rows[key_of(r[0].as<std::uint64_t>(), r[1].as<std::uint64_t>())] = values;
  }
  EXPECT_EQ(rich_rows, rich_expected);
  std::map<std::string, std::string> ping_rows;
  for (const auto& r : tx.exec("SELECT block_number, log_index, '0x' || encode(who, 'hex'), n::text FROM anvil.rich_ping"))
    ping_rows[key_of(r[0].as<std::uint64_t>(), r[1].as<std::uint64_t>())] = "[" + r[2].as<std::string>() + "," + r[3].as<std::string>() + "]";
  EXPECT_EQ(ping_rows, ping_expected);
  EXPECT_EQ(one<int>(tx, "SELECT count(*) FROM anvil.rich_transfer WHERE \"from\" = decode('" + strip0x(who) +
                                "', 'hex') AND \"to\" = decode('" + strip0x(run.token) + "', 'hex') AND value = 42"),
            1);

  // The token's Transfers: one row per Transfer log in the raw logs table, with its fields.
  const std::string token_hex = "decode('" + strip0x(run.token) + "', 'hex')";
  const int token_logs = one<int>(tx, "SELECT count(*) FROM anvil.logs WHERE address = " + token_hex);
  EXPECT_EQ(token_logs, 12);  // two per round, 3 + 1 + 5 rounds, less the last 3 (unconfirmed)
  EXPECT_EQ(one<int>(tx, "SELECT count(*) FROM anvil.token_transfer"), token_logs);
  EXPECT_EQ(one<int>(tx, 
                "SELECT count(*) FROM anvil.logs l JOIN anvil.token_transfer t USING (block_number, log_index) "
                "WHERE t.\"from\" = substring(l.topic1 from 13) AND t.\"to\" = substring(l.topic2 from 13) "
                "AND t.value = ('x' || encode(substring(l.data from 25 for 8), 'hex'))::bit(64)::bigint "
                "AND t.transaction_hash = l.transaction_hash AND t.block_hash = l.block_hash "
                "AND t.contract_address = l.address AND t.transaction_index = l.transaction_index"),
            token_logs);

  // No event of a block that is not in the blocks table with that hash, and none of the reorg's.
  for (const char* table : {"token_transfer", "rich_rich", "rich_ping", "rich_transfer"}) {
    EXPECT_EQ(one<int>(tx, std::string("SELECT count(*) FROM anvil.") + table +
                                  " e LEFT JOIN anvil.blocks b ON b.number = e.block_number AND b.hash = e.block_hash "
                                  "WHERE b.number IS NULL"),
              0)
        << table;
    EXPECT_EQ(one<int>(tx, std::string("SELECT count(*) FROM anvil.") + table + " WHERE transaction_hash = decode('" +
                                  strip0x(*doomed_tx.begin()) + "', 'hex')"),
              0)
        << table;
  }
  for (const auto& r : tx.exec("SELECT number, '0x' || encode(hash, 'hex') FROM anvil.blocks"))
    EXPECT_EQ(r[1].as<std::string>(), anvil.block_hash(r[0].as<std::uint64_t>()));

  // The two that did not decode, with their reasons; the unknown topic0 is not among them.
  std::vector<std::string> reasons;
  for (const auto& r : tx.exec("SELECT contract, signature, reason, topic3 IS NOT NULL FROM anvil.undecodable ORDER BY block_number, log_index")) {
    EXPECT_EQ(r[0].as<std::string>(), "rich");
    reasons.push_back(r[1].as<std::string>() + ": " + r[2].as<std::string>());
  }
  ASSERT_EQ(reasons.size(), 2u);
  EXPECT_NE(reasons[0].find("Transfer(address,address,uint256): "), std::string::npos) << reasons[0];
  EXPECT_NE(reasons[0].find("topic"), std::string::npos) << reasons[0];
  EXPECT_NE(reasons[1].find(kRichSignature), std::string::npos) << reasons[1];

  // The topics: one message per row, keyed by the contract's address, with the same values.
  simdjson::dom::parser parser;
  std::map<std::string, std::string> rich_messages;
  std::map<std::string, std::vector<std::string>> by_event;  // "contract.Event" -> messages
  int rich_pings = 0, rich_transfers = 0;
  for (const std::string& m : run.broker.consume("anvil.events.rich")) {
    auto doc = parser.parse(m).value();
    by_event["rich." + std::string(doc["event"].get_string().value())].push_back(m);
    EXPECT_EQ(std::string(doc["contract"].get_string().value()), "rich");
    EXPECT_EQ(std::string(doc["address"].get_string().value()), run.emitter);
    const std::string event(doc["event"].get_string().value());
    const std::string key = key_of(doc["block_number"].get_uint64().value(), doc["log_index"].get_uint64().value());
    if (event == "Rich") {
      EXPECT_EQ(std::string(doc["signature"].get_string().value()), kRichSignature);
      EXPECT_TRUE(rich_messages.emplace(key, canon(doc["args"].value())).second) << "twice: " << m;
      EXPECT_NE(m.find("\"tag_hash\":\"0x"), std::string::npos) << m;
    } else if (event == "Ping") {
      ++rich_pings;
      EXPECT_EQ(canon(doc["args"].value()), ping_expected[key]) << m;
    } else {
      EXPECT_EQ(event, "Transfer") << m;
      ++rich_transfers;
    }
  }
  EXPECT_EQ(rich_messages, rich_expected);
  EXPECT_EQ(rich_pings, 1);
  EXPECT_EQ(rich_transfers, 1);
  by_event["token.Transfer"] = run.broker.consume("anvil.events.token");
  EXPECT_EQ(by_event["token.Transfer"].size(), static_cast<std::size_t>(token_logs));
  const auto dead = run.broker.consume("anvil.undecodable");
  ASSERT_EQ(dead.size(), 2u);
  for (const auto& m : dead) {
    auto doc = parser.parse(m).value();
    EXPECT_EQ(std::string(doc["contract"].get_string().value()), "rich") << m;
    EXPECT_FALSE(std::string_view(doc["reason"].get_string().value()).empty()) << m;
  }

  // Every message holds to the schema `chainidx event-schemas` makes from the ABI, as
  // python3-jsonschema checks it; the dead letters to schema/kafka/undecodable.json.
  const std::string schemas = run.dir.path() + "/schemas";
  std::filesystem::create_directories(schemas);
  int code = -1;
  const std::string wrote = run_capture({chainidx_binary(), "event-schemas", "--config", indexer.config_path(), "--out", schemas}, &code);
  ASSERT_EQ(code, 0) << wrote;
  EXPECT_NE(wrote.find("wrote 4 schema(s)"), std::string::npos) << wrote;
  auto validate = [&](const std::string& schema, const std::vector<std::string>& messages) {
    const std::string file = run.dir.path() + "/messages.jsonl";
    std::ofstream out(file, std::ios::trunc);
    for (const auto& m : messages) out << m << "\n";
    out.close();
    int rc = -1;
    const std::string report =
        run_capture({"python3", std::string(CHAINIDX_SOURCE_DIR) + "/tests/tools/validate_json.py", schema, file}, &rc);
    return std::make_pair(rc, report);
  };
  for (const auto& [name, messages] : by_event) {
    ASSERT_FALSE(messages.empty()) << name;
    const auto [rc, report] = validate(schemas + "/anvil.events." + name + ".json", messages);
    EXPECT_EQ(rc, 0) << name << ": " << report;
    const auto [generic_rc, generic_report] = validate(std::string(CHAINIDX_SOURCE_DIR) + "/schema/kafka/events.json", messages);
    EXPECT_EQ(generic_rc, 0) << name << ": " << generic_report;
  }
  EXPECT_EQ(by_event.size(), 4u);
  const auto [dead_rc, dead_report] = validate(std::string(CHAINIDX_SOURCE_DIR) + "/schema/kafka/undecodable.json", dead);
  EXPECT_EQ(dead_rc, 0) << dead_report;
  // The schemas are not vacuous: a Rich message with its bool as a number, or a uint16 out of
  // range, fails.
  std::string bad = by_event["rich.Rich"].front();
  bad.replace(bad.find("\"flag\":") + 7, 4, bad.find("\"flag\":true") != std::string::npos ? "1   " : "0    ");
  EXPECT_EQ(validate(schemas + "/anvil.events.rich.Rich.json", {bad}).first, 1) << bad;
  for (std::string too_big : by_event["rich.Rich"]) {
    if (const auto at = too_big.find("65535]"); at != std::string::npos) {
      too_big.replace(at, 5, "65536");
      EXPECT_EQ(validate(schemas + "/anvil.events.rich.Rich.json", {too_big}).first, 1) << too_big;
    }
  }
}

TEST(Events, AnAbiChangeThatWouldAlterATableIsRefusedWithHowToMigrate) {
  EventsRun run;
  const std::string db = Postgres::instance().create_database("events_abi_change");
  Indexer indexer(run.dir.path(), run.anvil, db, run.broker.bootstrap(), {.extra_tables = run.contracts()});
  indexer.start();
  mine_transfers(run.anvil, 4, 3);
  ASSERT_TRUE(wait_until([&] { return cursor_of(db) + 3 >= run.anvil.block_number(); }, 60s)) << indexer.log();
  EXPECT_EQ(indexer.stop(SIGTERM), 0) << indexer.log();

  // The same event name with another parameter type: the table's column would change meaning.
  std::string changed = kRichAbi;
  changed.replace(changed.find("\"int64\""), 7, "\"int128\"");
  std::ofstream(run.abi_path, std::ios::trunc) << changed;
  indexer.start();
  const auto code = indexer.wait(60s);
  ASSERT_TRUE(code.has_value()) << indexer.log();
  EXPECT_EQ(*code, 7) << indexer.log();
  const std::string log = indexer.log();
  EXPECT_NE(log.find("rich_rich"), std::string::npos) << log;
  EXPECT_NE(log.find("int128"), std::string::npos) << log;
  // The rows written before are untouched.
  pqxx::connection c(db);
  pqxx::read_transaction tx(c);
  EXPECT_GT(one<int>(tx, "SELECT count(*) FROM anvil.token_transfer"), 0);
}

// A provider in front of anvil that refuses eth_getLogs over more than kLogWidth blocks, in the
// words of one provider after another, and answers every other query without blockTimestamp
// (as nodes before geth 1.16 do), so that timestamps come from headers too.
constexpr std::uint64_t kLogWidth = 16;

struct RefusingProvider {
  const Anvil& anvil;
  std::mutex mutex;
  int refusals = 0;
  std::set<int> personas;
  std::uint64_t queries = 0;
  int whole_block_calls = 0;  // full bodies or receipts asked for
  int single_block_queries = 0;
  bool armed = false;         // forge in this run's live answers (not in one being stopped)
  bool forged = false;        // one forged log was added to a live answer

  std::string answer(const std::string& request) {
    return answer_calls(anvil, request, [&](const std::string& method, const std::string& params) -> std::optional<std::string> {
      if (method == "eth_getBlockReceipts" || method == "eth_getTransactionReceipt" ||
          (method.rfind("eth_getBlockBy", 0) == 0 && params.find(",true]") != std::string::npos)) {
        std::lock_guard lock(mutex);
        ++whole_block_calls;
      }
      if (method != "eth_getLogs") return std::nullopt;
      simdjson::dom::parser parser;
      auto filter = parser.parse(params).value().at(0);
      const bool by_hash = filter["blockHash"].error() == simdjson::SUCCESS;
      const std::uint64_t from = by_hash ? 0 : std::stoull(std::string(filter["fromBlock"].get_string().value()), nullptr, 16);
      const std::uint64_t to = by_hash ? 0 : std::stoull(std::string(filter["toBlock"].get_string().value()), nullptr, 16);
      std::lock_guard lock(mutex);
      if (armed && (by_hash || from == to) && ++single_block_queries >= 2 && !forged) {
        // A live query (the live path asks block by block): once, a log the block does not
        // hold is slipped into a real answer.
        std::string logs = anvil.rpc(method, params);
        const auto first_topic = logs.find("\"topics\":[\"0x");
        if (first_topic != std::string::npos) {
          forged = true;
          const auto end = logs.find('}', first_topic);
          const auto start = logs.rfind('{', first_topic);
          std::string fake = logs.substr(start, end - start + 1);
          fake = std::regex_replace(fake, std::regex(R"("logIndex":"0x[0-9a-f]+")"), "\"logIndex\":\"0x999\"");
          fake = std::regex_replace(fake, std::regex(R"re("topics":\["(0x[0-9a-f]{64})")re"),
                                    "\"topics\":[\"$1\",\"0x1234567890123456789012345678901234567890123456789012345678901234\"");
          logs.insert(logs.size() - 1, "," + fake);
          return "\"result\":" + logs;
        }
      }
      if (to - from + 1 > kLogWidth) {
        const int persona = refusals++ % 4;
        personas.insert(persona);
        char suggested[96];
        std::snprintf(suggested, sizeof suggested, "[0x%llx, 0x%llx]", static_cast<unsigned long long>(from),
                      static_cast<unsigned long long>(from + 24));
        const std::string message =
            persona == 0 ? std::string("Log response size exceeded. You can make eth_getLogs requests with up to a 2K block range and no "
                                       "limit on the response size, or you can request any block range with a cap of 10K logs in the "
                                       "response. Based on your parameters, this block range should work: ") + suggested
            : persona == 1 ? std::string("eth_getLogs is limited to a 30 range")
            : persona == 2 ? std::string("query returned more than 10000 results")
                           : std::string("query exceeds max block range 16");
        return "\"error\":{\"code\":" + std::string(persona == 2 ? "-32005" : "-32602") + ",\"message\":\"" + message + "\"}";
      }
      std::string logs = anvil.rpc(method, params);
      if (queries++ % 2 == 1) logs = std::regex_replace(logs, std::regex(R"("blockTimestamp":"0x[0-9a-f]+",?)"), "");
      return "\"result\":" + logs;
    });
  }
};

TEST(Events, LogsOnlyIndexingTakesHistoryByGetLogsThroughRefusalsAndKeepsOnlyTheContractsLogs) {
  EventsRun run;
  const Anvil& anvil = run.anvil;
  const std::string db = Postgres::instance().create_database("events_logs_only");
  const std::string rich_topic0 = cast({"keccak", kRichSignature});
  auto emit_rich = [&](int account, const std::string& tag) {
    Encoded e = encode_rich({tag, "7", "n", "0x01", "[3]", "[]", "true"});
    emit(anvil, run.emitter, account, {rich_topic0, e.tag_hash}, e.data);
  };
  // History: 100 blocks of Transfers, with Rich events and logs of no chosen event among them.
  for (int round = 0; round < 5; ++round) {
    mine_transfers(anvil, 20, 40 + round);
    emit_rich(1, "history-" + std::to_string(round));
    emit(anvil, run.emitter, 2, {word(0xfeed)}, word(round));  // no chosen event: left out
    anvil.mine();
  }

  RefusingProvider provider{anvil};
  FaultProxy proxy(anvil.port(), [&](const std::string& request, std::uint64_t) -> std::optional<FaultProxy::Canned> {
    return FaultProxy::Canned{200, provider.answer(request)};
  });
  const std::string contracts =
      "[[contracts]]\nname = \"token\"\naddress = \"" + run.token + "\"\nabi = \"abis/erc20.json\"\nevents = [\"Transfer\"]\n\n"
      "[[contracts]]\nname = \"rich\"\naddress = \"" + run.emitter + "\"\nabi = \"abis/rich.json\"\nevents = [\"Rich\", \"Transfer\"]\n";
  Indexer indexer(run.dir.path(), anvil, db, run.broker.bootstrap(),
                  {.batch_blocks = 10, .http_url = proxy.url(), .chain_extra = "index = \"events\"\n",
                   .pipeline_extra = "log_range_blocks = 200\n", .extra_tables = contracts});
  indexer.start();
  ASSERT_TRUE(wait_until([&] { return cursor_of(db) + 3 >= anvil.block_number(); }, 90s)) << indexer.log();
  EXPECT_NE(indexer.log().find("event=log_range_narrower"), std::string::npos) << indexer.log();
  // A restart: what is in Kafka is not published again (the tip is read from the logs topic).
  EXPECT_EQ(indexer.stop(SIGTERM), 0) << indexer.log();
  indexer.start();
  {
    std::lock_guard lock(provider.mutex);
    provider.armed = true;
  }

  // Live: more events, and one in blocks that a reorg below the depth replaces.
  mine_transfers(anvil, 3, 60);
  emit_rich(3, "live");
  anvil.mine();
  emit_rich(4, "doomed");
  anvil.mine();
  std::string doomed;
  {
    const std::string block = anvil.rpc("eth_getBlockByNumber", "[\"latest\",false]");
    simdjson::dom::parser parser;
    doomed = std::string(parser.parse(block).value()["transactions"].at(0).get_string().value());
  }
  anvil.mine();
  std::this_thread::sleep_for(500ms);
  anvil.reorg(2);
  mine_transfers(anvil, 5, 61);
  ASSERT_TRUE(wait_until([&] { return cursor_of(db) + 3 >= anvil.block_number(); }, 60s)) << indexer.log();
  EXPECT_EQ(indexer.stop(SIGTERM), 0) << indexer.log();
  const std::uint64_t cursor = cursor_of(db);

  {
    std::lock_guard lock(provider.mutex);
    EXPECT_GE(provider.refusals, 4) << "too few refusals to try each provider's wording";
    EXPECT_EQ(provider.personas.size(), 4u);
    EXPECT_EQ(provider.whole_block_calls, 0) << "logs-only indexing asked for whole blocks or receipts";
    EXPECT_TRUE(provider.forged) << provider.single_block_queries << " live queries";
  }
  EXPECT_NE(indexer.log().find("which the header's logs bloom does not hold"), std::string::npos) << indexer.log();

  // What the node holds for the filter up to the cursor: the logs table holds exactly that.
  char to_hex_block[32];
  std::snprintf(to_hex_block, sizeof to_hex_block, "0x%llx", static_cast<unsigned long long>(cursor));
  const std::string node_logs = anvil.rpc(
      "eth_getLogs", "[{\"fromBlock\":\"0x0\",\"toBlock\":\"" + std::string(to_hex_block) + "\",\"address\":[\"" + run.token + "\",\"" +
                         run.emitter + "\"],\"topics\":[[\"" + kTransferTopic0 + "\",\"" + rich_topic0 + "\"]]}]");
  std::set<std::string> expected_logs;  // "block:index:hash"
  std::map<std::uint64_t, std::uint64_t> timestamps;
  int expected_transfers = 0, expected_rich = 0;
  simdjson::dom::parser parser;
  for (auto log : parser.parse(node_logs).value().get_array()) {
    const std::uint64_t block = std::stoull(std::string(log["blockNumber"].get_string().value()), nullptr, 16);
    const std::uint64_t index = std::stoull(std::string(log["logIndex"].get_string().value()), nullptr, 16);
    expected_logs.insert(key_of(block, index) + ":" + std::string(log["blockHash"].get_string().value()));
    timestamps[block] = std::stoull(std::string(log["blockTimestamp"].get_string().value()), nullptr, 16);
    const std::string address(log["address"].get_string().value());
    const std::string topic0(log["topics"].at(0).get_string().value());
    if (address == run.token) ++expected_transfers;
    if (topic0 == rich_topic0) ++expected_rich;
  }
  EXPECT_GE(expected_transfers, 200);
  EXPECT_EQ(expected_rich, 6);  // five in history, one live (the doomed one was reorged away)

  pqxx::connection c(db);
  pqxx::read_transaction tx(c);
  EXPECT_EQ(one<int>(tx, "SELECT count(*) FROM anvil.blocks"), 0) << "no block rows in logs-only indexing";
  EXPECT_EQ(one<int>(tx, "SELECT count(*) FROM anvil.transactions"), 0);
  std::set<std::string> stored_logs;
  for (const auto& r : tx.exec("SELECT block_number, log_index, '0x' || encode(block_hash, 'hex') FROM anvil.logs"))
    stored_logs.insert(key_of(r[0].as<std::uint64_t>(), r[1].as<std::uint64_t>()) + ":" + r[2].as<std::string>());
  EXPECT_EQ(stored_logs, expected_logs);
  EXPECT_EQ(one<int>(tx, "SELECT count(*) FROM anvil.token_transfer"), expected_transfers);
  EXPECT_EQ(one<int>(tx, "SELECT count(*) FROM anvil.rich_rich"), expected_rich);
  EXPECT_EQ(one<int>(tx, "SELECT count(*) FROM anvil.rich_rich WHERE transaction_hash = decode('" + strip0x(doomed) + "', 'hex')"), 0);
  // Each event's block time, whether the node gave it with the log or it came from the header.
  int wrong_times = 0;
  for (const auto& r : tx.exec("SELECT block_number, block_timestamp FROM anvil.token_transfer UNION ALL "
                               "SELECT block_number, block_timestamp FROM anvil.rich_rich"))
    if (timestamps[r[0].as<std::uint64_t>()] != r[1].as<std::uint64_t>()) ++wrong_times;
  EXPECT_EQ(wrong_times, 0);
  // The cursor is the node's block.
  EXPECT_EQ(one<std::string>(tx, "SELECT '0x' || encode(block_hash, 'hex') FROM anvil.cursor"), anvil.block_hash(cursor));

  // Kafka: no block or transaction messages; each log and event once, across the restart.
  EXPECT_TRUE(run.broker.consume("anvil.blocks").empty());
  EXPECT_TRUE(run.broker.consume("anvil.transactions").empty());
  EXPECT_EQ(run.broker.consume("anvil.logs").size(), expected_logs.size());
  EXPECT_EQ(run.broker.consume("anvil.events.token").size(), static_cast<std::size_t>(expected_transfers));
  EXPECT_EQ(run.broker.consume("anvil.events.rich").size(), static_cast<std::size_t>(expected_rich));
}

// "block:log_index" of each message of a topic that carries both.
std::vector<std::string> message_keys(const std::vector<std::string>& messages) {
  std::vector<std::string> keys;
  static const std::regex kAt(R"re("block_number":(\d+),.*"log_index":(\d+))re");
  for (const auto& m : messages) {
    std::smatch at;
    if (std::regex_search(m, at, kAt)) keys.push_back(at[1].str() + ":" + at[2].str());
  }
  return keys;
}

TEST(Events, WithoutRawLogsOnlyEventsAreWrittenAndAKafkaCommitPostgresNeverSawIsNotPublishedAgain) {
  EventsRun run;
  const Anvil& anvil = run.anvil;
  const std::string db = Postgres::instance().create_database("events_no_raw_logs");
  mine_transfers(anvil, 10, 3);
  const std::string contracts =
      "[[contracts]]\nname = \"token\"\naddress = \"" + run.token + "\"\nabi = \"abis/erc20.json\"\nevents = [\"Transfer\"]\n";
  // Not staged: a staged write takes the cursor lock before Kafka commits, and the crash window
  // below (Kafka committed, Postgres not) would never open.
  Indexer indexer(run.dir.path(), anvil, db, run.broker.bootstrap(),
                  {.batch_blocks = 2, .chain_extra = "index = \"events\"\nraw_logs = false\n",
                   .pipeline_extra = "stage_ahead = \"off\"\n", .extra_tables = contracts});
  indexer.start();
  ASSERT_TRUE(wait_until([&] { return cursor_of(db) + 3 >= anvil.block_number(); }, 60s)) << indexer.log();
  std::this_thread::sleep_for(300ms);
  const std::uint64_t cursor = cursor_of(db);
  {
    // Postgres waits on the cursor row: the next batch commits to Kafka, then waits for
    // Postgres, and the indexer dies right there.
    pqxx::connection c(db);
    pqxx::work hold(c);
    hold.exec("SELECT * FROM anvil.cursor FOR UPDATE");
    mine_transfers(anvil, 6, 4);
    ASSERT_TRUE(wait_until(
        [&] {
          for (const auto& key : message_keys(run.broker.consume("anvil.events.token")))
            if (std::stoull(key) > cursor) return true;
          return false;
        },
        60s))
        << indexer.log();
    EXPECT_EQ(indexer.stop(SIGKILL), 128 + SIGKILL);
    EXPECT_EQ(cursor_of(db), cursor);
  }
  indexer.start();
  mine_transfers(anvil, 5, 5);
  ASSERT_TRUE(wait_until([&] { return cursor_of(db) + 3 >= anvil.block_number(); }, 60s)) << indexer.log();
  EXPECT_EQ(indexer.stop(SIGTERM), 0) << indexer.log();
  EXPECT_NE(indexer.log().find("event=kafka_skip_published"), std::string::npos) << indexer.log();

  // The node's Transfers of the token up to the cursor: the event table and topic hold each once.
  char through[32];
  std::snprintf(through, sizeof through, "0x%llx", static_cast<unsigned long long>(cursor_of(db)));
  const std::string node_logs = anvil.rpc("eth_getLogs", "[{\"fromBlock\":\"0x0\",\"toBlock\":\"" + std::string(through) +
                                                             "\",\"address\":\"" + run.token + "\",\"topics\":[\"" + kTransferTopic0 + "\"]}]");
  std::set<std::string> expected;
  simdjson::dom::parser parser;
  for (auto log : parser.parse(node_logs).value().get_array())
    expected.insert(key_of(std::stoull(std::string(log["blockNumber"].get_string().value()), nullptr, 16),
                           std::stoull(std::string(log["logIndex"].get_string().value()), nullptr, 16)));
  EXPECT_GE(expected.size(), 30u);
  pqxx::connection c(db);
  pqxx::read_transaction tx(c);
  std::set<std::string> stored;
  for (const auto& r : tx.exec("SELECT block_number, log_index FROM anvil.token_transfer"))
    stored.insert(key_of(r[0].as<std::uint64_t>(), r[1].as<std::uint64_t>()));
  EXPECT_EQ(stored, expected);
  EXPECT_EQ(one<int>(tx, "SELECT count(*) FROM anvil.logs"), 0) << "raw_logs = false wrote raw logs";
  EXPECT_TRUE(run.broker.consume("anvil.logs").empty()) << "raw_logs = false published raw logs";
  const std::vector<std::string> published = message_keys(run.broker.consume("anvil.events.token"));
  const std::multiset<std::string> counted(published.begin(), published.end());
  for (const auto& key : expected) EXPECT_EQ(counted.count(key), 1u) << "event " << key << " published other than once";
  EXPECT_EQ(published.size(), expected.size());
}

// A factory: each call creates a contract from the calldata as its init code and emits
// Created(address indexed creator, address child). Init code copies the 55-byte runtime and
// returns it; the runtime copies the calldata to memory, CREATEs, stores the new address at 0 and
// emits LOG2 with topic0 (spliced in) and the caller.
std::string factory_init_code(const std::string& created_topic0) {
  return "0x603780600b6000396000f3"
         "36600060003736600060"
         "00f0600052337f" + strip0x(created_topic0) + "60206000a200";
}

constexpr const char* kFactoryAbi = R"([
  {"type": "event", "name": "Created", "anonymous": false, "inputs": [
    {"name": "creator", "type": "address", "indexed": true},
    {"name": "child", "type": "address", "indexed": false}]}])";
constexpr const char* kPoolAbi = R"([
  {"type": "event", "name": "Swap", "anonymous": false, "inputs": [
    {"name": "sender", "type": "address", "indexed": true},
    {"name": "amount", "type": "int256", "indexed": false}]}])";

TEST(Events, FactoryMadeContractsArePickedUpFromTheirFactorysEventsAcrossRestartsReorgsAndLogsOnlyHistory) {
  TempDir dir;
  Anvil anvil{dir.path()};
  std::filesystem::create_directories(dir.path() + "/abis");
  std::filesystem::create_directories(dir.path() + "/second");
  std::filesystem::create_directories(dir.path() + "/third/abis");
  std::ofstream(dir.path() + "/abis/factory.json") << kFactoryAbi;
  std::ofstream(dir.path() + "/abis/pool.json") << kPoolAbi;
  const std::string created_topic0 = cast({"keccak", "Created(address,address)"});
  const std::string swap_topic0 = cast({"keccak", "Swap(address,int256)"});
  const std::string factory = anvil.deploy(factory_init_code(created_topic0));
  const std::string stranger = anvil.deploy(kLogEmitterInitCode);  // emits Swaps too, but no factory made it
  anvil.deploy_emitter();                                          // the Transfers that bury blocks
  std::map<std::string, std::string> amount_of_tx;                // every Swap sent: tx hash -> amount
  std::set<std::string> doomed_tx;
  int swaps = 0;
  auto swap = [&](const std::string& from) {
    const std::string amount = std::to_string(swaps % 2 ? swaps * 1000 : -swaps * 7);
    ++swaps;
    std::string calldata = "0x" + word(2) + strip0x(swap_topic0) + strip0x(address_topic(from)) +
                           strip0x(cast({"abi-encode", "f(int256)", "--", amount}));
    const std::string tx = anvil.send(swaps % 10, from, calldata);
    amount_of_tx[tx] = amount;
    return tx;
  };
  // A new pool, mined with the next block; its address once mined.
  auto create_pool = [&](int account) { return anvil.send(account, factory, kLogEmitterInitCode); };
  auto pool_of = [&](const std::string& tx) {
    const std::string receipt = anvil.rpc("eth_getTransactionReceipt", "[\"" + tx + "\"]");
    simdjson::dom::parser parser;
    const std::string data(parser.parse(receipt).value()["logs"].at(0)["data"].get_string().value());
    return "0x" + data.substr(data.size() - 40);
  };

  // History: a pool made, then its Swap and the stranger's.
  const std::string pool1_tx = create_pool(1);
  anvil.mine();
  const std::string pool1 = pool_of(pool1_tx);
  swap(pool1);
  swap(stranger);
  anvil.mine();
  mine_transfers(anvil, 2, 3);

  DevBroker broker{dir.path(), "anvil", 3, {"anvil.events.factory", "anvil.events.pool", "anvil.undecodable"}};
  const std::string db = Postgres::instance().create_database("events_factory");
  const std::string contracts =
      "[[contracts]]\nname = \"pool\"\nabi = \"abis/pool.json\"\n"
      "factory = { contract = \"factory\", event = \"Created\", parameter = \"child\" }\n\n"
      "[[contracts]]\nname = \"factory\"\naddress = \"" + factory + "\"\nabi = \"abis/factory.json\"\n";
  Indexer indexer(dir.path(), anvil, db, broker.bootstrap(), {.extra_tables = contracts});
  indexer.start();
  ASSERT_TRUE(wait_until([&] { return cursor_of(db) + 3 >= anvil.block_number(); }, 60s)) << indexer.log();
  // A restart: the pool made in history is known again from the factory's table.
  EXPECT_EQ(indexer.stop(SIGTERM), 0) << indexer.log();
  indexer.start();
  ASSERT_TRUE(wait_until([&] { return indexer.log().find("event=factory_contracts_loaded count=1") != std::string::npos; }, 30s))
      << indexer.log();

  // Live: a second pool made in a block where the first swaps too, then both swap.
  const std::string pool2_tx = create_pool(2);
  swap(pool1);
  anvil.mine();
  const std::string pool2 = pool_of(pool2_tx);
  swap(pool2);
  swap(stranger);
  swap(pool1);
  anvil.mine();
  // A pool made and swapping in blocks that a reorg below the depth replaces: never known.
  doomed_tx.insert(create_pool(3));
  anvil.mine();
  mine_transfers(anvil, 1, 4);
  std::this_thread::sleep_for(500ms);  // the heads reach the indexer's buffer
  anvil.reorg(2);
  mine_transfers(anvil, 5, 5);
  ASSERT_TRUE(wait_until([&] { return cursor_of(db) + 3 >= anvil.block_number(); }, 60s)) << indexer.log();
  const HttpAnswer scrape = http_request(indexer.ops_port(), "GET", "/metrics");
  EXPECT_EQ(metric_sample(scrape.body, "chainidx_factory_contracts{chain=\"anvil\",contract=\"pool\"}"), 2) << scrape.body;
  EXPECT_EQ(indexer.stop(SIGTERM), 0) << indexer.log();
  EXPECT_NE(indexer.log().find("event=reorg"), std::string::npos) << "the reorg was not seen: " << indexer.log();
  const std::uint64_t cursor = cursor_of(db);

  // What the node holds: the factory's Created logs, and the Swaps of what they made.
  auto node_logs = [&](const std::string& filter, std::uint64_t through) {
    char to[32];
    std::snprintf(to, sizeof to, "0x%llx", static_cast<unsigned long long>(through));
    return anvil.rpc("eth_getLogs", "[{\"fromBlock\":\"0x0\",\"toBlock\":\"" + std::string(to) + "\"," + filter + "}]");
  };
  struct Expected {
    std::set<std::string> made;                        // child addresses
    std::map<std::string, std::string> swaps;          // "block:index" -> "address amount"
    std::set<std::string> created;                     // "block:index"
  };
  auto expected_through = [&](std::uint64_t through) {
    Expected e;
    simdjson::dom::parser parser;
    for (auto log : parser.parse(node_logs("\"address\":\"" + factory + "\"", through)).value().get_array()) {
      const std::string data(log["data"].get_string().value());
      e.made.insert("0x" + data.substr(data.size() - 40));
      e.created.insert(key_of(std::stoull(std::string(log["blockNumber"].get_string().value()), nullptr, 16),
                              std::stoull(std::string(log["logIndex"].get_string().value()), nullptr, 16)));
    }
    simdjson::dom::parser p2;
    for (auto log : p2.parse(node_logs("\"topics\":[\"" + swap_topic0 + "\"]", through)).value().get_array()) {
      const std::string address(log["address"].get_string().value());
      if (!e.made.contains(address)) continue;
      const std::string tx(log["transactionHash"].get_string().value());
      e.swaps[key_of(std::stoull(std::string(log["blockNumber"].get_string().value()), nullptr, 16),
                     std::stoull(std::string(log["logIndex"].get_string().value()), nullptr, 16))] = address + " " + amount_of_tx.at(tx);
    }
    return e;
  };
  const Expected expected = expected_through(cursor);
  EXPECT_EQ(expected.made, (std::set<std::string>{pool1, pool2}));
  EXPECT_EQ(expected.swaps.size(), 4u);  // pool1 three times, pool2 once; the stranger's are not theirs

  auto check_tables = [&](const std::string& url, const Expected& want) {
    pqxx::connection c(url);
    pqxx::read_transaction tx(c);
    std::map<std::string, std::string> rows;
    for (const auto& r : tx.exec("SELECT block_number, log_index, '0x' || encode(contract_address, 'hex'), amount::text FROM anvil.pool_swap"))
      rows[key_of(r[0].as<std::uint64_t>(), r[1].as<std::uint64_t>())] = r[2].as<std::string>() + " " + r[3].as<std::string>();
    EXPECT_EQ(rows, want.swaps);
    std::set<std::string> created;
    for (const auto& r : tx.exec("SELECT block_number, log_index FROM anvil.factory_created"))
      created.insert(key_of(r[0].as<std::uint64_t>(), r[1].as<std::uint64_t>()));
    EXPECT_EQ(created, want.created);
    for (const auto& t : doomed_tx)
      EXPECT_EQ(one<int>(tx, "SELECT count(*) FROM anvil.factory_created WHERE transaction_hash = decode('" + strip0x(t) + "', 'hex')"), 0);
  };
  check_tables(db, expected);
  // Kafka: each Swap once across the restart, keyed by the pool's address.
  std::map<std::string, std::string> messages;
  for (const std::string& m : broker.consume("anvil.events.pool")) {
    simdjson::dom::parser parser;
    auto doc = parser.parse(m).value();
    const std::string key = key_of(doc["block_number"].get_uint64().value(), doc["log_index"].get_uint64().value());
    EXPECT_TRUE(messages.emplace(key, std::string(doc["address"].get_string().value()) + " " +
                                          std::string(doc["args"]["amount"].get_string().value())).second) << "twice: " << m;
  }
  EXPECT_EQ(messages, expected.swaps);

  // Logs-only history of the same chain into another database: the factory's and the pools'
  // logs by eth_getLogs, nothing else.
  const std::string db2 = Postgres::instance().create_database("events_factory_logs_only");
  DevBroker broker2{dir.path() + "/second", "anvil", 3, {"anvil.events.factory", "anvil.events.pool", "anvil.undecodable"}};
  Indexer logs_only(dir.path(), anvil, db2, broker2.bootstrap(), {.chain_extra = "index = \"events\"\n", .extra_tables = contracts});
  logs_only.start();
  ASSERT_TRUE(wait_until([&] { return cursor_of(db2) + 3 >= anvil.block_number(); }, 60s)) << logs_only.log();
  EXPECT_EQ(logs_only.stop(SIGTERM), 0) << logs_only.log();
  const Expected expected2 = expected_through(cursor_of(db2));
  check_tables(db2, expected2);
  pqxx::connection c(db2);
  pqxx::read_transaction tx(c);
  EXPECT_EQ(one<int>(tx, "SELECT count(*) FROM anvil.blocks"), 0);
  EXPECT_EQ(one<int>(tx, "SELECT count(*) FROM anvil.logs WHERE address = decode('" + strip0x(stranger) + "', 'hex')"), 0)
      << "the stranger's Swaps were asked for by topic, and left out";
  EXPECT_EQ(one<std::size_t>(tx, "SELECT count(*) FROM anvil.logs"), expected2.swaps.size() + expected2.created.size());
  EXPECT_EQ(broker2.consume("anvil.events.pool").size(), expected2.swaps.size());

  // The contracts added to a deployment that indexed the chain without them: `run` starts with
  // the new (empty) tables, and two replay workers at once fill the history below its cursor in
  // chunks of 3 blocks. Each chunk waits for the addresses the chunks below made, so the pools'
  // Swaps of later chunks are there; and `run` reads the addresses the replay made again (at the
  // re-poll's cadence), so the pools' next Swaps are indexed too.
  const std::string db3 = Postgres::instance().create_database("events_factory_replay");
  const std::string third = dir.path() + "/third";  // a log folder of its own
  std::filesystem::copy(dir.path() + "/abis", third + "/abis");
  DevBroker broker3{third, "anvil", 3, {"anvil.events.factory", "anvil.events.pool", "anvil.undecodable"}};
  {
    std::filesystem::create_directories(third + "/plain");
    Indexer plain(third + "/plain", anvil, db3, broker3.bootstrap(), {});
    plain.start();
    ASSERT_TRUE(wait_until([&] { return cursor_of(db3) >= cursor; }, 60s)) << plain.log();
    EXPECT_EQ(plain.stop(SIGTERM), 0) << plain.log();
  }
  Indexer replayer(third, anvil, db3, broker3.bootstrap(), {.chain_extra = "repoll_interval_seconds = 1\n", .extra_tables = contracts});
  replayer.start();
  ASSERT_TRUE(wait_until([&] { return replayer.log().find("event=ws_subscribed") != std::string::npos; }, 30s)) << replayer.log();
  ASSERT_EQ(replayer.log().find("event=factory_contracts_loaded"), std::string::npos) << "no address is written yet: " << replayer.log();
  auto worker = [&](const std::string& name) {
    return std::make_unique<Process>(std::vector<std::string>{chainidx_binary(), "replay", "--config", replayer.config_path(), "--from", "0",
                                                              "--to", std::to_string(cursor), "--chunk-blocks", "3", "--sinks", "postgres",
                                                              "--lease-seconds", "5", "--worker", name},
                                     third + "/replay-" + name + ".log");
  };
  auto w1 = worker("w1");
  auto w2 = worker("w2");
  // Heads keep coming meanwhile, as on a live chain (`run` holds its next block's write staged
  // until the head that confirms it).
  std::atomic<bool> replaying{true};
  std::thread miner([&] {
    while (replaying) {
      anvil.mine();
      std::this_thread::sleep_for(300ms);
    }
  });
  const auto c1 = w1->wait(120s), c2 = w2->wait(120s);
  replaying = false;
  miner.join();
  ASSERT_TRUE(c1 && c2);
  EXPECT_EQ(*c1, 0) << w1->log();
  EXPECT_EQ(*c2, 0) << w2->log();
  ASSERT_TRUE(wait_until([&] { return replayer.log().find("event=factory_contracts_loaded count=2") != std::string::npos; }, 30s))
      << replayer.log();
  swap(pool1);
  swap(pool2);
  anvil.mine();
  mine_transfers(anvil, 4, 6);
  ASSERT_TRUE(wait_until([&] { return cursor_of(db3) + 3 >= anvil.block_number(); }, 60s)) << replayer.log();
  EXPECT_EQ(replayer.stop(SIGTERM), 0) << replayer.log();
  const Expected expected3 = expected_through(cursor_of(db3));
  EXPECT_EQ(expected3.swaps.size(), expected.swaps.size() + 2);
  check_tables(db3, expected3);
}

}  // namespace
}  // namespace chainidx::testing

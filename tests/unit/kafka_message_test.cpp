#include "sinks/kafka_message.hpp"

#include <gtest/gtest.h>
#include <simdjson.h>

#include <algorithm>

namespace chainidx::sinks {
namespace {

schema::Block sample_block() {
  schema::Block b;
  b.number = 42;
  b.hash = schema::hash_from_hex("0x" + std::string(62, '0') + "aa");
  b.parent_hash = schema::hash_from_hex("0x" + std::string(62, '0') + "bb");
  b.timestamp = 1700000000;
  b.gas_used = 21000;
  b.base_fee_per_gas = schema::U256::from_u64(7);
  schema::Transaction t;
  t.hash = schema::hash_from_hex("0x" + std::string(62, '1') + "cc");
  t.block_number = 42;
  t.block_hash = b.hash;
  t.from_address = schema::address_from_hex("0x" + std::string(40, 'f'));
  schema::parse_quantity("0xffffffffffffffffffffffffffffffff", t.value);  // above 2^64
  t.status = 1;
  b.transactions.push_back(t);
  b.transaction_count = 1;
  schema::Log l;
  l.block_number = 42;
  l.block_hash = b.hash;
  l.log_index = 3;
  l.transaction_hash = t.hash;
  l.address = schema::address_from_hex("0x" + std::string(40, 'e'));
  l.topics = {schema::hash_from_hex("0x" + std::string(64, 'd'))};
  l.data = {0x01, 0x02};
  b.logs.push_back(l);
  b.withdrawals.push_back({~std::uint64_t{0}, 12, schema::address_from_hex("0x" + std::string(40, '9')), 32000000000});
  return b;
}

TEST(KafkaMessage, OneMessagePerBlockTransactionAndLogWithTheContractFields) {
  auto msgs = encode_block(sample_block(), 31337, "anvil");
  ASSERT_EQ(msgs.size(), 3u);
  simdjson::dom::parser p;

  EXPECT_EQ(msgs[0].topic, Topic::kBlocks);
  EXPECT_EQ(msgs[0].key, "anvil");
  simdjson::dom::element b = p.parse(msgs[0].value);
  EXPECT_EQ(b["chain_id"].get_uint64().value(), 31337u);
  EXPECT_EQ(b["block_number"].get_uint64().value(), 42u);
  EXPECT_EQ(std::string(b["block_hash"].get_string().value()), "0x" + std::string(62, '0') + "aa");
  EXPECT_EQ(std::string(b["base_fee_per_gas"].get_string().value()), "7");
  ASSERT_EQ(b["withdrawals"].get_array().size(), 1u) << "the block's validator withdrawals ride with it";
  simdjson::dom::element w = b["withdrawals"].get_array().at(0);
  EXPECT_EQ(std::string(w["index"].get_string().value()), "18446744073709551615");
  EXPECT_EQ(std::string(w["validator_index"].get_string().value()), "12");
  EXPECT_EQ(std::string(w["address"].get_string().value()), "0x" + std::string(40, '9'));
  EXPECT_EQ(std::string(w["amount_gwei"].get_string().value()), "32000000000");

  EXPECT_EQ(msgs[1].topic, Topic::kTransactions);
  EXPECT_EQ(msgs[1].key, "0x" + std::string(40, 'f')) << "keyed by sender";
  simdjson::dom::parser p2;
  simdjson::dom::element t = p2.parse(msgs[1].value);
  EXPECT_EQ(std::string(t["value"].get_string().value()), "340282366920938463463374607431768211455") << "uint256 as decimal";
  EXPECT_TRUE(t["to_address"].is_null());
  EXPECT_EQ(t["status"].get_uint64().value(), 1u);
  EXPECT_EQ(std::string(t["block_hash"].get_string().value()), "0x" + std::string(62, '0') + "aa");

  EXPECT_EQ(msgs[2].topic, Topic::kLogs);
  EXPECT_EQ(msgs[2].key, "0x" + std::string(40, 'e')) << "keyed by contract";
  simdjson::dom::parser p3;
  simdjson::dom::element l = p3.parse(msgs[2].value);
  EXPECT_EQ(l["log_index"].get_uint64().value(), 3u);
  EXPECT_EQ(std::string(l["transaction_hash"].get_string().value()), "0x" + std::string(62, '1') + "cc");
  EXPECT_EQ(std::string(l["data"].get_string().value()), "0x0102");
  EXPECT_EQ(l["topics"].get_array().size(), 1u);
}

// DESIGN's promise, per field: a field's JSON type never varies with its value. 64-bit gas and
// nonce values are decimal strings however small; bounded integers are numbers.
TEST(KafkaMessage, EachFieldHasOneJsonTypeWhateverItsValue) {
  for (std::uint64_t big : {std::uint64_t{21000}, (std::uint64_t{1} << 53) + 1, ~std::uint64_t{0}}) {
    schema::Block b = sample_block();
    b.gas_limit = big;
    b.gas_used = big;
    b.transactions[0].gas = big;
    b.transactions[0].nonce = big;
    b.transactions[0].gas_used = big;
    auto msgs = encode_block(b, 31337, "anvil");
    simdjson::dom::parser p1, p2;
    simdjson::dom::element jb = p1.parse(msgs[0].value);
    simdjson::dom::element jt = p2.parse(msgs[1].value);
    for (const char* f : {"gas_limit", "gas_used"}) {
      ASSERT_TRUE(jb[f].is_string()) << f << " = " << big;
      EXPECT_EQ(std::string(jb[f].get_string().value()), std::to_string(big));
    }
    for (const char* f : {"gas", "nonce", "gas_used"}) {
      ASSERT_TRUE(jt[f].is_string()) << f << " = " << big;
      EXPECT_EQ(std::string(jt[f].get_string().value()), std::to_string(big));
    }
    for (const char* f : {"chain_id", "block_number", "timestamp", "transaction_count", "log_count"}) EXPECT_TRUE(jb[f].is_uint64()) << f;
    for (const char* f : {"block_number", "transaction_index", "type", "status"}) EXPECT_TRUE(jt[f].is_uint64()) << f;
    EXPECT_TRUE(jb["total_difficulty"].is_null()) << "present, null when the node does not report it";
    EXPECT_TRUE(jt["root"].is_null()) << "present, null after Byzantium";
  }
}

// Two contracts' event tables: a per-contract layout has a topic each, a per-event one a topic
// per table; decoded events go to their table's topic, a sparse block sends no block message.
TEST(KafkaMessage, EventsGoToTheirContractsTopicOrTheirEventsTopic) {
  auto table = [](const std::string& contract, const std::string& event, const std::string& snake) {
    schema::EventTable t;
    t.contract = contract;
    t.event = event;
    t.table = contract + "_" + snake;
    t.signature = event + "(uint256)";
    schema::EventColumn c;
    c.name = c.key = "value";
    c.kind = schema::ArgKind::kInteger;
    t.columns.push_back(c);
    return t;
  };
  const std::vector<schema::EventTable> tables = {table("usdc", "Transfer", "transfer"), table("usdc", "Approval", "approval"),
                                                  table("pool", "PoolCreated", "pool_created")};
  const EventTopics per_contract(tables);
  EXPECT_EQ(topic_names("anvil", per_contract),
            (std::vector<std::string>{"anvil.blocks", "anvil.transactions", "anvil.logs", "anvil.undecodable", "anvil.events.usdc",
                                      "anvil.events.pool"}));
  const EventTopics per_event(tables, true);
  EXPECT_EQ(topic_names("anvil", per_event),
            (std::vector<std::string>{"anvil.blocks", "anvil.transactions", "anvil.logs", "anvil.undecodable",
                                      "anvil.events.usdc.transfer", "anvil.events.usdc.approval", "anvil.events.pool.pool_created"}));
  EXPECT_EQ(topic_names("anvil", EventTopics()).size(), 3u) << "no contracts: the three topics only";

  schema::Block b = sample_block();
  b.sparse = true;
  schema::DecodedEvent e;
  e.log = 0;
  e.table = 1;  // usdc.Approval
  e.args.push_back({});
  e.args.back().text = "5";
  b.events.push_back(e);
  for (const auto* topics : {&per_contract, &per_event}) {
    auto msgs = encode_block(b, 31337, "anvil", topics);
    int events = 0;
    for (const auto& m : msgs) {
      EXPECT_NE(m.topic, Topic::kBlocks) << "a sparse block has no block message";
      if (m.topic != Topic::kEvents) continue;
      ++events;
      EXPECT_EQ(m.contract, topics == &per_contract ? 0u : 1u);
      EXPECT_NE(m.value.find("\"event\":\"Approval\""), std::string::npos) << m.value;
      EXPECT_NE(m.value.find("\"args\":{\"value\":\"5\"}"), std::string::npos) << m.value;
    }
    EXPECT_EQ(events, 1);
  }
  // chain.raw_logs = false: the event alone, no message for the raw log.
  auto count = [](const std::vector<KafkaMessage>& msgs, Topic topic) {
    return std::count_if(msgs.begin(), msgs.end(), [&](const auto& m) { return m.topic == topic; });
  };
  const auto with_raw = encode_block(b, 31337, "anvil", &per_contract);
  const auto without_raw = encode_block(b, 31337, "anvil", &per_contract, /*raw_logs=*/false);
  EXPECT_EQ(count(with_raw, Topic::kLogs), static_cast<std::ptrdiff_t>(b.logs.size()));
  EXPECT_EQ(count(without_raw, Topic::kLogs), 0);
  EXPECT_EQ(count(without_raw, Topic::kEvents), 1);
  EXPECT_EQ(without_raw.size(), with_raw.size() - b.logs.size());
}

}  // namespace
}  // namespace chainidx::sinks

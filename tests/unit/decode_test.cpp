// Decoding real mainnet JSON-RPC data (tests/data/mainnet-21925176), checked field by
// field against the JSON as simdjson's DOM API reads it, and the bloom check against the header.

#include "ingest/attach_receipts.hpp"
#include "ingest/decode.hpp"
#include "ingest/header_hash.hpp"
#include "ingest/logs_bloom.hpp"

#include <gtest/gtest.h>
#include <simdjson.h>

#include <algorithm>
#include <cctype>
#include <fstream>
#include <random>
#include <sstream>

namespace chainidx::ingest {
namespace {

std::string fixture(const std::string& name, const std::string& folder = "mainnet-21925176") {
  std::ifstream in(std::string(CHAINIDX_FIXTURES_DIR) + "/" + folder + "/" + name);
  EXPECT_TRUE(in) << "fixture " << name << " not found under " << CHAINIDX_FIXTURES_DIR;
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::string lower(std::string_view s) {
  std::string out(s);
  for (auto& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

std::uint64_t hexnum(std::string_view s) { return std::stoull(std::string(s.substr(2)), nullptr, 16); }

void expect_log_equals_json(const schema::Log& log, simdjson::dom::element j) {
  EXPECT_EQ(schema::to_hex(log.address), lower(j["address"].get_string().value()));
  simdjson::dom::array topics = j["topics"].get_array();
  ASSERT_EQ(log.topics.size(), topics.size());
  std::size_t t = 0;
  for (auto topic : topics) EXPECT_EQ(schema::to_hex(log.topics[t++]), lower(topic.get_string().value()));
  EXPECT_EQ(schema::to_hex(log.data), lower(j["data"].get_string().value()));
  EXPECT_EQ(schema::to_hex(log.block_hash), lower(j["blockHash"].get_string().value()));
  EXPECT_EQ(log.block_number, hexnum(j["blockNumber"].get_string().value()));
  EXPECT_EQ(schema::to_hex(log.transaction_hash), lower(j["transactionHash"].get_string().value()));
  EXPECT_EQ(log.transaction_index, hexnum(j["transactionIndex"].get_string().value()));
  EXPECT_EQ(log.log_index, hexnum(j["logIndex"].get_string().value()));
}

struct MainnetBlock : ::testing::Test {
  void SetUp() override {
    auto b = decode_block(fixture("block.json"));
    ASSERT_TRUE(b.ok()) << b.error().message;
    ASSERT_TRUE(b->has_value());
    block = **b;
    auto r = decode_receipts(fixture("receipts.json"));
    ASSERT_TRUE(r.ok()) << r.error().message;
    ASSERT_TRUE(r->has_value());
    receipts = **r;
  }
  schema::Block block;
  std::vector<Receipt> receipts;
};

TEST_F(MainnetBlock, HeaderFieldsEqualTheJson) {
  simdjson::dom::parser p;
  std::string text = fixture("block.json");
  simdjson::dom::element j = p.parse(text);
  EXPECT_EQ(block.number, 21925176u);
  EXPECT_EQ(schema::to_hex(block.hash), "0x92dabfa3f61ff1c349d12f5fd0dd4c99760a0a41b77dee8f0a80f83efdcb307a");
  EXPECT_EQ(schema::to_hex(block.parent_hash), lower(j["parentHash"].get_string().value()));
  EXPECT_EQ(schema::to_hex(block.miner), lower(j["miner"].get_string().value()));
  EXPECT_EQ(block.timestamp, hexnum(j["timestamp"].get_string().value()));
  EXPECT_EQ(block.gas_limit, hexnum(j["gasLimit"].get_string().value()));
  EXPECT_EQ(block.gas_used, hexnum(j["gasUsed"].get_string().value()));
  ASSERT_TRUE(block.base_fee_per_gas);
  EXPECT_EQ(block.base_fee_per_gas->to_decimal(), std::to_string(hexnum(j["baseFeePerGas"].get_string().value())));
  EXPECT_EQ(schema::to_hex(block.logs_bloom), lower(j["logsBloom"].get_string().value()));
  EXPECT_EQ(schema::to_hex(block.extra_data), lower(j["extraData"].get_string().value()));
  ASSERT_TRUE(block.blob_gas_used);
  EXPECT_EQ(*block.blob_gas_used, hexnum(j["blobGasUsed"].get_string().value()));
  ASSERT_TRUE(block.parent_beacon_block_root);
  EXPECT_EQ(schema::to_hex(*block.parent_beacon_block_root), lower(j["parentBeaconBlockRoot"].get_string().value()));
  EXPECT_EQ(block.transaction_count, 202u);
  EXPECT_TRUE(block.transactions.empty()) << "block.json lists hashes only";
}

TEST_F(MainnetBlock, WithdrawalsEqualTheJson) {
  simdjson::dom::parser p;
  std::string text = fixture("block.json");
  simdjson::dom::array j = p.parse(text)["withdrawals"].get_array();
  ASSERT_EQ(block.withdrawals.size(), 16u);
  std::size_t i = 0;
  for (simdjson::dom::element w : j) {
    const schema::Withdrawal& got = block.withdrawals[i++];
    EXPECT_EQ(got.index, hexnum(w["index"].get_string().value()));
    EXPECT_EQ(got.validator_index, hexnum(w["validatorIndex"].get_string().value()));
    EXPECT_EQ(schema::to_hex(got.address), lower(w["address"].get_string().value()));
    EXPECT_EQ(got.amount_gwei, hexnum(w["amount"].get_string().value()));
  }
  EXPECT_EQ(block.withdrawals[0].index, 0x4a9e66bu);
  EXPECT_EQ(block.withdrawals[0].amount_gwei, 0x121a6a9u);
}

TEST_F(MainnetBlock, Has202ReceiptsAnd463LogsWhoseFieldsEqualTheJson) {
  ASSERT_EQ(receipts.size(), 202u);
  simdjson::dom::parser p;
  std::string text = fixture("receipts.json");
  simdjson::dom::array j = p.parse(text).get_array();
  std::size_t i = 0, logs = 0, failed = 0, legacy = 0;
  for (simdjson::dom::element jr : j) {
    const Receipt& r = receipts[i++];
    EXPECT_EQ(schema::to_hex(r.transaction_hash), lower(jr["transactionHash"].get_string().value()));
    EXPECT_EQ(r.transaction_index, hexnum(jr["transactionIndex"].get_string().value()));
    ASSERT_TRUE(r.from_address);
    EXPECT_EQ(schema::to_hex(*r.from_address), lower(jr["from"].get_string().value()));
    if (jr["to"].is_null()) {
      EXPECT_FALSE(r.to_address);
    } else {
      ASSERT_TRUE(r.to_address);
      EXPECT_EQ(schema::to_hex(*r.to_address), lower(jr["to"].get_string().value()));
    }
    EXPECT_EQ(r.status, hexnum(jr["status"].get_string().value()));
    EXPECT_EQ(r.gas_used, hexnum(jr["gasUsed"].get_string().value()));
    EXPECT_EQ(r.cumulative_gas_used, hexnum(jr["cumulativeGasUsed"].get_string().value()));
    ASSERT_TRUE(r.effective_gas_price);
    EXPECT_EQ(r.effective_gas_price->to_decimal(), std::to_string(hexnum(jr["effectiveGasPrice"].get_string().value())));
    EXPECT_EQ(r.type, hexnum(jr["type"].get_string().value()));
    EXPECT_EQ(schema::to_hex(r.logs_bloom), lower(jr["logsBloom"].get_string().value()));
    simdjson::dom::array jlogs = jr["logs"].get_array();
    ASSERT_EQ(r.logs.size(), jlogs.size());
    std::size_t k = 0;
    for (auto jl : jlogs) expect_log_equals_json(r.logs[k++], jl);
    logs += r.logs.size();
    failed += r.status == 0;
    legacy += r.type == 0;
  }
  EXPECT_EQ(logs, 463u);
  EXPECT_EQ(failed, 3u);
  EXPECT_EQ(legacy, 12u);
}

TEST_F(MainnetBlock, BloomOfDecodedLogsEqualsHeaderLogsBloom) {
  std::vector<schema::Log> all;
  for (auto& r : receipts) {
    all.insert(all.end(), r.logs.begin(), r.logs.end());
    // Each receipt's own bloom covers its own logs.
    EXPECT_EQ(logs_bloom(r.logs), r.logs_bloom);
  }
  EXPECT_EQ(logs_bloom(all), block.logs_bloom);
}

TEST_F(MainnetBlock, AttachReceiptsFillsTransactionsAndLogs) {
  ASSERT_TRUE(attach_receipts(block, receipts).ok());
  ASSERT_EQ(block.transactions.size(), 202u);
  ASSERT_EQ(block.logs.size(), 463u);
  for (std::size_t i = 0; i < block.logs.size(); ++i) EXPECT_EQ(block.logs[i].log_index, i);
  EXPECT_EQ(block.transactions[5].hash, receipts[5].transaction_hash);
  EXPECT_EQ(block.transactions[5].gas_used, receipts[5].gas_used);
  EXPECT_EQ(block.transactions[5].log_count, receipts[5].logs.size());
}

TEST_F(MainnetBlock, ReceiptsMissingALogAreRejectedByTheBloom) {
  // A provider that silently drops a log: renumber the rest so that only the bloom can tell.
  // The bloom sees a drop only when the log's address or a topic appears nowhere else in the
  // block, so the victim is the first such log (the bloom cannot catch the others; the receipt
  // count and log numbering checks are what it adds to).
  std::size_t victim_receipt = receipts.size(), victim_log = 0;
  for (std::size_t i = 0; i < receipts.size() && victim_receipt == receipts.size(); ++i) {
    for (std::size_t k = 0; k < receipts[i].logs.size(); ++k) {
      std::vector<schema::Log> rest;
      for (std::size_t a = 0; a < receipts.size(); ++a)
        for (std::size_t b = 0; b < receipts[a].logs.size(); ++b)
          if (a != i || b != k) rest.push_back(receipts[a].logs[b]);
      if (logs_bloom(rest) != block.logs_bloom) {
        victim_receipt = i;
        victim_log = k;
        break;
      }
    }
  }
  ASSERT_LT(victim_receipt, receipts.size()) << "no log in the block has a unique address or topic";
  receipts[victim_receipt].logs.erase(receipts[victim_receipt].logs.begin() + static_cast<long>(victim_log));
  std::uint32_t n = 0;
  for (auto& r : receipts)
    for (auto& l : r.logs) l.log_index = n++;
  schema::Block before = block;
  auto status = attach_receipts(block, receipts);
  ASSERT_FALSE(status.ok());
  EXPECT_NE(status.error().message.find("logsBloom"), std::string::npos) << status.error().message;
  EXPECT_EQ(block, before) << "a rejected block is left as it was";
}

TEST_F(MainnetBlock, ReceiptsOfAnotherBlockOrCountAreRejected) {
  auto fewer = receipts;
  fewer.pop_back();
  EXPECT_FALSE(attach_receipts(block, fewer).ok());
  auto other = receipts;
  other[3].block_hash.bytes[0] ^= 1;
  auto status = attach_receipts(block, other);
  ASSERT_FALSE(status.ok());
  EXPECT_NE(status.error().message.find("another block"), std::string::npos);
  auto swapped = receipts;
  std::swap(swapped[1], swapped[2]);
  EXPECT_FALSE(attach_receipts(block, swapped).ok());
}

TEST(Decode, SingleReceiptAndGetLogsResultEqualTheirJson) {
  auto r = decode_receipt(fixture("receipt.json"));
  ASSERT_TRUE(r.ok()) << r.error().message;
  ASSERT_TRUE(r->has_value());
  simdjson::dom::parser p;
  std::string text = fixture("receipt.json");
  simdjson::dom::element j = p.parse(text);
  EXPECT_EQ(schema::to_hex((*r)->transaction_hash), lower(j["transactionHash"].get_string().value()));
  EXPECT_EQ((*r)->logs.size(), j["logs"].get_array().size());

  auto logs = decode_logs(fixture("logs.json"));
  ASSERT_TRUE(logs.ok()) << logs.error().message;
  ASSERT_EQ(logs->size(), 1u);
  simdjson::dom::parser p2;
  std::string ltext = fixture("logs.json");
  expect_log_equals_json((*logs)[0], p2.parse(ltext).get_array().at(0));
  EXPECT_EQ((*logs)[0].log_index, 0xfbu);
}

TEST(Decode, NullResultIsAnUnknownBlock) {
  auto b = decode_block("null");
  ASSERT_TRUE(b.ok());
  EXPECT_FALSE(b->has_value());
}

TEST(Decode, MalformedFieldsAreRejectedWithTheFieldName) {
  std::string good = fixture("block.json");
  auto replace = [&](std::string_view from, std::string_view to) {
    std::string s = good;
    auto at = s.find(from);
    EXPECT_NE(at, std::string::npos);
    s.replace(at, from.size(), to);
    return s;
  };
  struct Case { std::string json; std::string field; };
  std::vector<Case> cases = {
      {replace("\"number\": \"0x14e8d38\"", "\"number\": \"14e8d38\""), "block.number"},
      {replace("\"number\": \"0x14e8d38\"", "\"number\": 21925176"), "block.number"},
      {replace("0x4838b106fce9647bdf1e7877bf73ce8b0bad5f97", "0x4838b106fce9647bdf1e7877bf73ce8b0bad5f"), "block.miner"},
      {replace("\"hash\": \"0x92da", "\"hash\": \"0xzzda"), "block.hash"},
      {replace("\"parentHash\"", "\"parentHashX\""), "block.parentHash: missing"},
      {replace("\"gasUsed\": \"0xf8e2f0\"", "\"gasUsed\": \"0x1ffffffffffffffff\""), "block.gasUsed"},
      {good.substr(0, good.size() / 2), "block"},
  };
  for (auto& c : cases) {
    auto b = decode_block(c.json);
    ASSERT_FALSE(b.ok()) << "accepted: " << c.field;
    EXPECT_NE(b.error().message.find(c.field), std::string::npos) << b.error().message;
  }
  EXPECT_FALSE(decode_block("[1,2]").ok());
  EXPECT_FALSE(decode_receipts("{}").ok());
  EXPECT_FALSE(decode_logs("[{\"address\": 5}]").ok());
}

// The decoder learns the order of an object's keys from the objects before it and tries that
// order first: the same receipt with its keys in the node's order, reversed, shuffled and back
// decodes to the same value every time, and a missing required key is found whatever came before.
TEST(Decode, KeysInAnyOrderDecodeTheSameWhateverOrderCameBefore) {
  std::string text = fixture("receipt.json");
  simdjson::dom::parser p;
  simdjson::dom::object receipt = p.parse(text).get_object();
  std::vector<std::string> fields;
  for (auto field : receipt) fields.push_back("\"" + std::string(field.key) + "\":" + simdjson::minify(field.value));
  ASSERT_GT(fields.size(), 10u);
  auto joined = [](const std::vector<std::string>& f) {
    std::string out = "{";
    for (std::size_t i = 0; i < f.size(); ++i) out += (i ? "," : "") + f[i];
    return out + "}";
  };
  auto expected = decode_receipt(joined(fields));
  ASSERT_TRUE(expected.ok()) << expected.error().message;
  ASSERT_TRUE(expected->has_value());
  ASSERT_FALSE((*expected)->logs.empty());
  std::mt19937 rng(11);
  std::vector<std::string> order = fields;
  for (int round = 0; round < 40; ++round) {
    if (round % 4 == 1) std::reverse(order.begin(), order.end());
    else if (round % 4 == 2) std::shuffle(order.begin(), order.end(), rng);
    else order = fields;
    auto r = decode_receipt(joined(order));
    ASSERT_TRUE(r.ok()) << "round " << round << ": " << r.error().message;
    EXPECT_EQ((*r)->transaction_hash, (*expected)->transaction_hash) << "round " << round;
    EXPECT_EQ((*r)->logs, (*expected)->logs) << "round " << round;
    EXPECT_EQ((*r)->logs_bloom, (*expected)->logs_bloom) << "round " << round;
    EXPECT_EQ((*r)->cumulative_gas_used, (*expected)->cumulative_gas_used) << "round " << round;
    EXPECT_EQ((*r)->status, (*expected)->status) << "round " << round;
    // Every required key left out in turn, after the order was learnt.
    std::vector<std::string> without = order;
    const std::size_t drop = static_cast<std::size_t>(round) % without.size();
    const std::string key = without[drop].substr(1, without[drop].find('"', 1) - 1);
    without.erase(without.begin() + static_cast<std::ptrdiff_t>(drop));
    auto missing = decode_receipt(joined(without));
    const bool required = key == "transactionHash" || key == "transactionIndex" || key == "blockHash" || key == "blockNumber" ||
                          key == "gasUsed" || key == "cumulativeGasUsed" || key == "logs" || key == "logsBloom";
    if (required) {
      ASSERT_FALSE(missing.ok()) << "accepted without " << key;
      EXPECT_NE(missing.error().message.find("receipt." + key + ": missing"), std::string::npos) << missing.error().message;
    } else {
      EXPECT_TRUE(missing.ok()) << key << ": " << missing.error().message;
    }
  }
}

// A reply's result carries the parser's padding and is read in place; text without it is
// copied first. Both decode alike, and text cut short is refused either way (the parser never
// takes the spare bytes for JSON).
TEST(Decode, TextInAPaddedStringDecodesAsACopyDoes) {
  const std::string text = fixture("receipts.json");
  std::string padded = text;
  padded.reserve(text.size() + kJsonPadding);
  ASSERT_TRUE(JsonText(padded).padded());
  ASSERT_FALSE(JsonText(std::string_view(text)).padded());
  auto in_place = decode_receipts(padded);
  auto copied = decode_receipts(std::string_view(text));
  ASSERT_TRUE(in_place.ok() && copied.ok());
  ASSERT_EQ((*in_place)->size(), (*copied)->size());
  for (std::size_t i = 0; i < (*copied)->size(); ++i) EXPECT_EQ((**in_place)[i].logs, (**copied)[i].logs) << "receipt " << i;
  const std::size_t end = text.rfind(']');  // the closing bracket (a newline may follow it)
  for (std::size_t cut : {end, end - 2, text.size() / 2}) {
    std::string shorter = text.substr(0, cut);
    shorter.reserve(cut + kJsonPadding);
    shorter.append(kJsonPadding, ']');  // spare bytes that would close the JSON if they were read as text
    shorter.resize(cut);
    ASSERT_TRUE(JsonText(shorter).padded());
    EXPECT_FALSE(decode_receipts(shorter).ok()) << "cut at " << cut;
    EXPECT_FALSE(decode_receipts(std::string_view(shorter)).ok()) << "cut at " << cut;
  }
}

// parse_data decodes 16 bytes at a time with SSE2 and the rest byte by byte: every length
// around those steps, every digit in either case, and a bad character at every position (in a
// vector block and in the tail) compared with a plain reference decoder.
TEST(Hex, DataDecodesEveryLengthAndRejectsABadCharacterAnywhere) {
  auto reference = [](std::string_view digits, schema::Bytes& out) {
    auto value = [](char c) -> int {
      if (c >= '0' && c <= '9') return c - '0';
      if (c >= 'a' && c <= 'f') return c - 'a' + 10;
      if (c >= 'A' && c <= 'F') return c - 'A' + 10;
      return -1;
    };
    out.clear();
    for (std::size_t i = 0; i + 1 < digits.size(); i += 2) {
      int hi = value(digits[i]), lo = value(digits[i + 1]);
      if (hi < 0 || lo < 0) return false;
      out.push_back(static_cast<std::uint8_t>(hi * 16 + lo));
    }
    return true;
  };
  std::mt19937 rng(5);
  const std::string alphabet = "0123456789abcdefABCDEF";
  const std::string bad = std::string("gG/:@`xz \"\x00\x7f\x80\xff", 14);
  for (std::size_t bytes = 0; bytes <= 70; ++bytes) {
    std::string digits;
    for (std::size_t i = 0; i < 2 * bytes; ++i) digits.push_back(alphabet[rng() % alphabet.size()]);
    schema::Bytes got, want;
    ASSERT_TRUE(schema::parse_data("0x" + digits, got)) << digits;
    ASSERT_TRUE(reference(digits, want));
    EXPECT_EQ(got, want) << digits;
    EXPECT_EQ(schema::to_hex(got), "0x" + [&] { std::string l = digits; for (char& c : l) c = static_cast<char>(std::tolower(c)); return l; }());
    for (std::size_t at = 0; at < digits.size(); ++at) {
      std::string broken = digits;
      broken[at] = bad[(at + bytes) % bad.size()];
      EXPECT_FALSE(schema::parse_data("0x" + broken, got)) << "bad character at " << at << " of " << digits.size();
    }
    if (bytes > 0) {
      EXPECT_FALSE(schema::parse_data("0x" + digits.substr(1), got)) << "odd length";
    }
  }
  schema::Hash32 h;
  EXPECT_TRUE(schema::parse_fixed("0x" + std::string(64, 'F'), h));
  EXPECT_EQ(h.bytes[31], 0xff);
  EXPECT_FALSE(schema::parse_fixed("0x" + std::string(63, 'f') + "g", h));
}

TEST(U256, DecimalOfLargeValues) {
  schema::U256 v;
  ASSERT_TRUE(schema::parse_quantity("0xffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff", v));
  EXPECT_EQ(v.to_decimal(), "115792089237316195423570985008687907853269984665640564039457584007913129639935");
  ASSERT_TRUE(schema::parse_quantity("0xde0b6b3a7640000", v));
  EXPECT_EQ(v.to_decimal(), "1000000000000000000");
  ASSERT_TRUE(schema::parse_quantity("0x0", v));
  EXPECT_EQ(v.to_decimal(), "0");
  EXPECT_FALSE(schema::parse_quantity("0x1" + std::string(64, '0'), v));
}


}  // namespace
}  // namespace chainidx::ingest

namespace chainidx::ingest {
namespace {

TEST_F(MainnetBlock, HeaderFieldsHashToTheBlockHash) {
  EXPECT_EQ(header_hash(block), block.hash);
  schema::Block forged = block;
  forged.logs_bloom.bytes[7] ^= 0x10;  // a provider that edits the bloom to hide a dropped log
  EXPECT_NE(header_hash(forged), block.hash);
}

// --- Homestead era (mainnet 1755634-1755635, June 2016), recorded as {"jsonrpc","id","result"} ---

std::string homestead(const std::string& name) {
  std::string text = fixture(name, "mainnet-1755634");
  simdjson::dom::parser p;
  return simdjson::minify(p.parse(text)["result"]);
}

std::string replaced(std::string s, const std::string& from, const std::string& to) {
  auto at = s.find(from);
  EXPECT_NE(at, std::string::npos) << from;
  if (at != std::string::npos) s.replace(at, from.size(), to);
  return s;
}

// The block and its two per-transaction receipts, put together as the fetcher does.
schema::Block homestead_block(const std::vector<std::string>& receipt_texts) {
  auto block = decode_block(homestead("block_1755635.json"));
  EXPECT_TRUE(block.ok()) << block.error().message;
  schema::Block b = std::move(**block);
  std::vector<Receipt> receipts;
  for (const auto& text : receipt_texts) {
    auto r = decode_receipt(text);
    EXPECT_TRUE(r.ok()) << r.error().message;
    if (r.ok() && *r) receipts.push_back(std::move(**r));
  }
  auto status = attach_receipts(b, std::move(receipts));
  EXPECT_TRUE(status.ok()) << status.error().message;
  return b;
}

TEST(DecodeHomestead, PreByzantiumReceiptsKeepTheirRootAndHaveNoStatus) {
  schema::Block b = homestead_block({homestead("receipt_0x2e3dcd05.json"), homestead("receipt_0x9a5437ec.json")});
  ASSERT_EQ(b.transactions.size(), 2u);
  EXPECT_EQ(header_hash(b), b.hash) << "a pre-London header recomputes to its hash";
  EXPECT_FALSE(b.base_fee_per_gas);
  for (const auto& t : b.transactions) EXPECT_FALSE(t.status);
  ASSERT_TRUE(b.transactions[0].root);
  EXPECT_EQ(schema::to_hex(*b.transactions[0].root), "0x4db3f06ff4e7283ab1187045ca78f4bd713b0737640180377b4d4a2e9a80c235");
  ASSERT_TRUE(b.transactions[1].root);
  EXPECT_EQ(schema::to_hex(*b.transactions[1].root), "0x379f143510d5703cf162e37e61d906341b4a6acf4f339d422c656000ccd5898f");
  EXPECT_EQ(b.logs.size(), 2u);
  EXPECT_EQ(b.transactions[0].log_count, 2u);
  ASSERT_TRUE(b.total_difficulty);
  EXPECT_EQ(b.total_difficulty->to_decimal(), "30078063397065281661") << "above 2^64, kept exactly";
}

TEST(DecodeHomestead, EveryTransactionFieldIsKeptAndTheHashesRecomputeFromThem) {
  schema::Block b = homestead_block({homestead("receipt_0x2e3dcd05.json"), homestead("receipt_0x9a5437ec.json")});
  ASSERT_EQ(b.transactions.size(), 2u);
  for (const auto& t : b.transactions) {
    ASSERT_TRUE(t.v && t.r && t.s) << "the signature is kept";
    EXPECT_TRUE(t.v->to_decimal() == "27" || t.v->to_decimal() == "28") << "pre-EIP-155: v is 27 or 28";
    EXPECT_FALSE(t.chain_id) << "pre-EIP-155 transactions sign no chain id";
    EXPECT_FALSE(t.access_list);
    ASSERT_TRUE(t.logs_bloom) << "the receipt's bloom is kept";
    auto h = transaction_hash(t);
    ASSERT_TRUE(h);
    EXPECT_EQ(*h, t.hash) << "transaction " << t.transaction_index << " does not hash to its hash";
    // The hash depends on every signed field: change one and it no longer matches.
    schema::Transaction changed = t;
    changed.nonce += 1;
    EXPECT_NE(*transaction_hash(changed), t.hash);
    changed = t;
    changed.r = schema::U256::from_u64(1);
    EXPECT_NE(*transaction_hash(changed), t.hash);
  }
}

TEST(Decode, TypedTransactionFieldsAccessListsBlobsAndAuthorizationsAreKept) {
  const std::string tx = R"({"hash":"0x)" + std::string(64, '1') + R"(","blockHash":"0x)" + std::string(64, '2') +
                         R"(","blockNumber":"0x10","transactionIndex":"0x0","from":"0x)" + std::string(40, 'a') +
                         R"(","to":"0x)" + std::string(40, 'b') +
                         R"(","value":"0x0","gas":"0x5208","input":"0x","nonce":"0x7","type":"0x4","chainId":"0x1",
      "maxFeePerGas":"0x10","maxPriorityFeePerGas":"0x1","maxFeePerBlobGas":"0x3",
      "accessList":[{"address":"0x)" + std::string(40, 'c') + R"(","storageKeys":["0x)" + std::string(64, '3') + R"("]}],
      "blobVersionedHashes":["0x01)" + std::string(62, '4') + R"("],
      "authorizationList":[{"chainId":"0x1","address":"0x)" + std::string(40, 'd') +
                         R"(","nonce":"0x2","yParity":"0x1","r":"0x5","s":"0x6"}],
      "v":"0x1","r":"0x1234","s":"0x5678","yParity":"0x1"})";
  const std::string block = R"({"number":"0x10","hash":"0x)" + std::string(64, '2') + R"(","parentHash":"0x)" + std::string(64, '0') +
                            R"(","timestamp":"0x1","miner":"0x)" + std::string(40, '0') +
                            R"(","gasLimit":"0x1","gasUsed":"0x0","sha3Uncles":"0x)" + std::string(64, '0') + R"(","mixHash":"0x)" +
                            std::string(64, '0') + R"(","nonce":"0x0000000000000000","stateRoot":"0x)" + std::string(64, '0') +
                            R"(","transactionsRoot":"0x)" + std::string(64, '0') + R"(","receiptsRoot":"0x)" + std::string(64, '0') +
                            R"(","logsBloom":"0x)" + std::string(512, '0') + R"(","extraData":"0x","size":"0x1","difficulty":"0x0",
      "transactions":[)" + tx + "]}";
  auto decoded = decode_block(block);
  ASSERT_TRUE(decoded.ok()) << decoded.error().message;
  ASSERT_EQ((*decoded)->transactions.size(), 1u);
  const schema::Transaction& t = (*decoded)->transactions[0];
  EXPECT_EQ(t.type, 4);
  EXPECT_EQ(t.chain_id, 1u);
  EXPECT_EQ(t.y_parity, 1);
  EXPECT_EQ(t.r->to_decimal(), "4660");
  ASSERT_TRUE(t.access_list);
  ASSERT_EQ(t.access_list->size(), 1u);
  EXPECT_EQ(schema::to_hex((*t.access_list)[0].address), "0x" + std::string(40, 'c'));
  ASSERT_EQ((*t.access_list)[0].storage_keys.size(), 1u);
  ASSERT_EQ(t.blob_versioned_hashes.size(), 1u);
  EXPECT_EQ(t.max_fee_per_blob_gas->to_decimal(), "3");
  ASSERT_TRUE(t.authorization_list);
  ASSERT_EQ(t.authorization_list->size(), 1u);
  EXPECT_EQ((*t.authorization_list)[0].nonce, 2u);
  EXPECT_EQ((*t.authorization_list)[0].y_parity, 1);
  EXPECT_TRUE(transaction_hash(t)) << "a type-4 transaction has a hash to rebuild";
  // A malformed list is refused with its field named.
  auto bad = decode_block(replaced(block, R"("storageKeys":[)", R"("storageKeys":["0x12",)"));
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.error().message.find("storageKeys"), std::string::npos) << bad.error().message;
}

// Parity / OpenEthereum before Byzantium: "status": null beside the root.
TEST(DecodeHomestead, NullStatusOfParityNodesIsAbsent) {
  std::string parity = replaced(homestead("receipt_0x9a5437ec.json"), "\"root\":", "\"status\":null,\"root\":");
  auto r = decode_receipt(parity);
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_FALSE((*r)->status);
  EXPECT_TRUE((*r)->root);
}

// Old recordings without from / to in receipts, and logs with fields newer nodes do not send.
TEST(DecodeHomestead, ReceiptsWithoutFromOrToAndLogsWithExtraFieldsDecode) {
  std::string no_from = replaced(homestead("receipt_0x2e3dcd05.json"), "\"from\":\"0xed059bc543141c8c93031d545079b3da0233b27f\",", "");
  std::string no_to = replaced(homestead("receipt_0x9a5437ec.json"), "\"to\":\"0xec1ebac9da3430213281c80fa6d46378341a96ae\",", "");
  std::string typed_log = replaced(no_from, "\"logIndex\":\"0x0\",", "\"logIndex\":\"0x0\",\"type\":\"mined\",");
  schema::Block b = homestead_block({typed_log, no_to});
  ASSERT_EQ(b.transactions.size(), 2u);
  EXPECT_EQ(schema::to_hex(b.transactions[0].from_address), "0xed059bc543141c8c93031d545079b3da0233b27f") << "from the body";
  ASSERT_TRUE(b.transactions[1].to_address);
  EXPECT_EQ(schema::to_hex(*b.transactions[1].to_address), "0xec1ebac9da3430213281c80fa6d46378341a96ae") << "to from the body";
  EXPECT_EQ(b.logs.size(), 2u);
}

// A receipt whose from disagrees with its transaction's is refused (a tampered or mixed-up answer).
TEST(DecodeHomestead, ReceiptFromThatDisagreesWithTheTransactionIsRefused) {
  auto block = decode_block(homestead("block_1755635.json"));
  ASSERT_TRUE(block.ok());
  std::vector<Receipt> receipts;
  for (auto text : {replaced(homestead("receipt_0x2e3dcd05.json"), "0xed059bc543141c8c93031d545079b3da0233b27f",
                             "0x000000000000000000000000000000000000dead"),
                    homestead("receipt_0x9a5437ec.json")})
    receipts.push_back(std::move(**decode_receipt(text)));
  auto status = attach_receipts(**block, std::move(receipts));
  ASSERT_FALSE(status.ok());
  EXPECT_NE(status.error().message.find("from does not match"), std::string::npos) << status.error().message;
}

TEST(DecodeHomestead, EmptyBlockDecodesAndHashes) {
  auto block = decode_block(homestead("block_1755634.json"));
  ASSERT_TRUE(block.ok()) << block.error().message;
  schema::Block b = std::move(**block);
  EXPECT_TRUE(b.transactions.empty());
  EXPECT_TRUE(attach_receipts(b, {}).ok());
  EXPECT_EQ(header_hash(b), b.hash);
  ASSERT_TRUE(b.total_difficulty);
}

}  // namespace
}  // namespace chainidx::ingest

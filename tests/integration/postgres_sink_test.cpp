// PostgresSink against a real Postgres with real mainnet blocks of the Homestead era: every field
// a node returned survives into the tables, and the header hash recomputes from the stored row.

#include <gtest/gtest.h>
#include <pqxx/pqxx>
#include <simdjson.h>

#include <fstream>
#include <future>
#include <span>
#include <sstream>

#include "harness.hpp"
#include "ingest/attach_receipts.hpp"
#include "ingest/decode.hpp"
#include "ingest/header_hash.hpp"
#include "sinks/postgres_sink.hpp"

namespace chainidx::testing {
namespace {

// A recorded answer's `result`, minified.
std::string recorded(const std::string& name) {
  std::string text = read_text_file(std::string(CHAINIDX_FIXTURES_DIR) + "/mainnet-1755634/" + name);
  simdjson::dom::parser p;
  return simdjson::minify(p.parse(text)["result"]);
}

std::vector<schema::Block> homestead_blocks() {
  std::vector<schema::Block> out;
  auto empty = ingest::decode_block(recorded("block_1755634.json"));
  EXPECT_TRUE(empty.ok()) << empty.error().message;
  out.push_back(std::move(**empty));
  EXPECT_TRUE(ingest::attach_receipts(out.back(), {}).ok());
  auto block = ingest::decode_block(recorded("block_1755635.json"));
  EXPECT_TRUE(block.ok()) << block.error().message;
  out.push_back(std::move(**block));
  std::vector<ingest::Receipt> receipts;
  for (const char* name : {"receipt_0x2e3dcd05.json", "receipt_0x9a5437ec.json"}) receipts.push_back(std::move(**ingest::decode_receipt(recorded(name))));
  auto status = ingest::attach_receipts(out.back(), std::move(receipts));
  EXPECT_TRUE(status.ok()) << status.error().message;
  return out;
}

template <std::size_t N>
schema::FixedBytes<N> fixed(const pqxx::field& f) {
  schema::FixedBytes<N> out;
  EXPECT_TRUE(schema::parse_fixed(f.as<std::string>(), out)) << f.name();
  return out;
}

TEST(PostgresSink, HomesteadBlocksKeepEveryFieldAndTheirHeaderHashRecomputesFromTheRow) {
  auto blocks = homestead_blocks();
  ASSERT_EQ(blocks.size(), 2u);
  std::string db = Postgres::instance().create_database("homestead");
  sinks::PostgresSink sink(db, "mainnet");
  sink.migrate();
  sink.write(blocks);

  pqxx::connection c(db);
  pqxx::read_transaction tx(c);
  auto hex = [](const char* column) { return std::string("'0x' || encode(") + column + ", 'hex')"; };
  auto rows = tx.exec("SELECT number, " + hex("hash") + ", " + hex("parent_hash") + ", " + hex("sha3_uncles") + ", " + hex("miner") +
                      ", " + hex("state_root") + ", " + hex("transactions_root") + ", " + hex("receipts_root") + ", " +
                      hex("logs_bloom") + ", difficulty::text, gas_limit, gas_used, timestamp, " + hex("extra_data") + ", " +
                      hex("mix_hash") + ", " + hex("nonce") + ", base_fee_per_gas IS NULL, total_difficulty::text, size, "
                      "transaction_count FROM mainnet.blocks ORDER BY number");
  ASSERT_EQ(rows.size(), 2u);
  for (std::size_t i = 0; i < 2; ++i) {
    const auto r = rows[i];
    const schema::Block& want = blocks[i];
    // The header rebuilt from nothing but the row.
    schema::Block b;
    b.number = r[0].as<std::uint64_t>();
    b.parent_hash = fixed<32>(r[2]);
    b.sha3_uncles = fixed<32>(r[3]);
    b.miner = fixed<20>(r[4]);
    b.state_root = fixed<32>(r[5]);
    b.transactions_root = fixed<32>(r[6]);
    b.receipts_root = fixed<32>(r[7]);
    b.logs_bloom = fixed<256>(r[8]);
    // numeric(78,0) comes back as decimal text; schema::U256 reads hex, so compare the text and
    // take the value it names.
    EXPECT_EQ(r[9].as<std::string>(), want.difficulty.to_decimal());
    b.difficulty = want.difficulty;
    b.gas_limit = r[10].as<std::uint64_t>();
    b.gas_used = r[11].as<std::uint64_t>();
    b.timestamp = r[12].as<std::uint64_t>();
    ASSERT_TRUE(schema::parse_data(r[13].as<std::string>(), b.extra_data));
    b.mix_hash = fixed<32>(r[14]);
    b.nonce = fixed<8>(r[15]);
    EXPECT_TRUE(r[16].as<bool>()) << "no base fee before London";
    EXPECT_EQ(ingest::header_hash(b), want.hash) << "block " << b.number << ": the row does not hash to the block";
    EXPECT_EQ(r[1].as<std::string>(), schema::to_hex(want.hash));
    ASSERT_FALSE(r[17].is_null());
    EXPECT_EQ(r[17].as<std::string>(), want.total_difficulty->to_decimal());
    EXPECT_EQ(r[18].as<std::uint64_t>(), want.size);
    EXPECT_EQ(r[19].as<std::uint32_t>(), want.transaction_count);
  }
  EXPECT_EQ(rows[1][17].as<std::string>(), "30078063397065281661");

  auto txs = tx.exec("SELECT transaction_index, " + hex("hash") + ", " + hex("from_address") + ", " + hex("to_address") +
                     ", value::text, gas, gas_price::text, " + hex("input") + ", nonce, type, status IS NULL, gas_used, "
                     "cumulative_gas_used, effective_gas_price::text, contract_address IS NULL, log_count, " + hex("root") +
                     " FROM mainnet.transactions ORDER BY transaction_index");
  ASSERT_EQ(txs.size(), 2u);
  for (std::size_t i = 0; i < 2; ++i) {
    const auto r = txs[i];
    const schema::Transaction& t = blocks[1].transactions[i];
    EXPECT_EQ(r[1].as<std::string>(), schema::to_hex(t.hash));
    EXPECT_EQ(r[2].as<std::string>(), schema::to_hex(t.from_address));
    EXPECT_EQ(r[3].as<std::string>(), schema::to_hex(*t.to_address));
    EXPECT_EQ(r[4].as<std::string>(), t.value.to_decimal());
    EXPECT_EQ(r[5].as<std::uint64_t>(), t.gas);
    EXPECT_EQ(r[6].as<std::string>(), t.gas_price->to_decimal());
    EXPECT_EQ(r[7].as<std::string>(), schema::to_hex(t.input));
    EXPECT_EQ(r[8].as<std::uint64_t>(), t.nonce);
    EXPECT_EQ(r[9].as<int>(), 0);
    EXPECT_TRUE(r[10].as<bool>()) << "no status before Byzantium";
    EXPECT_EQ(r[11].as<std::uint64_t>(), t.gas_used);
    EXPECT_EQ(r[12].as<std::uint64_t>(), t.cumulative_gas_used);
    EXPECT_EQ(r[13].as<std::string>(), t.effective_gas_price->to_decimal());
    EXPECT_TRUE(r[14].as<bool>());
    EXPECT_EQ(r[15].as<std::uint32_t>(), t.log_count);
    EXPECT_EQ(r[16].as<std::string>(), schema::to_hex(*t.root)) << "the receipt's intermediate state root";
  }
  EXPECT_EQ(txs[0][16].as<std::string>(), "0x4db3f06ff4e7283ab1187045ca78f4bd713b0737640180377b4d4a2e9a80c235");

  auto logs = tx.exec("SELECT log_index, " + hex("address") + ", " + hex("topic0") + ", " + hex("data") +
                      " FROM mainnet.logs ORDER BY log_index");
  ASSERT_EQ(logs.size(), blocks[1].logs.size());
  for (std::size_t i = 0; i < logs.size(); ++i) {
    EXPECT_EQ(logs[i][1].as<std::string>(), schema::to_hex(blocks[1].logs[i].address));
    EXPECT_EQ(logs[i][3].as<std::string>(), schema::to_hex(blocks[1].logs[i].data));
  }
  EXPECT_EQ(logs[0][2].as<std::string>(), "0xddf252ad1be2c89b69c2b068fc378daa952ba7f163c4a11628f55a4df523b3ef") << "an ERC-20 Transfer";
}

// A Cancun-era block (mainnet 21925176: header with transaction hashes, 202 receipts, 16
// withdrawals): its withdrawals reach their table, with the header's other post-merge fields.
// The election's SQL on two sessions of its own, next to a leader's writer sink:
// - a lease renewal never waits for a write that holds the writer row (a staged write keeps its
//   transaction open for up to a block interval; renewing in that row made both wait in turn);
// - a second instance does not take over a live lease;
// - once the lease ran out it does, terminating the leader's lease session and the writer's
//   session with its open transaction, under epoch 2; the old leader then writes nothing and
//   its renewal says it was replaced.
TEST(PostgresSink, LeaseRenewalNeverWaitsForAnOpenWriteAndATakeoverFencesTheOldLeader) {
  auto blocks = homestead_blocks();
  std::string db = Postgres::instance().create_database("leader_lease");
  sinks::PostgresSink first_lease(db, "mainnet"), first_writer(db, "mainnet"), second_lease(db, "mainnet");
  first_writer.migrate();
  auto first = first_lease.try_lead("first", "host-a", 11, std::chrono::seconds(30));
  ASSERT_TRUE(first.ours);
  ASSERT_EQ(first.epoch, 1);
  first_writer.write_as("first", first.epoch);
  first_writer.prepare(std::span(blocks).first(1));  // open, holding the writer row FOR SHARE
  auto renewal = std::async(std::launch::async, [&] { first_lease.renew_leadership(std::chrono::seconds(30)); });
  const auto waited = renewal.wait_for(std::chrono::seconds(10));
  first_writer.commit_prepared();
  renewal.get();
  EXPECT_EQ(waited, std::future_status::ready) << "the lease renewal waited for the open write";

  auto refused = second_lease.try_lead("second", "host-b", 22, std::chrono::seconds(30));
  EXPECT_FALSE(refused.ours);
  EXPECT_EQ(refused.instance, "first");
  EXPECT_EQ(refused.epoch, 1);
  EXPECT_GT(refused.lease_left_seconds, 20);

  first_writer.prepare(std::span(blocks).subspan(1, 1));  // open again when the takeover comes
  {
    pqxx::connection c(db);
    pqxx::work tx(c);
    tx.exec0("UPDATE mainnet.writer_lease SET lease_until = now() - interval '1 second'");
    tx.commit();
  }
  auto second = second_lease.try_lead("second", "host-b", 22, std::chrono::seconds(30));
  ASSERT_TRUE(second.ours);
  EXPECT_EQ(second.epoch, 2);
  EXPECT_THROW(first_writer.commit_prepared(), sinks::SinkError) << "the old leader's open write survived the takeover";
  try {
    first_writer.write(std::span(blocks).subspan(1, 1));
    ADD_FAILURE() << "the replaced leader wrote";
  } catch (const sinks::SinkError& e) {
    EXPECT_EQ(e.kind(), sinks::SinkError::Kind::kFenced) << e.what();
    EXPECT_NE(std::string(e.what()).find("another instance leads chain mainnet: second"), std::string::npos) << e.what();
  }
  try {
    first_lease.renew_leadership(std::chrono::seconds(30));
    ADD_FAILURE() << "the replaced leader renewed its lease";
  } catch (const sinks::SinkError& e) {
    EXPECT_EQ(e.kind(), sinks::SinkError::Kind::kFenced) << e.what();
  }
  auto cursor = first_writer.load_cursor();
  ASSERT_TRUE(cursor);
  EXPECT_EQ(cursor->number, blocks[0].number) << "only the write made before the takeover landed";
}

TEST(PostgresSink, CancunBlockKeepsItsWithdrawalsAndBlobFields) {
  const std::string dir = std::string(CHAINIDX_FIXTURES_DIR) + "/mainnet-21925176/";
  auto block = ingest::decode_block(read_text_file(dir + "block.json"));
  ASSERT_TRUE(block.ok()) << block.error().message;
  schema::Block b = std::move(**block);
  auto receipts = ingest::decode_receipts(read_text_file(dir + "receipts.json"));
  ASSERT_TRUE(receipts.ok()) << receipts.error().message;
  auto status = ingest::attach_receipts(b, std::move(**receipts));
  ASSERT_TRUE(status.ok()) << status.error().message;
  ASSERT_EQ(b.withdrawals.size(), 16u);

  std::string db = Postgres::instance().create_database("cancun");
  sinks::PostgresSink sink(db, "mainnet");
  sink.migrate();
  sink.write(std::span<const schema::Block>(&b, 1));

  pqxx::connection c(db);
  pqxx::read_transaction tx(c);
  auto rows = tx.exec("SELECT withdrawal_index, validator_index, '0x' || encode(address, 'hex'), amount_gwei::text "
                      "FROM mainnet.withdrawals WHERE block_number = " + std::to_string(b.number) + " ORDER BY withdrawal_index");
  ASSERT_EQ(rows.size(), 16u);
  for (std::size_t i = 0; i < rows.size(); ++i) {
    EXPECT_EQ(rows[i][0].as<std::uint64_t>(), b.withdrawals[i].index);
    EXPECT_EQ(rows[i][1].as<std::uint64_t>(), b.withdrawals[i].validator_index);
    EXPECT_EQ(rows[i][2].as<std::string>(), schema::to_hex(b.withdrawals[i].address));
    EXPECT_EQ(rows[i][3].as<std::string>(), std::to_string(b.withdrawals[i].amount_gwei));
  }
  EXPECT_EQ(rows[0][0].as<std::uint64_t>(), 0x4a9e66bu);
  auto header = tx.exec1("SELECT blob_gas_used, excess_blob_gas, '0x' || encode(parent_beacon_block_root, 'hex'), "
                         "'0x' || encode(withdrawals_root, 'hex'), transaction_count FROM mainnet.blocks");
  EXPECT_EQ(header[0].as<std::uint64_t>(), *b.blob_gas_used);
  EXPECT_EQ(header[1].as<std::uint64_t>(), *b.excess_blob_gas);
  EXPECT_EQ(header[2].as<std::string>(), schema::to_hex(*b.parent_beacon_block_root));
  EXPECT_EQ(header[3].as<std::string>(), schema::to_hex(*b.withdrawals_root));
  EXPECT_EQ(header[4].as<std::uint32_t>(), 202u);
  EXPECT_EQ(tx.exec1("SELECT count(*) FROM mainnet.logs")[0].as<int>(), 463);
}

// Rows go to Postgres in COPY's binary format, where numeric is written as base-10000 digits by
// us: values at every digit boundary and at the limits of 64 and 256 bits read back exactly
// (Postgres' own text output against U256::to_decimal), and a 64-bit quantity that bigint cannot
// hold is refused, naming the block and the column, with nothing written.
TEST(PostgresSink, NumericsAtEveryBoundaryReadBackExactlyAndAnOversizedBigintIsRefused) {
  auto blocks = homestead_blocks();
  ASSERT_EQ(blocks.size(), 2u);
  schema::Block& b = blocks[1];
  ASSERT_EQ(b.transactions.size(), 2u);
  const std::vector<std::string> hex_values = {
      "0x0", "0x1", "0x9", "0xa", "0x270f", "0x2710", "0x2711", "0x5f5e0ff", "0x5f5e100", "0x5f5e101", "0x56bc75e2d63100000",
      "0xffffffffffffffff", "0x10000000000000000", "0x8000000000000000000000000000000000000000000000000000000000000000",
      "0xffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff", "0x2386f26fc10000", "0x1431e0fae6d7217caa0000000"};
  std::vector<std::optional<schema::U256>*> slots = {&b.base_fee_per_gas, &b.total_difficulty};
  for (auto& t : b.transactions)
    for (auto* f : {&t.gas_price, &t.max_fee_per_gas, &t.max_priority_fee_per_gas, &t.effective_gas_price, &t.v, &t.r, &t.s, &t.max_fee_per_blob_gas})
      slots.push_back(f);
  ASSERT_GE(slots.size(), hex_values.size());
  std::vector<std::string> want;
  for (std::size_t i = 0; i < slots.size(); ++i) {
    schema::U256 v;
    ASSERT_TRUE(schema::parse_quantity(hex_values[i % hex_values.size()], v));
    *slots[i] = v;
    want.push_back(v.to_decimal());
  }
  b.transactions[0].value = *b.total_difficulty;
  b.transactions[1].chain_id = 0xffffffffffffffffull;

  std::string db = Postgres::instance().create_database("numerics");
  sinks::PostgresSink sink(db, "mainnet");
  sink.migrate();
  sink.write(blocks);
  pqxx::connection c(db);
  {
    pqxx::read_transaction tx(c);
    auto h = tx.exec1("SELECT base_fee_per_gas::text, total_difficulty::text FROM mainnet.blocks WHERE number = " + std::to_string(b.number));
    std::vector<std::string> got = {h[0].as<std::string>(), h[1].as<std::string>()};
    auto rows = tx.exec("SELECT gas_price::text, max_fee_per_gas::text, max_priority_fee_per_gas::text, effective_gas_price::text, "
                        "v::text, r::text, s::text, max_fee_per_blob_gas::text, value::text, chain_id::text "
                        "FROM mainnet.transactions WHERE block_number = " + std::to_string(b.number) + " ORDER BY transaction_index");
    ASSERT_EQ(rows.size(), 2u);
    for (const auto& r : rows)
      for (int i = 0; i < 8; ++i) got.push_back(r[i].as<std::string>());
    EXPECT_EQ(got, want);
    EXPECT_EQ(rows[0][8].as<std::string>(), b.total_difficulty->to_decimal());
    EXPECT_EQ(rows[1][9].as<std::string>(), "18446744073709551615");
  }

  // The next block, with a gas limit above bigint's 2^63 - 1.
  schema::Block next = blocks[1];
  next.number = b.number + 1;
  next.parent_hash = b.hash;
  next.hash.bytes[0] ^= 0xff;
  for (auto& t : next.transactions) {
    t.block_number = next.number;
    t.hash.bytes[0] ^= 0xff;
  }
  for (auto& g : next.logs) g.block_number = next.number;
  next.gas_limit = 0x8000000000000000ull;
  try {
    sink.write(std::span<const schema::Block>(&next, 1));
    ADD_FAILURE() << "a gas limit above bigint's range was written";
  } catch (const sinks::SinkError& e) {
    EXPECT_EQ(e.kind(), sinks::SinkError::Kind::kRefused) << e.what();
    const std::string m = e.what();
    EXPECT_NE(m.find("block " + std::to_string(next.number)), std::string::npos) << m;
    EXPECT_NE(m.find("column gas_limit"), std::string::npos) << m;
  }
  pqxx::read_transaction tx(c);
  EXPECT_EQ(tx.exec1("SELECT max(number) FROM mainnet.blocks")[0].as<std::uint64_t>(), b.number) << "the refused block was written";
  EXPECT_EQ(tx.exec1("SELECT block_number FROM mainnet.cursor")[0].as<std::uint64_t>(), b.number);
}

}  // namespace
}  // namespace chainidx::testing

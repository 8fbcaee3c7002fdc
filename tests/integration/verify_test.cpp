// chain.verify_with against real anvil and lying providers: a verifier that contradicts the
// majority, and a serving endpoint that forges a whole consistent branch. Whatever they say,
// Postgres and the topics end equal to the node's chain and the liar is named and quarantined.

#include <gtest/gtest.h>

#include <atomic>
#include <csignal>
#include <map>
#include <mutex>

#include "chain_checks.hpp"
#include "fault_proxy.hpp"
#include "harness.hpp"
#include "ingest/url.hpp"
#include "tcp_relay.hpp"

namespace chainidx::testing {
namespace {

using Chain = TestChain;

std::string quantity(std::uint64_t n) {
  char buf[24];
  std::snprintf(buf, sizeof buf, "0x%llx", static_cast<unsigned long long>(n));
  return buf;
}

std::optional<std::uint64_t> number_param(const std::string& params) {
  if (params.rfind("[\"0x", 0) != 0) return std::nullopt;
  const std::string digits = params.substr(4, params.find('"', 4) - 4);
  if (digits.size() > 16) return std::nullopt;  // a hash
  return std::stoull(digits, nullptr, 16);
}

// The same hash with its last hex digit changed.
std::string forged(const std::string& hash) {
  std::string f = hash;
  f.back() = f.back() == '0' ? '1' : '0';
  return f;
}

void replace_all(std::string& text, const std::string& from, const std::string& to) {
  for (auto at = text.find(from); at != std::string::npos; at = text.find(from, at + to.size())) text.replace(at, from.size(), to);
}

// Waits until the cursor is `depth` below the head, stops the indexer and checks every row and
// message against the node.
void finish(Chain& run, Indexer& indexer, const std::string& db, std::uint64_t depth = 3) {
  const std::uint64_t head = run.anvil.block_number();
  ASSERT_TRUE(wait_until([&] { return cursor_of(db) >= head - depth; }, 60s)) << indexer.log();
  EXPECT_EQ(indexer.stop(SIGTERM), 0) << indexer.log();
  expect_postgres_hashes_equal_anvil(db, run.anvil);
  expect_each_block_published_once(run.broker.consume("anvil.blocks"), db, cursor_of(db));
}

// The first endpoint serves whole blocks faithfully but answers every header lookup by number
// (what the verification asks) with a forged hash. With verify_with = 2 the N + 1 best are all
// three endpoints, so it is always asked (with 1 it is asked only while it ranks among the two
// best, which its slower proxy does not always do); it contradicts the others, loses the vote
// and is quarantined; the blocks are written as the node has them.
TEST(Verify, AnEndpointThatContradictsTheMajorityIsCountedAndQuarantinedAndTheBlocksAreWritten) {
  Chain run;
  std::atomic<int> forgeries{0};
  FaultProxy liar(run.anvil.port(), [&](const std::string& body, std::uint64_t) -> std::optional<FaultProxy::Canned> {
    return FaultProxy::Canned{200, answer_calls(run.anvil, body, [&](const std::string& method, const std::string& params) -> std::optional<std::string> {
      if (method != "eth_getBlockByNumber" || params.find(",false]") == std::string::npos || !number_param(params)) return std::nullopt;
      std::string header = run.anvil.rpc(method, params);
      const auto at = header.find("\"hash\":\"");
      if (at == std::string::npos) return std::nullopt;
      const std::string real = header.substr(at + 8, 66);
      replace_all(header, real, forged(real));
      ++forgeries;
      return "\"result\":" + header;
    })};
  });
  const std::string db = Postgres::instance().create_database("verify_liar_verifier");
  Indexer indexer(run.dir.path(), run.anvil, db, run.broker.bootstrap(),
                  {.extra_endpoints_first = {{run.anvil.ws_url(), liar.url()}, {run.anvil.ws_url(), run.anvil.http_url()}},
                   .chain_extra = "verify_with = 2\ncircuit_cooldown_seconds = 600\n"});
  indexer.start();
  mine_transfers(run.anvil, 12);
  ASSERT_NO_FATAL_FAILURE(finish(run, indexer, db));
  const std::string log = indexer.log();
  EXPECT_GE(forgeries.load(), 1) << "the liar was never asked\n" << log;
  EXPECT_NE(log.find("event=endpoint_contradicted endpoint=" + ingest::endpoint_label(liar.url())), std::string::npos) << log;
  EXPECT_NE(log.find("event=circuit_open endpoint=" + ingest::endpoint_label(liar.url())), std::string::npos) << log;
  EXPECT_EQ(log.find("event=batch_refused"), std::string::npos) << "the honest batch was refused\n" << log;
}

// The best endpoint serves a consistent forged branch from block F on: every hash of a block at
// or above F (in headers, transactions, receipts and the next block's parent) has its last digit
// changed, so the blocks link to each other (header hashes are not checked in this test:
// verify_block_hash = false). The two honest endpoints report the head one block lower, so the
// live path follows the liar. verify_with = 1 finds the batch contradicted: held, not written,
// the liar quarantined, and the blocks fetched again from the majority.
TEST(Verify, ABatchOfAForgedBranchIsNotWrittenAndIsFetchedAgainFromTheMajority) {
  Chain run;
  std::mutex mu;
  std::optional<std::uint64_t> forge_from;
  std::map<std::uint64_t, std::string> real;  // block number -> real hash, from forge_from up
  std::atomic<int> forged_answers{0};
  FaultProxy liar(run.anvil.port(), [&](const std::string& body, std::uint64_t) -> std::optional<FaultProxy::Canned> {
    std::lock_guard lock(mu);
    if (!forge_from) return std::nullopt;
    const std::uint64_t head = run.anvil.block_number();
    for (std::uint64_t n = *forge_from; n <= head; ++n)
      if (!real.contains(n)) real[n] = run.anvil.block_hash(n);
    std::string request = body;
    for (const auto& [n, h] : real) replace_all(request, forged(h), h);
    std::string answer = answer_calls(run.anvil, request, [](const std::string&, const std::string&) { return std::nullopt; });
    const std::string before = answer;
    for (const auto& [n, h] : real) replace_all(answer, h, forged(h));
    if (answer != before) ++forged_answers;
    return FaultProxy::Canned{200, answer};
  });
  // The honest endpoints' "latest" is one block lower than the node's.
  FaultProxy behind(run.anvil.port(), [&](const std::string& body, std::uint64_t) -> std::optional<FaultProxy::Canned> {
    return FaultProxy::Canned{200, answer_calls(run.anvil, body, [&](const std::string& method, const std::string& params) -> std::optional<std::string> {
      if (method != "eth_getBlockByNumber" || params.rfind("[\"latest\"", 0) != 0) return std::nullopt;
      const std::uint64_t head = run.anvil.block_number();
      return "\"result\":" + run.anvil.rpc(method, "[\"" + quantity(head > 0 ? head - 1 : 0) + "\"" + params.substr(9));
    })};
  });
  TcpRelay no_ws(run.anvil.port());
  no_ws.set_mode(TcpRelay::Mode::kDown);  // heads by HTTP polling only, from every endpoint
  const std::string db = Postgres::instance().create_database("verify_forged_branch");
  Indexer indexer(run.dir.path(), run.anvil, db, run.broker.bootstrap(),
                  {.http_url = behind.url(),
                   .ws_url = no_ws.ws_url(),
                   .extra_endpoints_first = {{no_ws.ws_url(), liar.url()}, {no_ws.ws_url(), behind.url()}},
                   .chain_extra = "verify_with = 1\nverify_block_hash = false\ncircuit_cooldown_seconds = 600\nblock_interval_ms = 300\n"});
  indexer.start();
  mine_transfers(run.anvil, 6);
  ASSERT_TRUE(wait_until([&] { return cursor_of(db) >= run.anvil.block_number() - 4; }, 30s)) << indexer.log();
  {
    std::lock_guard lock(mu);
    forge_from = run.anvil.block_number() + 1;
  }
  mine_transfers(run.anvil, 12);
  ASSERT_NO_FATAL_FAILURE(finish(run, indexer, db, 4));  // the honest endpoints' head is one lower
  const std::string log = indexer.log();
  EXPECT_GE(forged_answers.load(), 1) << log;
  EXPECT_NE(log.find("event=batch_refused"), std::string::npos) << log;
  EXPECT_NE(log.find("event=refetch_from"), std::string::npos) << log;
  EXPECT_NE(log.find("event=endpoint_contradicted endpoint=" + ingest::endpoint_label(liar.url())), std::string::npos) << log;
}

}  // namespace
}  // namespace chainidx::testing

// Head tracking when the WebSocket side fails, against real anvil behind an in-process relay:
// every socket down (heads by HTTP polling, then back), a half-open socket, a socket that
// answers pings but brings no head while the chain moves on. Each ends with Postgres and the
// topics equal to the node's chain.

#include <gtest/gtest.h>

#include <atomic>
#include <mutex>
#include <csignal>
#include <thread>

#include "chain_checks.hpp"
#include "fake_ws_node.hpp"
#include "fault_proxy.hpp"
#include "harness.hpp"
#include "tcp_relay.hpp"

namespace chainidx::testing {
namespace {

using Chain = TestChain;

// Mines a block with two transfers every `interval` on its own thread until destroyed.
class Miner {
 public:
  Miner(const Anvil& anvil, std::chrono::milliseconds interval)
      : thread_([this, &anvil, interval] {
          unsigned seed = 1;
          while (!stop_) {
            mine_transfers(anvil, 1, seed++);
            std::this_thread::sleep_for(interval);
          }
        }) {}
  ~Miner() { stop(); }
  void stop() {
    stop_ = true;
    if (thread_.joinable()) thread_.join();
  }

 private:
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

std::string to_hex_number(std::uint64_t n) {
  char buf[20];
  std::snprintf(buf, sizeof buf, "%llx", static_cast<unsigned long long>(n));
  return buf;
}

std::size_t count_of(const std::string& text, const std::string& what) {
  std::size_t n = 0;
  for (auto at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) ++n;
  return n;
}

// Stops mining, waits for the indexer to confirm the head, stops it and checks every row and
// message against the node.
void finish(Chain& run, Miner& miner, Indexer& indexer, const std::string& db) {
  miner.stop();
  const std::uint64_t head = run.anvil.block_number();
  ASSERT_TRUE(wait_until([&] { return cursor_of(db) >= head - 3; }, 60s)) << indexer.log();
  EXPECT_EQ(indexer.stop(SIGTERM), 0) << indexer.log();
  expect_postgres_hashes_equal_anvil(db, run.anvil);
  expect_each_block_published_once(run.broker.consume("anvil.blocks"), db, head - 3);
}

TEST(HeadTracking, WhileEveryWebSocketIsDownHeadsComeByPollingAndTheSubscriptionReturnsWithNoGap) {
  Chain run;
  TcpRelay relay(run.anvil.port());
  const std::string db = Postgres::instance().create_database("ws_down_polling");
  Indexer indexer(run.dir.path(), run.anvil, db, run.broker.bootstrap(),
                  {.ws_url = relay.ws_url(), .chain_extra = "block_interval_ms = 300\nbackoff_initial_ms = 100\nbackoff_max_ms = 1000\n"});
  indexer.start();
  Miner miner(run.anvil, 300ms);
  ASSERT_TRUE(wait_until([&] { return count_of(indexer.log(), "event=head_source source=websocket") == 1 && cursor_of(db) >= 3; }, 30s))
      << indexer.log();

  relay.set_mode(TcpRelay::Mode::kDown);
  ASSERT_TRUE(wait_until([&] { return indexer.log().find("event=head_source source=http_poll") != std::string::npos; }, 10s))
      << indexer.log();
  const std::uint64_t at_down = cursor_of(db);
  // For a minute, confirmation goes on at the chain's pace: polled once a block interval, the
  // cursor stays within a few blocks of head - confirmations (a fixed 3 s poll would leave it 10
  // behind).
  std::uint64_t worst_lag = 0;
  for (int i = 0; i < 150; ++i) {
    std::this_thread::sleep_for(400ms);
    const std::uint64_t head = run.anvil.block_number();
    const std::uint64_t cursor = cursor_of(db);
    worst_lag = std::max(worst_lag, head - 3 > cursor ? head - 3 - cursor : 0);
  }
  EXPECT_GE(cursor_of(db), at_down + 150) << "confirmation stopped while every WebSocket was down";
  EXPECT_LE(worst_lag, 4u) << "heads were polled too seldom while every WebSocket was down";
  // Back-off capped at 1 s with full jitter: dozens of attempts in the minute, never given up.
  EXPECT_GE(relay.connections(), 30) << "the subscriber stopped reconnecting";

  relay.set_mode(TcpRelay::Mode::kPass);
  ASSERT_TRUE(wait_until([&] { return count_of(indexer.log(), "event=head_source source=websocket") == 2; }, 15s)) << indexer.log();
  std::this_thread::sleep_for(1500ms);  // heads by WebSocket again for a while
  ASSERT_NO_FATAL_FAILURE(finish(run, miner, indexer, db));
}

TEST(HeadTracking, AHalfOpenSocketWhosePingsNobodyAnswersIsFoundWithinTwoPingIntervals) {
  Chain run;
  TcpRelay relay(run.anvil.port());
  const std::string db = Postgres::instance().create_database("ws_half_open");
  Indexer indexer(run.dir.path(), run.anvil, db, run.broker.bootstrap(),
                  {.ws_url = relay.ws_url(),
                   .chain_extra = "ws_ping_interval_seconds = 1\nws_handshake_timeout_seconds = 2\nhead_stall_timeout_seconds = 600\n"
                                  "backoff_initial_ms = 100\nbackoff_max_ms = 500\n"});
  indexer.start();
  Miner miner(run.anvil, 300ms);
  ASSERT_TRUE(wait_until([&] { return indexer.log().find("event=head_source source=websocket") != std::string::npos && cursor_of(db) >= 3; }, 30s))
      << indexer.log();
  miner.stop();  // a quiet chain: only the pings can tell the socket is dead
  relay.set_mode(TcpRelay::Mode::kBlackhole);
  const auto blackholed = std::chrono::steady_clock::now();
  ASSERT_TRUE(wait_until([&] { return indexer.log().find("no answer to pings for 2 s: dead socket") != std::string::npos; }, 10s))
      << indexer.log();
  const auto found = std::chrono::steady_clock::now() - blackholed;
  // Two intervals of silence, plus the 100 ms of this test's polling and a margin for the
  // timer's granularity (Beast checks the idle timeout once per half interval).
  EXPECT_LE(found, 3500ms) << std::chrono::duration_cast<std::chrono::milliseconds>(found).count() << " ms";
  relay.set_mode(TcpRelay::Mode::kPass);
  Miner again(run.anvil, 300ms);
  ASSERT_TRUE(wait_until([&] { return count_of(indexer.log(), "event=head_source source=websocket") >= 2; }, 15s)) << indexer.log();
  ASSERT_NO_FATAL_FAILURE(finish(run, again, indexer, db));
}

TEST(HeadTracking, ASocketThatAnswersPingsButBringsNoHeadIsDroppedOnceTheHttpHeadMovesOn) {
  Chain run;
  FakeWsNode idle(FakeWsNode::Behaviour::kIdle);  // subscribes, answers pings, sends no head
  const std::string db = Postgres::instance().create_database("ws_idle_stale");
  Indexer indexer(run.dir.path(), run.anvil, db, run.broker.bootstrap(),
                  {.extra_endpoints_first = {{"ws://127.0.0.1:" + std::to_string(idle.port()), run.anvil.http_url()}},
                   .chain_extra = "block_interval_ms = 300\nhead_stall_timeout_seconds = 600\nbackoff_initial_ms = 100\n"});
  indexer.start();
  ASSERT_TRUE(wait_until([&] { return idle.connections() >= 1 && indexer.log().find("event=head_source source=websocket") != std::string::npos; }, 30s))
      << indexer.log();
  Miner miner(run.anvil, 300ms);
  // Three block intervals without a head while HTTP moves on: dropped, long before the 600 s
  // head-stall timeout, and the next endpoint's subscription brings the heads.
  ASSERT_TRUE(wait_until([&] { return indexer.log().find("while the HTTP head moved on to block") != std::string::npos; }, 10s))
      << indexer.log();
  ASSERT_TRUE(wait_until([&] { return count_of(indexer.log(), "event=head_source source=websocket") >= 2; }, 10s)) << indexer.log();
  std::this_thread::sleep_for(1500ms);
  ASSERT_NO_FATAL_FAILURE(finish(run, miner, indexer, db));
}

// The first endpoint is a node stuck at block X (its HTTP head stays at X and it has no block
// above; its WebSocket subscribes and brings nothing) while the chain goes 20 and more blocks
// on. It must serve no head and no block above X: no false reorg, no block asked of it above X.
TEST(HeadTracking, AnEndpointStuckTwentyBlocksBehindServesNoHeadOrBlockAboveItAndCausesNoFalseReorg) {
  Chain run;
  mine_transfers(run.anvil, 5);
  const std::uint64_t stuck_at = run.anvil.block_number();
  auto number_in = [](const std::string& params) -> std::optional<std::uint64_t> {
    if (params.rfind("[\"0x", 0) != 0) return std::nullopt;
    const std::string digits = params.substr(4, params.find('"', 4) - 4);
    if (digits.size() > 16) return std::nullopt;  // a block hash, not a number
    return std::stoull(digits, nullptr, 16);
  };
  std::atomic<int> asked_above{0};
  FaultProxy frozen(run.anvil.port(), [&](const std::string& body, std::uint64_t) -> std::optional<FaultProxy::Canned> {
    std::string answer = answer_calls(run.anvil, body, [&](const std::string& method, const std::string& params) -> std::optional<std::string> {
      if (method == "eth_blockNumber") return "\"result\":\"0x" + to_hex_number(stuck_at) + "\"";
      if (method == "eth_getBlockByNumber" && params.rfind("[\"latest\"", 0) == 0)
        return "\"result\":" + run.anvil.rpc(method, "[\"0x" + to_hex_number(stuck_at) + "\"" + params.substr(9));
      if (method != "eth_getBlockByNumber" && method != "eth_getBlockReceipts") return std::nullopt;
      if (auto n = number_in(params); n && *n > stuck_at) {
        ++asked_above;
        return std::string("\"result\":null");
      }
      return std::nullopt;
    });
    return FaultProxy::Canned{200, answer};
  });
  FakeWsNode idle(FakeWsNode::Behaviour::kIdle);
  const std::string db = Postgres::instance().create_database("endpoint_stuck");
  Indexer indexer(run.dir.path(), run.anvil, db, run.broker.bootstrap(),
                  {.extra_endpoints_first = {{"ws://127.0.0.1:" + std::to_string(idle.port()), frozen.url()}},
                   .chain_extra = "block_interval_ms = 300\nendpoint_max_lag_blocks = 5\nhead_stall_timeout_seconds = 600\nbackoff_initial_ms = 100\n"});
  indexer.start();
  Miner miner(run.anvil, 200ms);
  ASSERT_TRUE(wait_until([&] { return run.anvil.block_number() >= stuck_at + 25 && cursor_of(db) >= stuck_at + 20; }, 60s)) << indexer.log();
  ASSERT_NO_FATAL_FAILURE(finish(run, miner, indexer, db));
  const std::string log = indexer.log();
  EXPECT_NE(log.find("event=lagging_endpoint endpoint="), std::string::npos) << log;
  for (const char* wrong : {"event=reorg", "event=rollback", "event=stale_branch_dropped", "event=unexpected_block"})
    EXPECT_EQ(log.find(wrong), std::string::npos) << wrong << " in\n" << log;
  EXPECT_EQ(asked_above.load(), 0) << "blocks above its head were asked of the stuck endpoint" << log;
}

// An endpoint (listed first) claims a head 1000 blocks above the chain's, over HTTP: its
// eth_blockNumber and its "latest" header say so. Believed, it would make the honest endpoint
// look 1000 blocks behind, its heads would be refused and nothing more would be confirmed. No
// other endpoint has that block, so the claim is not believed, and indexing goes on.
TEST(HeadTracking, AnEndpointClaimingAHeadFarAheadThatNoOtherEndpointHasIsNotBelieved) {
  Chain run;
  mine_transfers(run.anvil, 5);
  std::atomic<std::uint64_t> claimed{0};
  FaultProxy liar(run.anvil.port(), [&](const std::string& body, std::uint64_t) -> std::optional<FaultProxy::Canned> {
    std::string answer = answer_calls(run.anvil, body, [&](const std::string& method, const std::string& params) -> std::optional<std::string> {
      const std::uint64_t far = run.anvil.block_number() + 1000;
      claimed = far;
      if (method == "eth_blockNumber") return "\"result\":\"0x" + to_hex_number(far) + "\"";
      if (method == "eth_getBlockByNumber" && params.rfind("[\"latest\"", 0) == 0) {
        std::string block = run.anvil.rpc(method, params);
        const std::size_t at = block.find("\"number\":\"0x");
        const std::size_t end = block.find('"', at + 12);
        return "\"result\":" + block.substr(0, at) + "\"number\":\"0x" + to_hex_number(far) + block.substr(end);
      }
      return std::nullopt;
    });
    return FaultProxy::Canned{200, answer};
  });
  FakeWsNode idle(FakeWsNode::Behaviour::kIdle);
  const std::string db = Postgres::instance().create_database("endpoint_far_ahead");
  Indexer indexer(run.dir.path(), run.anvil, db, run.broker.bootstrap(),
                  {.extra_endpoints_first = {{"ws://127.0.0.1:" + std::to_string(idle.port()), liar.url()}},
                   .chain_extra = "block_interval_ms = 300\nendpoint_max_lag_blocks = 5\nhead_stall_timeout_seconds = 600\nbackoff_initial_ms = 100\n"});
  indexer.start();
  const std::uint64_t start = run.anvil.block_number();
  Miner miner(run.anvil, 200ms);
  ASSERT_TRUE(wait_until([&] { return cursor_of(db) >= start + 20; }, 60s)) << "confirmation stopped\n" << indexer.log();
  ASSERT_NO_FATAL_FAILURE(finish(run, miner, indexer, db));
  const std::string log = indexer.log();
  EXPECT_GT(claimed.load(), 0u);
  EXPECT_NE(log.find("event=head_unbacked endpoint=" + liar.url()), std::string::npos) << log;
  EXPECT_EQ(log.find("event=lagging_endpoint endpoint=" + run.anvil.http_url()), std::string::npos)
      << "the honest endpoint was taken for a lagging one\n" << log;
}

// A provider keeps serving the old branch's head after a reorg deeper than the confirmations, and
// no WebSocket is up: the live path sees nothing change. The re-poll compares the newest
// confirmed blocks by number with the node's, finds the reorg, and the deep-reorg policy halts.
TEST(RePoll, AReorgBelowTheCursorThatTheLivePathMissedIsFoundAndHalts) {
  Chain run;
  TcpRelay relay(run.anvil.port());
  relay.set_mode(TcpRelay::Mode::kDown);  // heads by HTTP polling only
  std::mutex mu;
  std::string stale_latest;  // once set, "latest" is answered with it (the old branch's head)
  std::string head_hash;     // once set: whether the indexer asked for that block
  bool head_fetched = false;
  FaultProxy stale(run.anvil.port(), [&](const std::string& body, std::uint64_t) -> std::optional<FaultProxy::Canned> {
    std::lock_guard lock(mu);
    if (!head_hash.empty() && body.find(head_hash) != std::string::npos) head_fetched = true;
    if (stale_latest.empty()) return std::nullopt;
    return FaultProxy::Canned{200, answer_calls(run.anvil, body, [&](const std::string& method, const std::string& params) -> std::optional<std::string> {
      if (method == "eth_getBlockByNumber" && params.rfind("[\"latest\"", 0) == 0) return "\"result\":" + stale_latest;
      return std::nullopt;
    })};
  });
  const std::string db = Postgres::instance().create_database("repoll_deep_reorg");
  Indexer indexer(run.dir.path(), run.anvil, db, run.broker.bootstrap(),
                  {.http_url = stale.url(), .ws_url = relay.ws_url(),
                   .chain_extra = "block_interval_ms = 300\nrepoll_interval_seconds = 1\nrepoll_blocks = 8\n",
                   .server_extra = "hold_on_halt = false\n"});
  indexer.start();
  mine_transfers(run.anvil, 12);
  const std::uint64_t head = run.anvil.block_number();
  {
    std::lock_guard lock(mu);
    head_hash = run.anvil.block_hash(head).substr(2);  // as the request has it, with or without 0x
  }
  // The live path is done with this branch: the head block fetched, head - 3 written. A reorg
  // during its fetches would be its own to find.
  ASSERT_TRUE(wait_until([&] {
    std::lock_guard lock(mu);
    return head_fetched && cursor_of(db) >= head - 3;
  }, 30s)) << indexer.log();
  std::this_thread::sleep_for(300ms);
  {
    std::lock_guard lock(mu);
    stale_latest = run.anvil.rpc("eth_getBlockByNumber", "[\"latest\",false]");
  }
  run.anvil.reorg(6);  // replaces head-5..head: three confirmed blocks among them
  ASSERT_EQ(run.anvil.block_number(), head);
  auto code = indexer.wait(20s);
  ASSERT_TRUE(code) << "the reorg below the cursor went unnoticed\n" << indexer.log();
  EXPECT_EQ(*code, 3) << indexer.log();
  EXPECT_NE(indexer.log().find("deep reorg found by the re-poll: the stored block " + std::to_string(head - 5)), std::string::npos)
      << indexer.log();
  EXPECT_EQ(cursor_of(db), head - 3) << "the cursor moved after the reorg";
}

std::uint64_t tagged_number(const Anvil& anvil, const char* tag) {
  const std::string header = anvil.rpc("eth_getBlockByNumber", std::string("[\"") + tag + "\",false]");
  const auto at = header.find("\"number\":\"0x");
  return std::stoull(header.substr(at + 12, header.find('"', at + 12) - at - 12), nullptr, 16);
}

// chain.confirmations = "safe": a block is confirmed once the node's safe block is it or above
// it (anvil's is 32 below its head), never earlier, and the output is the node's chain.
TEST(ConfirmByTag, BlocksAreConfirmedUpToTheNodesSafeBlockAndNoFurther) {
  Chain run;
  run.anvil.rpc("anvil_mine", "[\"0x30\"]");  // a history for the range engine to catch up
  const std::string db = Postgres::instance().create_database("confirm_safe");
  Indexer indexer(run.dir.path(), run.anvil, db, run.broker.bootstrap(), {.confirmations_tag = "safe"});
  indexer.start();
  Miner miner(run.anvil, 100ms);
  std::uint64_t samples = 0;
  for (int i = 0; i < 40; ++i) {
    std::this_thread::sleep_for(150ms);
    const std::uint64_t cursor = cursor_of(db);  // read first: the safe block only grows
    const std::uint64_t safe = tagged_number(run.anvil, "safe");
    EXPECT_LE(cursor, safe) << "block " << cursor << " was confirmed above the node's safe block " << safe;
    if (cursor > 0) ++samples;
  }
  EXPECT_GT(samples, 0u) << "nothing was confirmed while mining\n" << indexer.log();
  miner.stop();
  const std::uint64_t safe = tagged_number(run.anvil, "safe");
  ASSERT_EQ(safe + 32, run.anvil.block_number());
  ASSERT_TRUE(wait_until([&] { return cursor_of(db) == safe; }, 30s)) << "cursor " << cursor_of(db) << ", safe " << safe << "\n"
                                                                       << indexer.log();
  EXPECT_EQ(indexer.stop(SIGTERM), 0) << indexer.log();
  EXPECT_EQ(cursor_of(db), safe);
  expect_postgres_hashes_equal_anvil(db, run.anvil);
  expect_each_block_published_once(run.broker.consume("anvil.blocks"), db, safe);
}

}  // namespace
}  // namespace chainidx::testing

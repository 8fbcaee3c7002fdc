// The chaos run: while anvil mines blocks with logs and reorganises below the confirmation depth,
// faults come at random on two endpoints, each behind a WebSocket relay and an HTTP proxy: the
// WebSocket stalled, dropped or blackholed; HTTP answering 429, 5xx or truncated JSON; now and
// then on both endpoints at once. At the end Postgres and the topics must equal the node's
// canonical chain. The suite runs a short version; bench/chaos.sh runs 100 faults
// (CHAINIDX_CHAOS_FAULTS) and prints the count of each fault survived. CHAINIDX_CHAOS_SEED
// repeats a run.

#include <gtest/gtest.h>

#include <array>
#include <atomic>
#include <csignal>
#include <cstdlib>
#include <iostream>
#include <memory>
#include <random>
#include <thread>

#include "chain_checks.hpp"
#include "fault_proxy.hpp"
#include "harness.hpp"
#include "tcp_relay.hpp"

namespace chainidx::testing {
namespace {

enum Fault { kWsStall, kWsDrop, kWsBlackhole, kHttp429, kHttp5xx, kHttpTruncated, kFaultKinds };
constexpr std::array<const char*, kFaultKinds> kFaultNames = {"ws_stall", "ws_drop", "ws_blackhole", "http_429", "http_5xx", "http_truncated_json"};

// One endpoint's way to the node: a relay for its WebSocket, a proxy for its HTTP.
struct FaultyEndpoint {
  explicit FaultyEndpoint(const Anvil& anvil)
      : relay(anvil.port()),
        proxy(
            anvil.port(),
            [this](const std::string&, std::uint64_t) -> std::optional<FaultProxy::Canned> {
              switch (http.load()) {
                case kHttp429: return FaultProxy::Canned{429, "rate limited", retry_after.load() ? "1" : ""};
                case kHttp5xx: return FaultProxy::Canned{status.load(), "upstream trouble"};
                default: return std::nullopt;
              }
            },
            [this](const std::string&, std::string& response, std::uint64_t) {
              if (http.load() == kHttpTruncated && response.size() > 16) response.resize(response.size() / 2);
            }) {}
  TcpRelay relay;
  std::atomic<int> http{-1};  // the HTTP fault in force, or -1
  std::atomic<int> status{503};
  std::atomic<bool> retry_after{false};
  FaultProxy proxy;

  void apply(Fault f, std::mt19937& rng) {
    switch (f) {
      case kWsStall: relay.set_mode(TcpRelay::Mode::kStall); break;
      case kWsDrop: relay.set_mode(TcpRelay::Mode::kDown); break;
      case kWsBlackhole: relay.set_mode(TcpRelay::Mode::kBlackhole); break;
      default:
        status = rng() % 2 ? 502 : 503;
        retry_after = rng() % 2 == 0;
        http = f;
    }
  }
  void clear() {
    relay.set_mode(TcpRelay::Mode::kPass);
    http = -1;
  }
};

int env_int(const char* name, int fallback) {
  const char* v = std::getenv(name);
  return v && *v ? std::atoi(v) : fallback;
}

TEST(Chaos, FaultsAtRandomWhileMiningWithReorgsEndWithTheNodesCanonicalChain) {
  const int faults = env_int("CHAINIDX_CHAOS_FAULTS", 16);
  const unsigned seed = static_cast<unsigned>(env_int("CHAINIDX_CHAOS_SEED", static_cast<int>(std::random_device{}() & 0x7fffffff)));
  std::cout << "chaos: seed " << seed << " (CHAINIDX_CHAOS_SEED), " << faults << " faults" << std::endl;
  std::mt19937 rng(seed);

  TempDir dir;
  Anvil anvil(dir.path());
  DevBroker broker(dir.path(), "anvil");
  anvil.deploy_emitter();
  std::array<std::unique_ptr<FaultyEndpoint>, 2> endpoints{std::make_unique<FaultyEndpoint>(anvil), std::make_unique<FaultyEndpoint>(anvil)};
  const std::string db = Postgres::instance().create_database("chaos");
  Indexer indexer(dir.path(), anvil, db, broker.bootstrap(),
                  {.http_url = endpoints[1]->proxy.url(),
                   .ws_url = endpoints[1]->relay.ws_url(),
                   .extra_endpoints_first = {{endpoints[0]->relay.ws_url(), endpoints[0]->proxy.url()}},
                   .chain_extra = "block_interval_ms = 200\nws_ping_interval_seconds = 1\nws_handshake_timeout_seconds = 2\n"
                                  "http_timeout_seconds = 2\nretry_after_max_seconds = 2\nbackoff_initial_ms = 50\nbackoff_max_ms = 1000\n"
                                  "circuit_failures = 5\ncircuit_cooldown_seconds = 2\n"});
  indexer.start();

  // Blocks with logs every 150 ms; every 15th round a reorg of depth 1 or 2 (below the depth, 3).
  std::atomic<bool> mining{true};
  std::atomic<int> reorgs{0};
  std::thread miner([&] {
    std::mt19937 mine_rng(seed + 1);
    for (unsigned round = 1; mining; ++round) {
      mine_transfers(anvil, 1, mine_rng());
      if (round % 15 == 0) {
        anvil.reorg(1 + static_cast<int>(mine_rng() % 2));
        ++reorgs;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(150));
    }
  });
  ASSERT_TRUE(wait_until([&] { return cursor_of(db) >= 3; }, 30s)) << indexer.log();

  std::array<int, kFaultKinds> survived{};
  int on_both = 0;
  for (int i = 0; i < faults && indexer.running(); ++i) {
    const auto kind = static_cast<Fault>(rng() % kFaultKinds);
    // Now and then every endpoint at once; truncated answers on one only (on all, they would
    // be a block that fails validation everywhere: a stop by design, exit 9).
    const bool both = kind != kHttpTruncated && rng() % 4 == 0;
    const std::size_t which = rng() % 2;
    for (std::size_t e = 0; e < 2; ++e)
      if (both || e == which) endpoints[e]->apply(kind, rng);
    on_both += both;
    std::this_thread::sleep_for(std::chrono::milliseconds(300 + rng() % 1200));
    for (auto& e : endpoints) e->clear();
    ++survived[kind];
    std::this_thread::sleep_for(std::chrono::milliseconds(100 + rng() % 400));
  }
  mining = false;
  miner.join();
  ASSERT_TRUE(indexer.running()) << "the indexer stopped during the chaos\n" << indexer.log();

  const std::uint64_t head = anvil.block_number();
  ASSERT_TRUE(wait_until([&] { return cursor_of(db) >= head - 3; }, 90s)) << indexer.log();
  EXPECT_EQ(indexer.stop(SIGTERM), 0) << indexer.log();
  expect_postgres_hashes_equal_anvil(db, anvil);
  expect_each_block_published_once(broker.consume("anvil.blocks"), db, head - 3);

  std::cout << "chaos: survived";
  int total = 0;
  for (int k = 0; k < kFaultKinds; ++k) {
    std::cout << " " << kFaultNames[k] << "=" << survived[k];
    total += survived[k];
  }
  std::cout << " (" << total << " faults, " << on_both << " on both endpoints at once) over " << head << " blocks with " << reorgs
            << " reorgs below the depth; Postgres and the topics equal the node's chain: "
            << (::testing::Test::HasFailure() ? "NO" : "yes") << std::endl;
  EXPECT_EQ(total, faults);
}

}  // namespace
}  // namespace chainidx::testing

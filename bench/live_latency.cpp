// Head-to-confirmed-write latency of the live path: on a node started with --no-mining, mines one
// block at a time at a steady interval (each with a light load: one transfer), and measures, for
// each, how long it takes from the evm_mine that makes block N + confirmations to the moment the
// indexer's cursor in Postgres reaches block N (the cursor moves in the same transaction as the
// rows, after the Kafka transaction committed). The benchmark learns of each cursor move by
// LISTEN/NOTIFY (a trigger it puts on the cursor table notifies at commit), not by polling: a poll
// every few hundred microseconds kept a Postgres backend and this process busy on the cores the
// indexer measured here needs.
//
// Beside it runs a stall probe: a thread on each CPU that sleeps 1 ms at a time and notes each
// wake-up that came 2 ms or more late. On a quiet machine it is never late; when it is, whatever
// ran on that CPU was kept off it at that moment (the CPU busy with others, or the virtual
// machine's CPU paused by its host), the indexer's threads as well as the probe. Each block's
// line says how late the probe was at worst during that block's measured time.
//   live_latency RPC_URL PG_CONNINFO SCHEMA CONFIRMATIONS ROUNDS INTERVAL_MS
// Prints "LATENCY_US PROBE_LATE_US" a line; bench/live_latency.sh sums them up.

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <pqxx/pqxx>
#include <pthread.h>
#include <sched.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <iostream>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "ingest/http_rpc_client.hpp"

namespace {

namespace asio = boost::asio;
using chainidx::ingest::HttpRpcClient;
using chainidx::ingest::RpcRequest;
using chainidx::ingest::Task;
using Clock = std::chrono::steady_clock;

std::uint64_t quantity(const std::string& json) { return std::stoull(json.substr(json.find("0x") + 2), nullptr, 16); }

// A thread on each CPU that wakes every millisecond and keeps the wake-ups that came 2 ms or
// more late (see the top): a virtual machine's CPU can be paused while the other runs.
class StallProbe {
 public:
  StallProbe() {
    const unsigned cpus = std::max(1u, std::thread::hardware_concurrency());
    for (unsigned cpu = 0; cpu < cpus; ++cpu)
      threads_.emplace_back([this, cpu] {
        cpu_set_t set;
        CPU_ZERO(&set);
        CPU_SET(cpu, &set);
        pthread_setaffinity_np(pthread_self(), sizeof set, &set);  // best effort: unpinned, it still sees the machine
        run();
      });
  }
  ~StallProbe() {
    stop_ = true;
    for (auto& t : threads_) t.join();
  }
  /// How late the probe woke at worst between `from` and `to` (0: never 2 ms late).
  std::int64_t worst_between(Clock::time_point from, Clock::time_point to) {
    std::lock_guard lock(mutex_);
    std::int64_t worst = 0;
    for (const auto& [at, late_us] : late_)
      if (at >= from && at - std::chrono::microseconds(late_us) <= to) worst = std::max(worst, late_us);
    return worst;
  }

 private:
  void run() {
    constexpr auto kStep = std::chrono::milliseconds(1);
    while (!stop_) {
      const auto due = Clock::now() + kStep;
      std::this_thread::sleep_until(due);
      const auto woke = Clock::now();
      const auto late_us = std::chrono::duration_cast<std::chrono::microseconds>(woke - due).count();
      if (late_us >= 2000) {
        std::lock_guard lock(mutex_);
        late_.emplace_back(woke, late_us);
      }
    }
  }
  std::atomic<bool> stop_{false};
  std::mutex mutex_;
  std::vector<std::pair<Clock::time_point, std::int64_t>> late_;  // wake-up time, how late
  std::vector<std::thread> threads_;
};

// The newest cursor block that a notification named.
class CursorListener final : public pqxx::notification_receiver {
 public:
  CursorListener(pqxx::connection& db, std::int64_t initial) : pqxx::notification_receiver(db, kChannel), latest_(initial) {}
  void operator()(const std::string& payload, int) override { latest_ = std::max<std::int64_t>(latest_, std::stoll(payload)); }
  std::int64_t latest() const { return latest_; }
  static constexpr const char* kChannel = "chainidx_bench_cursor";

 private:
  std::int64_t latest_;
};

// A trigger on the indexer's cursor table that notifies the new block number at commit.
void notify_cursor_moves(pqxx::connection& db, const std::string& schema) {
  pqxx::nontransaction tx(db);
  tx.exec("CREATE OR REPLACE FUNCTION public.chainidx_bench_cursor_notify() RETURNS trigger LANGUAGE plpgsql AS "
          "$$ BEGIN PERFORM pg_notify('" + std::string(CursorListener::kChannel) + "', NEW.block_number::text); RETURN NEW; END $$");
  const std::string table = db.quote_name(schema) + ".cursor";
  tx.exec("DROP TRIGGER IF EXISTS chainidx_bench_cursor ON " + table);
  tx.exec("CREATE TRIGGER chainidx_bench_cursor AFTER INSERT OR UPDATE ON " + table +
          " FOR EACH ROW EXECUTE FUNCTION public.chainidx_bench_cursor_notify()");
}

Task<int> measure(HttpRpcClient& rpc, pqxx::connection& db, std::string schema, std::uint64_t confirmations, unsigned rounds,
                  std::chrono::milliseconds interval, StallProbe& probe) {
  auto executor = co_await asio::this_coro::executor;
  asio::steady_timer timer(executor);
  RpcRequest accounts_request{"eth_accounts", "[]"};
  const std::string accounts = co_await rpc.call(std::move(accounts_request));
  const std::string from = accounts.substr(accounts.find("0x"), 42);
  notify_cursor_moves(db, schema);
  std::int64_t initial = -1;
  {
    pqxx::nontransaction tx(db);
    auto r = tx.exec("SELECT block_number FROM " + db.quote_name(schema) + ".cursor");
    if (!r.empty()) initial = r[0][0].as<std::int64_t>();
  }
  CursorListener listener(db, initial);
  for (unsigned i = 0; i < rounds; ++i) {
    const auto due = Clock::now() + interval;
    // A light load: one plain transfer in each block.
    RpcRequest send{"eth_sendTransaction", "[{\"from\":\"" + from + "\",\"to\":\"0x00000000000000000000000000000000000beef1\",\"value\":\"0x1\"}]"};
    co_await rpc.call(std::move(send));
    const auto mined_at = Clock::now();
    RpcRequest mine{"evm_mine", "[]"};
    co_await rpc.call(std::move(mine));
    RpcRequest number{"eth_blockNumber", "[]"};
    const std::uint64_t head = quantity(co_await rpc.call(std::move(number)));
    if (head >= confirmations) {
      const auto want = static_cast<std::int64_t>(head - confirmations);
      const auto give_up = mined_at + std::chrono::seconds(30);
      db.get_notifs();  // those that came while this round mined
      while (listener.latest() < want) {
        if (Clock::now() > give_up) {
          std::cerr << "live_latency: the cursor did not reach block " << want << " within 30 s\n";
          co_return 1;
        }
        db.await_notification(0, 100000);
      }
      const auto done = Clock::now();
      const auto us = std::chrono::duration_cast<std::chrono::microseconds>(done - mined_at).count();
      if (i >= confirmations)  // the first rounds only fill the depth
        std::printf("%lld %lld\n", static_cast<long long>(us), static_cast<long long>(probe.worst_between(mined_at, done)));
      std::fflush(stdout);
    }
    timer.expires_at(due);
    co_await timer.async_wait(asio::use_awaitable);
  }
  co_return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 7) {
    std::cerr << "usage: live_latency RPC_URL PG_CONNINFO SCHEMA CONFIRMATIONS ROUNDS INTERVAL_MS\n";
    return 2;
  }
  asio::io_context io;
  HttpRpcClient rpc(io.get_executor(), argv[1], {1e9, 1e9});
  pqxx::connection db(argv[2]);
  int code = 1;
  StallProbe probe;
  asio::co_spawn(io,
                 measure(rpc, db, argv[3], std::stoull(argv[4]), static_cast<unsigned>(std::stoul(argv[5])),
                         std::chrono::milliseconds(std::stoul(argv[6])), probe),
                 [&](std::exception_ptr e, int c) {
                   code = c;
                   if (e) try {
                       std::rethrow_exception(e);
                     } catch (const std::exception& x) {
                       std::cerr << "live_latency: " << x.what() << "\n";
                       code = 1;
                     }
                 });
  io.run();
  return code;
}

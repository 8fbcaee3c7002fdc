// Head-to-confirmed-write latency of the live path: on a node started with --no-mining, mines one
// block at a time at a steady interval (each with a light load: one transfer), and measures, for
// each, how long it takes from the evm_mine that makes block N + confirmations to the moment the
// indexer's cursor in Postgres reaches block N (the cursor moves in the same transaction as the
// rows, after the Kafka transaction committed). The benchmark learns of each cursor move by
// LISTEN/NOTIFY (a trigger it puts on the cursor table notifies at commit), not by polling: a poll
// every few hundred microseconds kept a Postgres backend and this process busy on the cores the
// indexer measured here needs.
//   live_latency RPC_URL PG_CONNINFO SCHEMA CONFIRMATIONS ROUNDS INTERVAL_MS
// Prints one latency in microseconds a line; bench/live_latency.sh sums them up.

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <pqxx/pqxx>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <iostream>
#include <string>

#include "ingest/http_rpc_client.hpp"

namespace {

namespace asio = boost::asio;
using chainidx::ingest::HttpRpcClient;
using chainidx::ingest::RpcRequest;
using chainidx::ingest::Task;
using Clock = std::chrono::steady_clock;

std::uint64_t quantity(const std::string& json) { return std::stoull(json.substr(json.find("0x") + 2), nullptr, 16); }

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
                  std::chrono::milliseconds interval) {
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
      const auto us = std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - mined_at).count();
      if (i >= confirmations) std::printf("%lld\n", static_cast<long long>(us));  // the first rounds only fill the depth
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
  asio::co_spawn(io,
                 measure(rpc, db, argv[3], std::stoull(argv[4]), static_cast<unsigned>(std::stoul(argv[5])),
                         std::chrono::milliseconds(std::stoul(argv[6]))),
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

// Head-to-confirmed-write latency of the live path: on a node started with --no-mining, mines one
// block at a time at a steady interval (each with a light load: one transfer), and measures, for
// each, how long it takes from the evm_mine that makes block N + confirmations to the moment the
// indexer's cursor in Postgres reaches block N (the cursor moves in the same transaction as the
// rows, after the Kafka transaction committed). The cursor is polled every 200 µs.
//   live_latency RPC_URL PG_CONNINFO SCHEMA CONFIRMATIONS ROUNDS INTERVAL_MS
// Prints one latency in microseconds a line; bench/live_latency.sh sums them up.

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <pqxx/pqxx>

#include <chrono>
#include <cstdio>
#include <iostream>
#include <string>
#include <thread>

#include "ingest/http_rpc_client.hpp"

namespace {

namespace asio = boost::asio;
using chainidx::ingest::HttpRpcClient;
using chainidx::ingest::RpcRequest;
using chainidx::ingest::Task;
using Clock = std::chrono::steady_clock;

std::uint64_t quantity(const std::string& json) { return std::stoull(json.substr(json.find("0x") + 2), nullptr, 16); }

Task<int> measure(HttpRpcClient& rpc, pqxx::connection& db, std::string schema, std::uint64_t confirmations, unsigned rounds,
                  std::chrono::milliseconds interval) {
  auto executor = co_await asio::this_coro::executor;
  asio::steady_timer timer(executor);
  RpcRequest accounts_request{"eth_accounts", "[]"};
  const std::string accounts = co_await rpc.call(std::move(accounts_request));
  const std::string from = accounts.substr(accounts.find("0x"), 42);
  db.prepare("cursor", "SELECT block_number FROM " + db.quote_name(schema) + ".cursor");
  auto cursor = [&]() -> std::int64_t {
    pqxx::nontransaction tx(db);
    auto r = tx.exec_prepared("cursor");
    return r.empty() ? -1 : r[0][0].as<std::int64_t>();
  };
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
      while (cursor() < want) {
        if (Clock::now() > give_up) {
          std::cerr << "live_latency: the cursor did not reach block " << want << " within 30 s\n";
          co_return 1;
        }
        std::this_thread::sleep_for(std::chrono::microseconds(200));
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

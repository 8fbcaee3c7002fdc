// HttpRpcClient against a real anvil: the token bucket counts every JSON-RPC call, those inside a
// batch included, as providers count and bill them.

#include <gtest/gtest.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>

#include "fault_proxy.hpp"
#include "harness.hpp"
#include "ingest/http_rpc_client.hpp"

namespace chainidx::testing {
namespace {

// Rate 2/s, burst 4: a batch of 4 calls spends the whole burst, so the call after it must wait
// for a token (about half a second). Had the batch cost one token, the call would go at once.
// Only a lower bound on the wait is checked: a loaded machine makes it longer, never shorter.
TEST(HttpRpcClient, EveryCallInABatchTakesAToken) {
  TempDir dir;
  Anvil anvil(dir.path());
  boost::asio::io_context io;
  ingest::HttpRpcClient client(io.get_executor(), anvil.http_url(), {2.0, 4.0});
  std::chrono::steady_clock::duration waited{};
  std::size_t replies = 0;
  std::exception_ptr error;
  boost::asio::co_spawn(io, [&]() -> boost::asio::awaitable<void> {
    std::vector<ingest::RpcRequest> batch(4, ingest::RpcRequest{"eth_blockNumber", "[]"});
    auto got = co_await client.batch(std::move(batch));
    replies = got.size();
    auto before = std::chrono::steady_clock::now();
    ingest::RpcRequest one{"eth_chainId", "[]"};
    co_await client.call(std::move(one));
    waited = std::chrono::steady_clock::now() - before;
  }, [&](std::exception_ptr e) { error = e; });
  io.run();
  if (error) std::rethrow_exception(error);
  EXPECT_EQ(replies, 4u);
  EXPECT_EQ(client.calls_sent(), 5u);
  EXPECT_EQ(client.requests_sent(), 2u);
  EXPECT_GE(waited, std::chrono::milliseconds(400)) << "the batch's calls were not counted against the rate";
}

// Every request is reported to the observer once, with its method (a batch's shared method, or
// "batch"), its calls, and what it came to: a 429, a 503, a JSON-RPC error, an answer that is not
// JSON-RPC, and plain successes, each told apart.
TEST(HttpRpcClient, EachRequestIsReportedOnceWithItsMethodAndOutcome) {
  TempDir dir;
  Anvil anvil(dir.path());
  FaultProxy proxy(anvil.port(), [](const std::string& body, std::uint64_t n) -> std::optional<FaultProxy::Canned> {
    if (n == 3) return FaultProxy::Canned{429, "slow down"};
    if (n == 4) return FaultProxy::Canned{503, "unavailable"};
    if (n == 5) {
      const auto at = body.find("\"id\":") + 5;
      const std::string id = body.substr(at, body.find_first_of(",}", at) - at);
      return FaultProxy::Canned{200, "{\"jsonrpc\":\"2.0\",\"id\":" + id + ",\"error\":{\"code\":-32000,\"message\":\"header not found\"}}"};
    }
    if (n == 6) return FaultProxy::Canned{200, "<html>not json</html>"};
    return std::nullopt;
  });
  boost::asio::io_context io;
  ingest::HttpRpcClient client(io.get_executor(), proxy.url(), {1000.0, 1000.0});
  std::vector<std::tuple<std::string, std::size_t, std::string>> seen;
  client.observe([&](const ingest::RpcObservation& o) {
    seen.emplace_back(std::string(o.method), o.calls, ingest::outcome_name(o.outcome));
    EXPECT_GT(o.duration.count(), 0);
    EXPECT_FALSE(o.endpoint.empty());
  });
  boost::asio::co_spawn(io, [&]() -> boost::asio::awaitable<void> {
    ingest::RpcRequest one{"eth_blockNumber", "[]"};
    co_await client.call(one);  // 1
    std::vector<ingest::RpcRequest> mixed{{"eth_blockNumber", "[]"}, {"eth_chainId", "[]"}};
    co_await client.batch(mixed);  // 2
    for (int i = 0; i < 4; ++i) {  // 3..6
      try {
        co_await client.call(one);
      } catch (const ingest::RpcError&) {
      }
    }
    std::vector<ingest::RpcRequest> same(3, ingest::RpcRequest{"eth_chainId", "[]"});
    co_await client.batch(same);  // 7
  }, [](std::exception_ptr e) { if (e) std::rethrow_exception(e); });
  io.run();
  using T = std::tuple<std::string, std::size_t, std::string>;
  const std::vector<T> expected{T{"eth_blockNumber", 1, "ok"},         T{"batch", 2, "ok"},
                                T{"eth_blockNumber", 1, "throttled"},  T{"eth_blockNumber", 1, "http_error"},
                                T{"eth_blockNumber", 1, "rpc_error"},  T{"eth_blockNumber", 1, "malformed"},
                                T{"eth_chainId", 3, "ok"}};
  EXPECT_EQ(seen, expected);
}

}  // namespace
}  // namespace chainidx::testing

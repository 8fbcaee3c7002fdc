// HttpRpcClient against a real anvil: the token bucket counts every JSON-RPC call, those inside a
// batch included, as providers count and bill them.

#include <gtest/gtest.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>

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

}  // namespace
}  // namespace chainidx::testing

// The small pure pieces of ingest/: token bucket, backoff, JSON-RPC framing, URL parsing.

#include <gtest/gtest.h>

#include "ingest/backoff.hpp"
#include "ingest/json_rpc.hpp"
#include "ingest/rpc_error.hpp"
#include "ingest/token_bucket.hpp"
#include "ingest/url.hpp"

namespace chainidx::ingest {
namespace {

using namespace std::chrono_literals;
using Clock = TokenBucket::Clock;

TEST(TokenBucket, BurstThenRateWithFakeTime) {
  Clock::time_point t0{};
  TokenBucket bucket(10.0, 3.0, t0);  // 10/s, burst 3
  EXPECT_EQ(bucket.try_take(t0), 0ns);
  EXPECT_EQ(bucket.try_take(t0), 0ns);
  EXPECT_EQ(bucket.try_take(t0), 0ns);
  auto wait = bucket.try_take(t0);
  EXPECT_GT(wait, 99ms);
  EXPECT_LE(wait, 101ms);
  EXPECT_EQ(bucket.try_take(t0 + 100ms), 0ns) << "one token refills in 1/rate";
  EXPECT_GT(bucket.try_take(t0 + 100ms), 0ns);
  EXPECT_NEAR(bucket.tokens(t0 + 10s), 3.0, 1e-9) << "never more than the burst";
}

TEST(TokenBucket, PauseUntilHonoursRetryAfter) {
  Clock::time_point t0{};
  TokenBucket bucket(100.0, 100.0, t0);
  bucket.pause_until(t0 + 2s);
  EXPECT_GT(bucket.try_take(t0 + 1s), 0ns) << "nothing before Retry-After";
  EXPECT_GT(bucket.try_take(t0 + 2s), 0ns) << "the bucket starts empty at the end of the pause";
  EXPECT_EQ(bucket.try_take(t0 + 2s + 10ms), 0ns);
}

TEST(Backoff, DoublesWithJitterUpToTheCap) {
  BackoffPolicy p{.initial = 100ms, .max = 1000ms};
  EXPECT_EQ(p.delay(0, 1.0), 100ms);
  EXPECT_EQ(p.delay(0, 0.0), 50ms);
  EXPECT_EQ(p.delay(1, 1.0), 200ms);
  EXPECT_EQ(p.delay(3, 1.0), 800ms);
  EXPECT_EQ(p.delay(4, 1.0), 1000ms);
  EXPECT_EQ(p.delay(60, 1.0), 1000ms) << "no overflow on long outages";
  EXPECT_EQ(p.delay(60, 0.0), 500ms);
}

TEST(JsonRpc, BatchRepliesKeepResultsAndErrors) {
  auto r = parse_replies(R"([{"jsonrpc":"2.0","id":8,"result":{"a":[1,2]}},
                             {"jsonrpc":"2.0","id":7,"error":{"code":-32601,"message":"nope"}},
                             {"jsonrpc":"2.0","id":9,"result":null},
                             {"jsonrpc":"2.0","id":10,"result":"0x1"}])");
  ASSERT_TRUE(r.ok()) << r.error().message;
  ASSERT_EQ(r->size(), 4u);
  EXPECT_EQ((*r)[0].id, 8u);
  EXPECT_EQ((*r)[0].result, R"({"a":[1,2]})");
  EXPECT_EQ((*r)[1].error_code, -32601);
  EXPECT_EQ((*r)[1].error_message, "nope");
  EXPECT_EQ((*r)[2].result, "null");
  EXPECT_EQ((*r)[3].result, "\"0x1\"");
}

TEST(JsonRpc, NonJsonRpcBodiesAreErrors) {
  EXPECT_FALSE(parse_replies("<html>502 Bad Gateway</html>").ok());
  EXPECT_FALSE(parse_replies(R"({"jsonrpc":"2.0","result":1})").ok()) << "no id";
  EXPECT_FALSE(parse_replies(R"({"jsonrpc":"2.0","id":1})").ok()) << "neither result nor error";
  EXPECT_FALSE(parse_replies(R"({"jsonrpc":"2.0","id":1,"result":{"x":)").ok()) << "truncated";
}

TEST(JsonRpc, RequestsEncodeWithIds) {
  EXPECT_EQ(encode_request({"eth_chainId", "[]"}, 5), R"({"jsonrpc":"2.0","id":5,"method":"eth_chainId","params":[]})");
  EXPECT_EQ(encode_batch({{"a", "[1]"}, {"b", ""}}, 3),
            R"([{"jsonrpc":"2.0","id":3,"method":"a","params":[1]},{"jsonrpc":"2.0","id":4,"method":"b","params":[]}])");
}

TEST(RpcError, RetryableByKind) {
  EXPECT_TRUE(RpcError(RpcError::Kind::kTransport, "x").retryable());
  EXPECT_TRUE(RpcError(RpcError::Kind::kHttpStatus, "x", 429).retryable());
  EXPECT_TRUE(RpcError(RpcError::Kind::kHttpStatus, "x", 503).retryable());
  EXPECT_FALSE(RpcError(RpcError::Kind::kHttpStatus, "x", 401).retryable());
  EXPECT_FALSE(RpcError(RpcError::Kind::kRpc, "x", RpcError::kMethodNotFound).retryable());
  EXPECT_TRUE(RpcError(RpcError::Kind::kRpc, "x", -32000).retryable()) << "a node's internal error may pass";
  EXPECT_TRUE(RpcError(RpcError::Kind::kMalformed, "x").retryable());
}

TEST(Url, PartsAndDefaults) {
  auto u = parse_url("wss://eth.example.com/v2/KEY?x=1");
  ASSERT_TRUE(u);
  EXPECT_EQ(u->host, "eth.example.com");
  EXPECT_EQ(u->port, "443");
  EXPECT_EQ(u->target, "/v2/KEY?x=1");
  EXPECT_TRUE(u->tls());
  u = parse_url("http://user:pw@127.0.0.1:8545");
  ASSERT_TRUE(u);
  EXPECT_EQ(u->host, "127.0.0.1");
  EXPECT_EQ(u->port, "8545");
  EXPECT_EQ(u->target, "/");
  EXPECT_FALSE(u->tls());
  u = parse_url("ws://[::1]:9000/ws");
  ASSERT_TRUE(u);
  EXPECT_EQ(u->host, "::1");
  EXPECT_EQ(u->port, "9000");
  EXPECT_FALSE(parse_url("ftp://x"));
  EXPECT_FALSE(parse_url("http://:80"));
  EXPECT_FALSE(parse_url("http://host:8a"));
}

}  // namespace
}  // namespace chainidx::ingest

// The small pure pieces of ingest/: token bucket, backoff, JSON-RPC framing, URL parsing.

#include <gtest/gtest.h>

#include "ingest/backoff.hpp"
#include "ingest/json_rpc.hpp"
#include "ingest/retry_after.hpp"
#include "ingest/rpc_error.hpp"
#include "ingest/retry_budget.hpp"
#include "ingest/token_bucket.hpp"

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

TEST(TokenBucket, PauseUntilHonoursRetryAfterAndTheRateEarnsDuringIt) {
  Clock::time_point t0{};
  TokenBucket bucket(10.0, 20.0, t0);
  for (int i = 0; i < 20; ++i) ASSERT_EQ(bucket.try_take(t0), 0ns);
  EXPECT_GT(bucket.try_take(t0), 0ns) << "the burst is spent";
  bucket.pause_until(t0 + 1s);
  EXPECT_EQ(bucket.try_take(t0 + 500ms), 500ms) << "nothing before Retry-After, whatever the tokens";
  // At the end of the pause: the 10 tokens its second earned, not an empty bucket, not the burst.
  int taken = 0;
  while (bucket.try_take(t0 + 1s) == 0ns) ++taken;
  EXPECT_EQ(taken, 10);
  bucket.pause_until(t0 + 500ms);  // a pause that ended already changes nothing
  EXPECT_GT(bucket.try_take(t0 + 1s), 0ns);
  EXPECT_EQ(bucket.try_take(t0 + 1100ms), 0ns);
}

TEST(TokenBucket, ThrottlingCutsAtMostOncePerTheIntervalTheCallerGives) {
  Clock::time_point t0{};
  TokenBucket bucket(40.0, 40.0, t0);
  EXPECT_TRUE(bucket.on_throttled(t0, 10s));
  EXPECT_DOUBLE_EQ(bucket.rate(), 20.0);
  EXPECT_FALSE(bucket.on_throttled(t0 + 5s, 10s)) << "within the interval: the same event";
  EXPECT_DOUBLE_EQ(bucket.rate(), 20.0);
  EXPECT_TRUE(bucket.on_throttled(t0 + 10s, 10s));
  EXPECT_DOUBLE_EQ(bucket.rate(), 10.0);
}

TEST(TokenBucket, ThrottlingHalvesTheRateOnceASecondAndSuccessesEarnItBack) {
  Clock::time_point t0{};
  TokenBucket bucket(40.0, 40.0, t0);
  EXPECT_TRUE(bucket.on_throttled(t0));
  EXPECT_DOUBLE_EQ(bucket.rate(), 20.0);
  EXPECT_FALSE(bucket.on_throttled(t0 + 500ms)) << "one cut per second: a burst of 429s is one event";
  EXPECT_DOUBLE_EQ(bucket.rate(), 20.0);
  EXPECT_TRUE(bucket.on_throttled(t0 + 1s));
  EXPECT_DOUBLE_EQ(bucket.rate(), 10.0);
  for (int i = 2; i < 12; ++i) bucket.on_throttled(t0 + std::chrono::seconds(i));
  EXPECT_DOUBLE_EQ(bucket.rate(), 2.0) << "never below a twentieth of the configured rate";
  for (int i = 0; i < 10; ++i) bucket.on_success(t0 + 20s);
  EXPECT_NEAR(bucket.rate(), 6.0, 1e-9) << "each success gives back a hundredth of the configured rate";
  bucket.on_success(t0 + 20s, 25);  // a batch of 25 served calls counts as 25 successes
  EXPECT_NEAR(bucket.rate(), 16.0, 1e-9) << "each call of a served batch gives back its hundredth";
  for (int i = 0; i < 1000; ++i) bucket.on_success(t0 + 20s);
  EXPECT_DOUBLE_EQ(bucket.rate(), 40.0) << "never above the configured rate";
  // At the lower rate, tokens come more slowly: 2/s means 500 ms per token once the burst is gone.
  TokenBucket slow(10.0, 1.0, t0);
  for (int i = 1; i < 10; ++i) slow.on_throttled(t0 + std::chrono::seconds(i));
  EXPECT_EQ(slow.try_take(t0 + 10s), 0ns);
  auto wait = slow.try_take(t0 + 10s);
  EXPECT_GT(wait, 1900ms) << "0.5/s after the cuts";
  EXPECT_LT(wait, 2100ms);
}

TEST(RpcError, ProviderRateLimitErrorsAreRecognised) {
  EXPECT_TRUE(says_rate_limited(-32005, "daily request count exceeded, request rate limited"));
  EXPECT_TRUE(says_rate_limited(-32000, "Too Many Requests"));
  EXPECT_TRUE(says_rate_limited(-32603, "Your app has exceeded its compute units per second capacity: request limit reached"));
  EXPECT_FALSE(says_rate_limited(-32000, "header not found"));
  EXPECT_FALSE(says_rate_limited(-32601, "the method eth_foo does not exist/is not available"));
  // Too big a query is not too many queries: the same -32005, or "limit exceeded", about logs.
  EXPECT_FALSE(says_rate_limited(-32005, "query returned more than 10000 results"));
  EXPECT_FALSE(says_rate_limited(-32005, "query timeout exceeded"));
  EXPECT_FALSE(says_rate_limited(-32000, "Block range limit exceeded."));
}

TEST(Backoff, FullJitterDrawsFromTheWholeWindow) {
  BackoffPolicy p{.initial = 100ms, .max = 1000ms, .full_jitter = true};
  EXPECT_EQ(p.delay(0, 0.0), 0ms);
  EXPECT_EQ(p.delay(0, 0.25), 25ms);
  EXPECT_EQ(p.delay(2, 0.5), 200ms);
  EXPECT_EQ(p.delay(10, 0.999), 999ms);
  EXPECT_EQ(p.delay(10, 0.1), 100ms) << "no fixed half: the herd spreads over the whole window";
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

TEST(RetryAfter, SecondsDatesCapsAndNonsense) {
  using std::chrono::system_clock;
  const auto now = system_clock::from_time_t(784111777);  // Sun, 06 Nov 1994 08:49:37 GMT
  const auto cap = 60s;
  auto zero = parse_retry_after("0", now, cap);
  ASSERT_TRUE(zero.delay);
  EXPECT_EQ(*zero.delay, 0ms);
  EXPECT_TRUE(zero.warning.empty());
  auto two = parse_retry_after(" 2 ", now, cap);
  ASSERT_TRUE(two.delay);
  EXPECT_EQ(*two.delay, 2000ms);
  auto huge = parse_retry_after("4611686018427387904", now, cap);  // 2^62 seconds
  ASSERT_TRUE(huge.delay);
  EXPECT_EQ(*huge.delay, 60000ms) << "capped, no overflow";
  EXPECT_NE(huge.warning.find("cap"), std::string::npos) << huge.warning;
  auto longer = parse_retry_after("99999999999999999999999999999999", now, cap);
  ASSERT_TRUE(longer.delay);
  EXPECT_EQ(*longer.delay, 60000ms);
  auto date = parse_retry_after("Sun, 06 Nov 1994 08:50:07 GMT", now, cap);
  ASSERT_TRUE(date.delay) << date.warning;
  EXPECT_EQ(*date.delay, 30000ms);
  auto rfc850 = parse_retry_after("Sunday, 06-Nov-94 08:49:47 GMT", now, cap);
  ASSERT_TRUE(rfc850.delay) << rfc850.warning;
  EXPECT_EQ(*rfc850.delay, 10000ms);
  auto asctime = parse_retry_after("Sun Nov  6 08:49:42 1994", now, cap);
  ASSERT_TRUE(asctime.delay) << asctime.warning;
  EXPECT_EQ(*asctime.delay, 5000ms);
  auto past = parse_retry_after("Sun, 06 Nov 1994 08:00:00 GMT", now, cap);
  ASSERT_TRUE(past.delay);
  EXPECT_EQ(*past.delay, 0ms);
  auto far = parse_retry_after("Fri, 31 Dec 2100 23:59:59 GMT", now, cap);
  ASSERT_TRUE(far.delay);
  EXPECT_EQ(*far.delay, 60000ms);
  for (const char* nonsense : {"-1", "soon", "1.5", "", "Sun, 06 Nov 1994 08:49:37 GMT trailing", "0x10"}) {
    auto r = parse_retry_after(nonsense, now, cap);
    EXPECT_FALSE(r.delay) << nonsense;
    EXPECT_NE(r.warning.find("ignored"), std::string::npos) << nonsense << ": " << r.warning;
  }
}

TEST(RpcError, UnsupportedMethodAnswersOfTheNodeFamiliesAreRecognised) {
  using K = RpcError::Kind;
  EXPECT_TRUE(says_method_unsupported(RpcError(K::kRpc, "e: eth_getBlockReceipts: the method eth_getBlockReceipts does not exist/is not available", -32601)));
  EXPECT_TRUE(says_method_unsupported(RpcError(K::kRpc, "e: eth_getBlockReceipts: invalid argument 0: hex string has length 64, want 16", -32602)));
  EXPECT_TRUE(says_method_unsupported(RpcError(K::kRpc, "e: eth_getBlockReceipts: Unsupported method: eth_getBlockReceipts", -32600)));
  EXPECT_TRUE(says_method_unsupported(RpcError(K::kRpc, "e: eth_getBlockReceipts: Method not supported", -32000)));
  EXPECT_TRUE(says_method_unsupported(RpcError(K::kRpc, "e: eth_getBlockReceipts: method eth_getBlockReceipts is not whitelisted", -32004)));
  EXPECT_FALSE(says_method_unsupported(RpcError(K::kRpc, "e: eth_getBlockReceipts: block does not exist", -32000)))
      << "about the data, not the method";
  EXPECT_FALSE(says_method_unsupported(RpcError(K::kRpc, "e: eth_getBlockReceipts: internal error", -32603)));
  EXPECT_FALSE(says_method_unsupported(RpcError(K::kHttpStatus, "e: HTTP 405 Method Not Allowed", 405)));
  EXPECT_FALSE(says_method_unsupported(RpcError(K::kTransport, "e: method not found")));
}

}  // namespace
}  // namespace chainidx::ingest

namespace chainidx::ingest {
namespace {

TEST(RetryBudget, RetriesAreLimitedToAShareOfFirstAttemptsPlusAFloor) {
  using namespace std::chrono_literals;
  RetryBudget::Clock::time_point t0{};
  RetryBudget budget(0.2, 2.0, 10.0, t0);
  // Saved-up tokens first: ten retries at once, then the budget is empty.
  for (int i = 0; i < 10; ++i) EXPECT_EQ(budget.try_retry(t0), RetryBudget::Clock::duration::zero()) << i;
  auto wait = budget.try_retry(t0);
  EXPECT_GT(wait, 490ms) << "at the floor of 2/s the next token is half a second away";
  EXPECT_LE(wait, 500ms);
  // Five first attempts earn one retry (ratio 0.2).
  for (int i = 0; i < 5; ++i) budget.on_attempt(t0);
  EXPECT_EQ(budget.try_retry(t0), RetryBudget::Clock::duration::zero());
  EXPECT_GT(budget.try_retry(t0), 0ms);
  // An outage: nothing but retries for 10 s lets through about the floor's 20, not thousands.
  int allowed = 0;
  for (auto t = t0; t < t0 + 10s; t += 10ms)
    if (budget.try_retry(t) == RetryBudget::Clock::duration::zero()) ++allowed;
  EXPECT_GE(allowed, 19);
  EXPECT_LE(allowed, 21);
  // Never more than the burst saved up.
  for (int i = 0; i < 1000; ++i) budget.on_attempt(t0 + 20s);
  EXPECT_DOUBLE_EQ(budget.tokens(t0 + 20s), 10.0);
}

}  // namespace
}  // namespace chainidx::ingest

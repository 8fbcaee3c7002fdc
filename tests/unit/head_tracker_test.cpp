// Head liveness judged against the chain: the learned block interval, when to poll, a stale
// socket, a lagging endpoint.

#include "ingest/head_tracker.hpp"

#include <gtest/gtest.h>

namespace chainidx::ingest {
namespace {

using namespace std::chrono_literals;
using Clock = HeadTracker::Clock;
using Source = HeadTracker::Source;

TEST(HeadTracker, TheBlockIntervalIsLearnedFromTheHeadsAsTheMedianGap) {
  HeadTracker t({});
  Clock::time_point now{};
  EXPECT_EQ(t.block_interval(), 1000ms) << "before enough heads, the default";
  std::uint64_t n = 10;
  for (auto gap : {2000ms, 2000ms, 2100ms, 1900ms, 9000ms /* one late block */, 2000ms}) {
    t.on_head(n++, Source::kWebSocket, now);
    now += gap;
  }
  t.on_head(n, Source::kWebSocket, now);
  EXPECT_EQ(t.block_interval(), 2000ms);
  // Two blocks in one jump count as two intervals.
  now += 4000ms;
  t.on_head(n + 2, Source::kHttp, now);
  EXPECT_EQ(t.block_interval(), 2000ms);
}

TEST(HeadTracker, AConfiguredIntervalWins) {
  HeadTracker t({.block_interval = 12000ms});
  Clock::time_point now{};
  for (std::uint64_t n = 0; n < 10; ++n, now += 100ms) t.on_head(n, Source::kWebSocket, now);
  EXPECT_EQ(t.block_interval(), 12000ms);
}

TEST(HeadTracker, WithoutALiveSubscriptionTheHeadIsPolledEveryIntervalAndWithOneAfterThree) {
  HeadTracker t({.block_interval = 2000ms});
  EXPECT_EQ(t.poll_after(), 2000ms);
  t.on_subscription(true, Clock::time_point{});
  EXPECT_EQ(t.poll_after(), 6000ms);
  t.on_subscription(false, Clock::time_point{});
  EXPECT_EQ(t.poll_after(), 2000ms);
  HeadTracker fast({.block_interval = 10ms});
  EXPECT_EQ(fast.poll_after(), 250ms) << "never more often than min_poll";
}

TEST(HeadTracker, ASocketQuietForThreeIntervalsWhileHttpMovesOnIsStale) {
  HeadTracker t({.block_interval = 1000ms});
  Clock::time_point now{};
  t.on_subscription(true, now);
  t.on_head(100, Source::kWebSocket, now);
  now += 2500ms;
  t.on_head(102, Source::kHttp, now);
  EXPECT_EQ(t.stale_websocket(now), std::nullopt) << "quiet for less than three intervals";
  now += 600ms;
  auto why = t.stale_websocket(now);
  ASSERT_TRUE(why);
  EXPECT_NE(why->find("moved on to block 102"), std::string::npos) << *why;
}

TEST(HeadTracker, AnIntervalLearnedFromABurstDoesNotMakeADelayedHeadAStaleSocket) {
  HeadTracker t({});
  Clock::time_point now{};
  t.on_subscription(true, now);
  for (std::uint64_t n = 100; n < 110; ++n, now += 10ms) t.on_head(n, Source::kWebSocket, now);  // mined in a burst
  EXPECT_EQ(t.block_interval(), 10ms);
  t.on_head(110, Source::kHttp, now);  // HTTP saw the next block before the socket delivered it
  EXPECT_EQ(t.stale_websocket(now + 200ms), std::nullopt) << "a late notification on a busy host";
  EXPECT_TRUE(t.stale_websocket(now + 1s)) << "quiet for the floor while HTTP moved on";
}

TEST(HeadTracker, AQuietSocketOnAQuietChainIsNotStale) {
  HeadTracker t({.block_interval = 1000ms});
  Clock::time_point now{};
  t.on_subscription(true, now);
  t.on_head(100, Source::kWebSocket, now);
  now += 10s;
  t.on_head(100, Source::kHttp, now);  // HTTP has nothing newer either
  EXPECT_EQ(t.stale_websocket(now), std::nullopt);
}

TEST(HeadTracker, ANewSubscriptionHasThreeIntervalsToBringItsFirstHead) {
  HeadTracker t({.block_interval = 1000ms});
  Clock::time_point now{};
  t.on_head(100, Source::kHttp, now);
  now += 10s;
  t.on_subscription(true, now);
  t.on_head(105, Source::kHttp, now);
  EXPECT_EQ(t.stale_websocket(now + 2s), std::nullopt);
  EXPECT_TRUE(t.stale_websocket(now + 3s));
  t.on_subscription(false, now + 3s);
  EXPECT_EQ(t.stale_websocket(now + 3s), std::nullopt) << "no subscription, nothing to drop";
}

TEST(HeadTracker, HeadsFromAnEndpointBeyondTheLagLimitAreNotUsed) {
  HeadTracker t({.lag_blocks = 5});
  Clock::time_point now{};
  EXPECT_TRUE(t.on_head(120, Source::kHttp, now));
  EXPECT_FALSE(t.on_head(100, Source::kWebSocket, now)) << "20 blocks behind";
  EXPECT_TRUE(t.on_head(115, Source::kWebSocket, now)) << "within the limit: may be a real reorg";
  EXPECT_EQ(t.best(), 120u);
}

TEST(HeadTracker, AHeadFarAboveTheBestAndEveryOtherEndpointIsAJumpUntilThePaceReachesIt) {
  HeadTracker t({.block_interval = 1000ms, .lag_blocks = 5});
  Clock::time_point now{};
  // No best head yet: judged against the other endpoints' heads alone.
  EXPECT_FALSE(t.jump(1000, std::nullopt, now)) << "nothing to judge against";
  EXPECT_TRUE(t.jump(1000, 100, now)) << "900 blocks above the only other endpoint";
  EXPECT_FALSE(t.jump(104, 100, now)) << "within the lag limit";
  ASSERT_TRUE(t.on_head(100, Source::kHttp, now));
  EXPECT_FALSE(t.jump(1000, 1000, now)) << "another endpoint is there too";
  EXPECT_FALSE(t.jump(106, std::nullopt, now)) << "lag limit plus one block of pace";
  EXPECT_TRUE(t.jump(1000, 101, now));
  EXPECT_TRUE(t.jump(1000, std::nullopt, now)) << "no other answer: still a jump over the best head";
  // The chain's pace: two blocks a block interval since the best head arrived.
  EXPECT_TRUE(t.jump(125, std::nullopt, now + 5s)) << "25 above the best: more than 5 + 11";
  EXPECT_FALSE(t.jump(125, std::nullopt, now + 10s)) << "25 above the best: within 5 + 21";
  EXPECT_FALSE(t.jump(1000, std::nullopt, now + 1000s)) << "a long outage makes a big step plausible";
}

}  // namespace
}  // namespace chainidx::ingest

// The circuit breaker, the endpoint score and the choice of endpoint, stepped with a fake clock.

#include "ingest/endpoint_choice.hpp"
#include "ingest/endpoint_health.hpp"
#include "ingest/token_bucket.hpp"

#include <gtest/gtest.h>

namespace chainidx::ingest {
namespace {

using namespace std::chrono_literals;
using Clock = EndpointHealth::Clock;

CircuitOptions quick() {
  CircuitOptions o;
  o.failures_to_open = 5;
  o.cooldown = 60s;
  o.jitter = 0.2;
  o.lag_blocks = 5;
  return o;
}

TEST(EndpointHealth, FiveFailuresInARowOpenTheCircuitForTheCooldownWithinItsJitter) {
  const Clock::time_point t0{};
  for (double r : {0.0, 0.5, 0.999}) {
    EndpointHealth h(quick());
    for (int i = 0; i < 4; ++i) {
      h.begin(t0);
      EXPECT_FALSE(h.on_failure(t0, r)) << "opened after " << i + 1 << " failures";
      EXPECT_TRUE(h.available(t0));
    }
    EXPECT_EQ(h.state(0), EndpointState::kDegraded);
    h.begin(t0);
    EXPECT_TRUE(h.on_failure(t0, r));
    EXPECT_EQ(h.state(0), EndpointState::kOpen);
    EXPECT_FALSE(h.available(t0 + 47s));
    EXPECT_GE(h.open_until() - t0, 48s) << "random " << r;
    EXPECT_LE(h.open_until() - t0, 72s) << "random " << r;
    EXPECT_TRUE(h.available(t0 + 72s));
  }
}

TEST(EndpointHealth, ASuccessBetweenFailuresKeepsTheCircuitClosed) {
  EndpointHealth h(quick());
  const Clock::time_point t0{};
  for (int round = 0; round < 10; ++round) {
    for (int i = 0; i < 4; ++i) EXPECT_FALSE(h.on_failure(t0, 0.5));
    h.on_success(1ms);
  }
  EXPECT_TRUE(h.closed());
  EXPECT_TRUE(h.available(t0));
}

TEST(EndpointHealth, AfterTheCooldownOneProbeGoesAndItsAnswerClosesTheCircuit) {
  EndpointHealth h(quick());
  const Clock::time_point t0{};
  for (int i = 0; i < 5; ++i) h.on_failure(t0, 0.5);  // jitter 0: exactly 60 s
  ASSERT_EQ(h.state(0), EndpointState::kOpen);
  EXPECT_FALSE(h.available(t0 + 59s));
  EXPECT_TRUE(h.available(t0 + 60s));
  h.begin(t0 + 60s);
  EXPECT_EQ(h.state(0), EndpointState::kProbing);
  EXPECT_FALSE(h.available(t0 + 60s)) << "a second request went out beside the probe";
  h.on_success(2ms);
  EXPECT_EQ(h.state(0), EndpointState::kHealthy) << "the probe decides: the outage's errors are forgotten";
  EXPECT_TRUE(h.available(t0 + 60s));
  EXPECT_EQ(h.error_rate(), 0.0);
}

TEST(EndpointHealth, AFailedProbeOpensTheCircuitForAnotherCooldown) {
  EndpointHealth h(quick());
  const Clock::time_point t0{};
  for (int i = 0; i < 5; ++i) h.on_failure(t0, 0.5);
  h.begin(t0 + 60s);
  EXPECT_TRUE(h.on_failure(t0 + 60s, 0.5)) << "one failed probe must reopen it, not five";
  EXPECT_EQ(h.state(0), EndpointState::kOpen);
  EXPECT_FALSE(h.available(t0 + 119s));
  EXPECT_TRUE(h.available(t0 + 120s));
  EXPECT_EQ(h.times_opened(), 2u);
}

TEST(EndpointHealth, AProbeAbandonedForAReasonNotTheEndpointsLetsTheNextRequestProbe) {
  EndpointHealth h(quick());
  const Clock::time_point t0{};
  for (int i = 0; i < 5; ++i) h.on_failure(t0, 0.5);
  h.begin(t0 + 60s);
  h.on_abandoned();
  EXPECT_TRUE(h.available(t0 + 60s));
  EXPECT_EQ(h.state(0), EndpointState::kOpen);
}

TEST(EndpointHealth, TheLastEndpointStandingKeepsItsCircuitClosed) {
  EndpointHealth h(quick());
  const Clock::time_point t0{};
  for (int i = 0; i < 50; ++i) EXPECT_FALSE(h.on_failure(t0, 0.5, /*may_open=*/false));
  EXPECT_TRUE(h.available(t0));
  EXPECT_EQ(h.state(0), EndpointState::kDegraded);
}

TEST(EndpointHealth, AnEndpointMoreThanTheLagLimitBehindTheBestHeadIsLaggingAndScoresWorse) {
  EndpointHealth behind(quick()), ahead(quick());
  behind.on_head(100);
  ahead.on_head(120);
  behind.on_success(1ms);
  ahead.on_success(50ms);
  EXPECT_TRUE(behind.lagging(120));
  EXPECT_FALSE(behind.lagging(105));
  EXPECT_FALSE(ahead.lagging(120));
  EXPECT_EQ(behind.state(120), EndpointState::kDegraded);
  EXPECT_GT(behind.score(120, 0), ahead.score(120, 0)) << "lag must outweigh latency";
}

std::vector<const EndpointHealth*> view(const std::vector<EndpointHealth>& hs) {
  std::vector<const EndpointHealth*> v;
  for (const auto& h : hs) v.push_back(&h);
  return v;
}

TEST(EndpointChoice, TheFasterEndpointIsChosenAndACloseOneIsKeptOnce) {
  std::vector<EndpointHealth> hs(3, EndpointHealth(quick()));
  for (int i = 0; i < 10; ++i) {
    hs[0].on_success(40ms);
    hs[1].on_success(10ms);
    hs[2].on_success(12ms);
  }
  const Clock::time_point now{};
  EndpointChoice c;
  EXPECT_EQ(choose_endpoint(view(hs), now, c), 1u);
  c.current = 2;  // close enough to the best: stays
  EXPECT_EQ(choose_endpoint(view(hs), now, c), 2u);
  c.current = 0;  // four times slower: moves
  EXPECT_EQ(choose_endpoint(view(hs), now, c), 1u);
}

TEST(EndpointChoice, ErrorsMoveTrafficAwayFromAnEndpointBeforeItsCircuitOpens) {
  std::vector<EndpointHealth> hs(2, EndpointHealth(quick()));
  for (int i = 0; i < 10; ++i) hs[0].on_success(5ms), hs[1].on_success(8ms);
  const Clock::time_point now{};
  EndpointChoice c;
  EXPECT_EQ(choose_endpoint(view(hs), now, c), 0u);
  for (int i = 0; i < 3; ++i) hs[0].on_failure(now, 0.5);
  EXPECT_TRUE(hs[0].closed());
  EXPECT_EQ(choose_endpoint(view(hs), now, c), 1u);
}

TEST(EndpointChoice, OpenCircuitsAndExcludedEndpointsAreSkippedUntilTheProbeIsDue) {
  std::vector<EndpointHealth> hs(2, EndpointHealth(quick()));
  const Clock::time_point t0{};
  for (int i = 0; i < 5; ++i) hs[0].on_failure(t0, 0.5);
  EndpointChoice c;
  EXPECT_EQ(choose_endpoint(view(hs), t0 + 1s, c), 1u);
  c.excluded = {false, true};
  EXPECT_EQ(choose_endpoint(view(hs), t0 + 1s, c), std::nullopt);
  EXPECT_EQ(earliest_probe(view(hs), c.excluded), t0 + 60s);
  EXPECT_EQ(choose_endpoint(view(hs), t0 + 60s, c), 0u) << "the probe, once the cool-down ended";
  c.excluded = {};
  EXPECT_EQ(choose_endpoint(view(hs), t0 + 60s, c), 0u) << "a due probe goes before a healthy endpoint";
  hs[0].begin(t0 + 60s);
  EXPECT_EQ(choose_endpoint(view(hs), t0 + 60s, c), 1u) << "while the probe is out, the others serve";
}

TEST(EndpointChoice, ABlockAboveAnEndpointsHeadGoesToOneThatHasIt) {
  std::vector<EndpointHealth> hs(2, EndpointHealth(quick()));
  for (int i = 0; i < 10; ++i) hs[0].on_success(1ms), hs[1].on_success(30ms);
  hs[0].on_head(100);
  hs[1].on_head(103);  // within the lag limit: both healthy
  EndpointChoice c;
  c.current = 0;
  c.needs_block = 102;
  EXPECT_EQ(choose_endpoint(view(hs), Clock::time_point{}, c), 1u);
  c.needs_block = 100;
  EXPECT_EQ(choose_endpoint(view(hs), Clock::time_point{}, c), 0u);
  c.excluded = {false, true};
  c.needs_block = 102;
  EXPECT_EQ(choose_endpoint(view(hs), Clock::time_point{}, c), 0u) << "with no other, the endpoint behind is still asked";
}

TEST(EndpointChoice, AnEndpointWhoseRateLimitWouldHoldTheRequestRanksBelowOneThatWouldNot) {
  std::vector<EndpointHealth> hs(2, EndpointHealth(quick()));
  for (int i = 0; i < 10; ++i) hs[0].on_success(2ms), hs[1].on_success(10ms);
  EndpointChoice c;
  c.current = 0;
  EXPECT_EQ(choose_endpoint(view(hs), Clock::time_point{}, c), 0u);
  c.rate_wait_ms = {400.0, 0.0};  // the first is out of tokens (or paused by a Retry-After)
  EXPECT_EQ(choose_endpoint(view(hs), Clock::time_point{}, c), 1u);
  c.rate_wait_ms = {1.0, 0.0};  // a token nearly there: not worth moving for
  EXPECT_EQ(choose_endpoint(view(hs), Clock::time_point{}, c), 0u);
}

TEST(TokenBucket, WaitTellsHowLongACallWouldWaitAndTakesNothing) {
  TokenBucket b(10, 2, Clock::time_point{});
  EXPECT_EQ(b.wait(Clock::time_point{}), std::chrono::nanoseconds::zero());
  EXPECT_EQ(b.try_take(Clock::time_point{}), std::chrono::nanoseconds::zero());
  EXPECT_EQ(b.try_take(Clock::time_point{}), std::chrono::nanoseconds::zero());
  EXPECT_EQ(b.wait(Clock::time_point{}), 100ms);
  EXPECT_EQ(b.wait(Clock::time_point{}), 100ms) << "wait() took a token";
  EXPECT_EQ(b.wait(Clock::time_point{} + 50ms), 50ms);
  b.pause_until(Clock::time_point{} + 3s);
  EXPECT_EQ(b.wait(Clock::time_point{} + 1s), 2s);
}

TEST(EndpointChoice, EndpointsNotHeardFromYetAreTriedInTheirConfiguredOrder) {
  std::vector<EndpointHealth> hs(3, EndpointHealth(quick()));
  EXPECT_EQ(choose_endpoint(view(hs), Clock::time_point{}, EndpointChoice{}), 0u);
  EndpointChoice c;
  c.excluded = {true, false, false};
  EXPECT_EQ(choose_endpoint(view(hs), Clock::time_point{}, c), 1u);
}

}  // namespace
}  // namespace chainidx::ingest

// The probes' verdicts (app/health.hpp) from the indexer's status, with time passed in.

#include <gtest/gtest.h>

#include "app/health.hpp"

namespace chainidx::app {
namespace {

using namespace std::chrono_literals;
using Clock = LiveStatus::Clock;

LiveStatus caught_up() {
  LiveStatus s;
  s.head = 103;
  s.confirmed_top = 100;
  s.cursor = 100;
  return s;
}

TEST(Probes, CaughtUpWithEverySinkWritingIsHealthyAndReady) {
  const auto now = Clock::now();
  EXPECT_TRUE(healthy(caught_up(), {}, now).ok);
  const Verdict r = ready(caught_up(), {}, now);
  EXPECT_TRUE(r.ok) << r.reason;
}

TEST(Probes, NotReadyBeforeTheFirstHeadNorWhileBehindMoreThanTheLimit) {
  const auto now = Clock::now();
  LiveStatus starting;
  EXPECT_FALSE(ready(starting, {}, now).ok);
  EXPECT_NE(ready(starting, {}, now).reason.find("no head yet"), std::string::npos);
  EXPECT_TRUE(healthy(starting, {}, now).ok) << "starting is no reason to restart";

  LiveStatus behind = caught_up();
  behind.cursor = 89;  // 11 confirmed blocks not written
  const Verdict v = ready(behind, {.ready_max_lag_blocks = 10}, now);
  EXPECT_FALSE(v.ok);
  EXPECT_NE(v.reason.find("11 confirmed blocks"), std::string::npos) << v.reason;
  EXPECT_NE(v.reason.find("server.ready_max_lag_blocks = 10"), std::string::npos) << v.reason;
  behind.cursor = 90;
  EXPECT_TRUE(ready(behind, {.ready_max_lag_blocks = 10}, now).ok);
  EXPECT_TRUE(healthy(behind, {}, now).ok);
}

TEST(Probes, NotReadyWhenNoNewHeadCameForTheStallTimeoutButStillHealthy) {
  const auto now = Clock::now();
  LiveStatus quiet = caught_up();
  quiet.head_stale_after = std::chrono::seconds(60);
  quiet.head_at = now - std::chrono::seconds(59);
  EXPECT_TRUE(ready(quiet, {}, now).ok);
  quiet.head_at = now - std::chrono::seconds(61);
  const Verdict v = ready(quiet, {}, now);
  EXPECT_FALSE(v.ok);
  EXPECT_NE(v.reason.find("no new head for 61 s (chain.head_stall_timeout_seconds = 60)"), std::string::npos) << v.reason;
  EXPECT_TRUE(healthy(quiet, {}, now).ok) << "a restart brings no provider back";
  quiet.head_stale_after = std::chrono::seconds(0);
  EXPECT_TRUE(ready(quiet, {}, now).ok) << "0: never judged";
}

TEST(Probes, AFailingSinkMakesItNotReadyAtOnceAndUnhealthyOnlyAfterTheLimit) {
  const auto now = Clock::now();
  LiveStatus s = caught_up();
  s.waiting_since = now - 20s;
  s.sink_problem = "postgres: no connection";
  const ProbeSettings p{.unhealthy_after = 30s};
  const Verdict r = ready(s, p, now);
  EXPECT_FALSE(r.ok);
  EXPECT_NE(r.reason.find("postgres: no connection"), std::string::npos) << r.reason;
  EXPECT_TRUE(healthy(s, p, now).ok);
  const Verdict h = healthy(s, p, now + 11s);
  EXPECT_FALSE(h.ok);
  EXPECT_NE(h.reason.find("no sink write succeeded for 31 s"), std::string::npos) << h.reason;
  EXPECT_NE(h.reason.find("postgres: no connection"), std::string::npos) << h.reason;
}

TEST(Probes, AHaltIsUnhealthyAndNotReadyWithItsReason) {
  LiveStatus s = caught_up();
  s.halted = "deep reorg at block 97";
  const auto now = Clock::now();
  EXPECT_FALSE(healthy(s, {}, now).ok);
  EXPECT_EQ(healthy(s, {}, now).reason, "halted: deep reorg at block 97");
  EXPECT_FALSE(ready(s, {}, now).ok);
}

TEST(Probes, LagCountsConfirmedBlocksNotWritten) {
  LiveStatus s;
  EXPECT_EQ(s.lag(), 0u);
  s.confirmed_top = 50;
  EXPECT_EQ(s.lag(), 50u) << "nothing written yet";
  s.cursor = 48;
  EXPECT_EQ(s.lag(), 2u);
  s.cursor = 52;  // written past a top that a tag moved back
  EXPECT_EQ(s.lag(), 0u);
}

// A hot standby can take over at any moment: healthy and ready, and the answer says it stands by
// and for whom (an orchestrator keeps both replicas; /status and chainidx_leader tell them apart).
TEST(Probes, StandbyIsHealthyAndReadyAndSaysWhoLeads) {
  LiveStatus s;
  s.role = "standby";
  s.leader = "leader a1 (host h, pid 7, epoch 3, lease ends in 9 s)";
  const auto now = Clock::now();
  const Verdict h = healthy(s, {}, now), r = ready(s, {}, now);
  EXPECT_TRUE(h.ok);
  EXPECT_EQ(h.reason, "standby: leader a1 (host h, pid 7, epoch 3, lease ends in 9 s)");
  EXPECT_TRUE(r.ok);
  EXPECT_EQ(r.reason, "standby: ready to take over; leader a1 (host h, pid 7, epoch 3, lease ends in 9 s)");
  s.role = "leader";  // the leader is judged as any running indexer: no head yet, not ready
  EXPECT_FALSE(ready(s, {}, now).ok);
}

TEST(Probes, StartUpIsHealthyUntilTheLimitAndNeverReady) {
  LiveStatus s;
  const auto t0 = Clock::now();
  s.starting = "waiting for postgres: connection refused";
  s.starting_since = t0;
  const ProbeSettings p{60s, 10};
  const Verdict h = healthy(s, p, t0 + 30s), r = ready(s, p, t0 + 30s);
  EXPECT_TRUE(h.ok);
  EXPECT_EQ(h.reason, "starting: waiting for postgres: connection refused");
  EXPECT_FALSE(r.ok);
  EXPECT_EQ(r.reason, "starting: waiting for postgres: connection refused");
  const Verdict late = healthy(s, p, t0 + 61s);
  EXPECT_FALSE(late.ok);
  EXPECT_EQ(late.reason, "starting for 61 s (server.unhealthy_after_seconds = 60): waiting for postgres: connection refused");
  s.starting.clear();  // running: the ordinary verdicts
  s.head = 5;
  EXPECT_TRUE(ready(s, p, t0 + 61s).ok);
}

}  // namespace
}  // namespace chainidx::app

#pragma once
// The probes' verdicts, from the indexer's LiveStatus. Pure: the status and the time come in, a
// verdict and its reason in words come out; app/ops_server.cpp answers with them.
//
// - A hot standby (another process leads the chain) is healthy and ready: it can take over. The
//   answer's text starts with "standby:"; /status and chainidx_leader tell it from the leader.
// - Start-up (waiting for Postgres or Kafka): healthy (it retries with backoff) until
//   server.unhealthy_after_seconds have passed, never ready.
// - Healthy (/healthz): the process is working. Not when the pipeline halted (a deep reorg, a
//   refused write), nor when confirmed blocks have waited for a failing sink longer than
//   server.unhealthy_after_seconds: a restart may be what it needs.
// - Ready (/readyz): caught up and every sink reachable: a head is known and came less than
//   chain.head_stall_timeout_seconds ago, the confirmed blocks not yet written are at most
//   server.ready_max_lag_blocks, and no sink write is failing.

#include <chrono>
#include <cstdint>
#include <string>

#include "app/live_status.hpp"

namespace chainidx::app {

struct Verdict {
  bool ok = true;
  std::string reason;  ///< why not, in words; "ok" / "ready" otherwise
};

struct ProbeSettings {
  std::chrono::seconds unhealthy_after{300};
  std::uint64_t ready_max_lag_blocks = 10;
};

inline std::string waited(LiveStatus::Clock::time_point since, LiveStatus::Clock::time_point now) {
  return std::to_string(std::chrono::duration_cast<std::chrono::seconds>(now - since).count()) + " s";
}

inline Verdict healthy(const LiveStatus& s, const ProbeSettings& p, LiveStatus::Clock::time_point now) {
  if (s.role == "standby") return {true, "standby: " + s.leader};
  if (!s.starting.empty()) {
    if (s.starting_since && now - *s.starting_since > p.unhealthy_after)
      return {false, "starting for " + waited(*s.starting_since, now) + " (server.unhealthy_after_seconds = " +
                         std::to_string(p.unhealthy_after.count()) + "): " + s.starting};
    return {true, "starting: " + s.starting};
  }
  if (!s.halted.empty()) return {false, "halted: " + s.halted};
  if (s.waiting_since && now - *s.waiting_since > p.unhealthy_after)
    return {false, "no sink write succeeded for " + waited(*s.waiting_since, now) + " (server.unhealthy_after_seconds = " +
                       std::to_string(p.unhealthy_after.count()) + "): " + s.sink_problem};
  return {true, "ok"};
}

inline Verdict ready(const LiveStatus& s, const ProbeSettings& p, LiveStatus::Clock::time_point now) {
  if (s.role == "standby") return {true, "standby: ready to take over; " + s.leader};
  if (!s.starting.empty()) return {false, "starting: " + s.starting};
  if (!s.halted.empty()) return {false, "halted: " + s.halted};
  if (s.waiting_since) return {false, "a sink write is failing (for " + waited(*s.waiting_since, now) + "): " + s.sink_problem};
  if (!s.head) return {false, "starting: no head yet"};
  if (s.head_at && s.head_stale_after.count() > 0 && now - *s.head_at > s.head_stale_after)
    return {false, "no new head for " + waited(*s.head_at, now) + " (chain.head_stall_timeout_seconds = " +
                       std::to_string(s.head_stale_after.count()) + "): the endpoints are unreachable, or the chain stopped"};
  if (s.lag() > p.ready_max_lag_blocks)
    return {false, "behind: " + std::to_string(s.lag()) + " confirmed blocks not yet written (server.ready_max_lag_blocks = " +
                       std::to_string(p.ready_max_lag_blocks) + ")"};
  return {true, "ready"};
}

}  // namespace chainidx::app

#pragma once
// What the running indexer knows about itself, for the operations server (/healthz, /readyz,
// /status). The pipeline writes it and the server reads it, both on the io thread: no lock.

#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

namespace chainidx::app {

struct LiveStatus {
  using Clock = std::chrono::steady_clock;

  struct Endpoint {
    std::string name;        ///< the configured name, or the URL's redacted label
    std::string state;       ///< healthy, degraded, open, probing
    std::optional<std::uint64_t> head;
    bool lagging = false;    ///< more than chain.endpoint_max_lag_blocks behind the best head
    double rate = 0;         ///< the rate limiter's current calls per second (lowered while throttled)
    double rate_wait_seconds = 0;  ///< how long a call would wait for the rate limiter now
  };

  std::string chain;
  /// What start-up waits for ("waiting for postgres: connection refused"), before the pipeline
  /// runs; empty once it does.
  std::string starting;
  std::optional<Clock::time_point> starting_since;
  /// "leader" (writes the chain), "standby" (waits to take over), or "" before the election.
  std::string role;
  std::int64_t epoch = 0;  ///< the leader epoch, while leading
  std::string leader;      ///< while standing by: who leads, in words
  std::uint64_t confirmations = 0;  ///< the depth; 0 with a tag
  std::string confirm_tag;          ///< "safe" / "finalized", or empty
  Clock::time_point started = Clock::now();

  std::optional<std::uint64_t> head;            ///< the newest head believed
  std::optional<Clock::time_point> head_at;     ///< when it came
  /// No new head for this long: not ready (the endpoints are unreachable, or the chain stalled);
  /// chain.head_stall_timeout_seconds. Zero: never judged.
  std::chrono::seconds head_stale_after{0};
  std::uint64_t head_timestamp = 0;             ///< its block's time (unix seconds), 0 when unknown
  std::optional<std::uint64_t> confirmed_top;   ///< the newest block that counts as confirmed now
  std::optional<std::uint64_t> cursor;          ///< the newest block written to every sink
  std::string cursor_hash;
  std::uint64_t cursor_timestamp = 0;
  Clock::time_point last_write{};               ///< when a batch last reached every sink

  /// Confirmed blocks waiting for a sink since then (a write being retried), or nullopt.
  std::optional<Clock::time_point> waiting_since;
  std::string sink_problem;  ///< the failed sink's last error while waiting; empty otherwise
  std::string halted;        ///< why the pipeline halted (a deep reorg, ...), empty while running
  bool catching_up = false;  ///< filling a backlog by ranges
  std::string head_source;   ///< "websocket" or "http_poll"

  std::vector<Endpoint> endpoints;

  std::uint64_t kafka_acknowledged = 0;       ///< messages the broker acknowledged, since start
  std::uint64_t kafka_delivery_failures = 0;  ///< messages whose delivery failed (their batch was sent again)
  std::uint64_t kafka_queue_messages = 0;     ///< messages in the producer's queue, not yet acknowledged

  /// Brings what is cheaper to read on demand (the endpoints' states, the buffer's depth) up to
  /// date; the server calls it before each answer.
  std::function<void()> refresh;

  /// Blocks confirmed and not yet written everywhere: confirmed_top - cursor (0 when unknown).
  std::uint64_t lag() const {
    if (!confirmed_top) return 0;
    const std::uint64_t written = cursor ? *cursor : 0;
    return *confirmed_top > written ? *confirmed_top - written : 0;
  }
};

}  // namespace chainidx::app

#pragma once
// One endpoint's health as the endpoint pool sees it: a circuit breaker, moving averages of its
// latency and error rate, and the newest head it reported. Pure: time and randomness come in as
// arguments, so a test steps it with a fake clock.
//
//            N failures in a row                   cool-down over (±jitter)
//   healthy ───────────────────────► open ──────────────────────────────► probing
//   degraded ◄── a success ──────────────────────── the one probe answers ──┘
//      ▲                                 ▲                                   │
//      └── error rate or lag is high     └───────── the probe fails ─────────┘
//
// While open the endpoint gets no request at all. When the cool-down ends, exactly one request
// (the probe) is let through; its answer closes the circuit or opens it for another cool-down.
// Healthy and degraded both serve; degraded only ranks lower.

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <optional>

namespace chainidx::ingest {

enum class EndpointState { kHealthy, kDegraded, kOpen, kProbing };

struct CircuitOptions {
  unsigned failures_to_open = 5;              ///< chain.circuit_failures
  std::chrono::milliseconds cooldown{60000};  ///< chain.circuit_cooldown_seconds
  double jitter = 0.2;                        ///< the cool-down is drawn from cooldown × [1 - jitter, 1 + jitter]
  std::uint64_t lag_blocks = 5;               ///< chain.endpoint_max_lag_blocks: behind the best by more is lagging
};

class EndpointHealth {
 public:
  using Clock = std::chrono::steady_clock;

  explicit EndpointHealth(CircuitOptions options = {}) : options_(options) {}

  /// Whether a request may go to this endpoint now (no state change: see begin()).
  bool available(Clock::time_point now) const {
    switch (circuit_) {
      case Circuit::kClosed: return true;
      case Circuit::kOpen: return now >= open_until_;
      case Circuit::kProbing: return false;  // the one probe is out
    }
    return false;
  }

  /// A request is sent now. When the cool-down is over this request is the probe: no other goes
  /// out until it is answered. Precondition: available(now).
  void begin(Clock::time_point now) {
    if (circuit_ == Circuit::kOpen && now >= open_until_) circuit_ = Circuit::kProbing;
  }

  /// The request sent at begin() was answered well, after `latency`.
  void on_success(std::chrono::microseconds latency) {
    const double ms = static_cast<double>(latency.count()) / 1000.0;
    latency_ms_ = samples_ == 0 ? ms : latency_ms_ + kAlpha * (ms - latency_ms_);
    error_rate_ += kAlpha * (0.0 - error_rate_);
    ++samples_;
    consecutive_failures_ = 0;
    // The probe decides: its answer closes the circuit with the outage's errors forgotten, so
    // the endpoint competes on its latency again.
    if (circuit_ != Circuit::kClosed) error_rate_ = 0;
    circuit_ = Circuit::kClosed;
  }

  /// The request failed because of the endpoint (connection, 5xx, 429, timeout, bad answer).
  /// `random01` in [0, 1) draws the cool-down's jitter. `may_open` false keeps the circuit closed
  /// (the pool's last endpoint standing: with no other to send to, backoff paces its retries).
  /// True when this failure opened the circuit.
  bool on_failure(Clock::time_point now, double random01, bool may_open = true) {
    error_rate_ += kAlpha * (1.0 - error_rate_);
    ++consecutive_failures_;
    if (!may_open) {
      circuit_ = Circuit::kClosed;
      return false;
    }
    if (circuit_ == Circuit::kProbing || (circuit_ == Circuit::kClosed && consecutive_failures_ >= options_.failures_to_open)) {
      open(now, random01);
      return true;
    }
    return false;
  }

  /// Opens the circuit now for a cool-down, whatever came before: the endpoint served data that
  /// the other endpoints contradict.
  void open_now(Clock::time_point now, double random01) {
    error_rate_ = 1.0;
    open(now, random01);
  }

  /// The request was not the endpoint's fault (a refusal of the method, the caller gave up): a
  /// probe sent for it decides nothing, so the next request may probe again.
  void on_abandoned() {
    if (circuit_ == Circuit::kProbing) circuit_ = Circuit::kOpen;
  }

  /// Whether the cool-down is over and the next request to this endpoint would be its probe.
  bool probe_due(Clock::time_point now) const { return circuit_ == Circuit::kOpen && now >= open_until_; }

  /// Whether the circuit is closed (healthy or degraded).
  bool closed() const { return circuit_ == Circuit::kClosed; }

  /// The endpoint reported `block_number` as its head (over HTTP or its WebSocket).
  void on_head(std::uint64_t block_number) { head_ = std::max(head_.value_or(0), block_number); }
  std::optional<std::uint64_t> head() const { return head_; }

  /// More than lag_blocks behind `best_head` (the newest head any endpoint reported).
  bool lagging(std::uint64_t best_head) const { return head_ && *head_ + options_.lag_blocks < best_head; }

  EndpointState state(std::uint64_t best_head) const {
    if (circuit_ == Circuit::kOpen) return EndpointState::kOpen;
    if (circuit_ == Circuit::kProbing) return EndpointState::kProbing;
    if (error_rate_ >= kDegradedErrorRate || consecutive_failures_ > 0 || lagging(best_head)) return EndpointState::kDegraded;
    return EndpointState::kHealthy;
  }

  /// Lower is better: the mean latency, raised by the error rate and by lag. An endpoint with no
  /// answer yet scores as one with the `unknown_latency_ms` given (the pool's mean).
  double score(std::uint64_t best_head, double unknown_latency_ms) const {
    const double latency = samples_ == 0 ? unknown_latency_ms : latency_ms_;
    double s = (latency + 1.0) * (1.0 + 8.0 * error_rate_);
    if (lagging(best_head)) s += 1e6;
    return s;
  }

  double latency_ms() const { return latency_ms_; }
  double error_rate() const { return error_rate_; }
  unsigned consecutive_failures() const { return consecutive_failures_; }
  std::uint64_t samples() const { return samples_; }
  std::uint64_t times_opened() const { return opened_; }
  /// When an open circuit lets its probe through.
  Clock::time_point open_until() const { return open_until_; }

 private:
  enum class Circuit { kClosed, kOpen, kProbing };

  // Opens the circuit for a cool-down drawn from cooldown × [1 - jitter, 1 + jitter].
  void open(Clock::time_point now, double random01) {
    const double j = options_.jitter * (2.0 * std::clamp(random01, 0.0, 1.0) - 1.0);
    open_until_ = now + std::chrono::duration_cast<Clock::duration>(options_.cooldown * (1.0 + j));
    circuit_ = Circuit::kOpen;
    ++opened_;
  }

  static constexpr double kAlpha = 0.2;               // weight of the newest sample in the moving averages
  static constexpr double kDegradedErrorRate = 0.25;  // about one request in four failing lately

  CircuitOptions options_;
  Circuit circuit_ = Circuit::kClosed;
  Clock::time_point open_until_{};
  unsigned consecutive_failures_ = 0;
  std::uint64_t opened_ = 0;
  double latency_ms_ = 0;
  double error_rate_ = 0;
  std::uint64_t samples_ = 0;
  std::optional<std::uint64_t> head_;
};

}  // namespace chainidx::ingest

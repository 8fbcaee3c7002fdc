#pragma once
// A token bucket: `rate` tokens per second, at most `burst` saved up, with an adaptive rate
// (AIMD): a throttling answer halves the rate (at most once per interval the caller gives, a
// second by default, down to a twentieth of the configured one), each served call gives back a
// hundredth of the configured rate, never above it. A pause (a server's Retry-After) holds every
// token back until it ends; the tokens the rate earns meanwhile are there when it ends, so the
// wait the server asked for and the wait the rate asks for overlap rather than add up.
// Pure: time is passed in, so tests step it with a fake clock. Not thread-safe.

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <optional>

namespace chainidx::ingest {

class TokenBucket {
 public:
  using Clock = std::chrono::steady_clock;

  TokenBucket(double rate_per_second, double burst, Clock::time_point now)
      : ceiling_(rate_per_second), rate_(rate_per_second), burst_(burst), tokens_(burst), last_(now) {}

  /// A 429 or a provider's rate-limit error: halve the rate, once per `interval` at most (a burst
  /// of throttling answers is one event). Returns whether the rate changed.
  bool on_throttled(Clock::time_point now, std::chrono::nanoseconds interval = std::chrono::seconds(1)) {
    if (decreased_ && now - *decreased_ < interval) return false;
    refill(now);
    double lower = std::max(ceiling_ / 20.0, rate_ / 2.0);
    decreased_ = now;
    if (lower >= rate_) return false;
    rate_ = lower;
    return true;
  }

  /// `calls` served calls: give back a hundredth of the configured rate for each, up to it.
  void on_success(Clock::time_point now, std::size_t calls = 1) {
    if (rate_ >= ceiling_) return;
    refill(now);
    rate_ = std::min(ceiling_, rate_ + static_cast<double>(calls) * ceiling_ / 100.0);
  }

  /// The current rate, in tokens per second.
  double rate() const { return rate_; }

  /// Takes one token if there is one. Otherwise returns how long until there will be.
  std::chrono::nanoseconds try_take(Clock::time_point now) {
    if (now < paused_until_) return paused_until_ - now;
    refill(now);
    if (tokens_ >= 1.0) {
      tokens_ -= 1.0;
      return std::chrono::nanoseconds::zero();
    }
    return std::chrono::nanoseconds(static_cast<std::int64_t>((1.0 - tokens_) / rate_ * 1e9));
  }

  /// How long a call would wait for its token now (zero when one is there); takes nothing.
  std::chrono::nanoseconds wait(Clock::time_point now) const {
    if (now < paused_until_) return paused_until_ - now;
    const double t = now <= last_ ? tokens_ : std::min(burst_, tokens_ + std::chrono::duration<double>(now - last_).count() * rate_);
    if (t >= 1.0) return std::chrono::nanoseconds::zero();
    return std::chrono::nanoseconds(static_cast<std::int64_t>((1.0 - t) / rate_ * 1e9));
  }

  /// Adds `tokens` (at most up to the burst), as a retry budget's first attempts do.
  void deposit(double tokens, Clock::time_point now) {
    refill(now);
    tokens_ = std::min(burst_, tokens_ + tokens);
  }

  /// No token before `until` (a server's Retry-After).
  void pause_until(Clock::time_point until) { paused_until_ = std::max(paused_until_, until); }

  double tokens(Clock::time_point now) {
    refill(now);
    return tokens_;
  }

 private:
  void refill(Clock::time_point now) {
    if (now <= last_) return;
    tokens_ = std::min(burst_, tokens_ + std::chrono::duration<double>(now - last_).count() * rate_);
    last_ = now;
  }
  double ceiling_;
  double rate_;
  double burst_;
  std::optional<Clock::time_point> decreased_;
  double tokens_;
  Clock::time_point last_;
  Clock::time_point paused_until_{};
};

}  // namespace chainidx::ingest

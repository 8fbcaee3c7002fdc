#pragma once
// A token bucket: `rate` tokens per second, at most `burst` saved up. Pure: time is passed in,
// so tests step it with a fake clock. Not thread-safe.

#include <algorithm>
#include <chrono>

namespace chainidx::ingest {

class TokenBucket {
 public:
  using Clock = std::chrono::steady_clock;

  TokenBucket(double rate_per_second, double burst, Clock::time_point now)
      : rate_(rate_per_second), burst_(burst), tokens_(burst), last_(now) {}

  /// Takes one token if there is one. Otherwise returns how long until there will be.
  std::chrono::nanoseconds try_take(Clock::time_point now) {
    refill(now);
    if (tokens_ >= 1.0) {
      tokens_ -= 1.0;
      return std::chrono::nanoseconds::zero();
    }
    return std::chrono::nanoseconds(static_cast<std::int64_t>((1.0 - tokens_) / rate_ * 1e9) + 1);
  }

  /// Empties the bucket until `until` (a server's Retry-After).
  void pause_until(Clock::time_point until) {
    tokens_ = 0;
    last_ = std::max(last_, until);
  }

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
  double rate_;
  double burst_;
  double tokens_;
  Clock::time_point last_;
};

}  // namespace chainidx::ingest

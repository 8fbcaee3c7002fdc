#pragma once
// One retry budget for the whole process, so that an outage does not turn into a retry storm:
// retries may add at most `ratio` of the recent first attempts (plus a floor of `min_per_second`),
// as gRPC's and Finagle's retry budgets do. Each first attempt deposits `ratio` of a token, each
// retry spends one; tokens also trickle in at `min_per_second`, and at most `max_tokens` are
// saved up. When the budget is empty a retry waits until a token is there. Pure: time is passed
// in, so tests step it by hand. Not thread-safe (the network thread owns it).

#include <algorithm>
#include <chrono>

namespace chainidx::ingest {

class RetryBudget {
 public:
  using Clock = std::chrono::steady_clock;

  RetryBudget(double ratio, double min_per_second, double max_tokens, Clock::time_point now)
      : ratio_(ratio), min_per_second_(min_per_second), max_(max_tokens), tokens_(max_tokens), last_(now) {}

  /// A first attempt (not a retry) went out: the budget grows by `ratio`.
  void on_attempt(Clock::time_point now) {
    refill(now);
    tokens_ = std::min(max_, tokens_ + ratio_);
  }

  /// Takes a token for a retry if there is one; otherwise how long until there will be one
  /// (at the floor rate), and takes nothing.
  Clock::duration try_retry(Clock::time_point now) {
    refill(now);
    if (tokens_ >= 1.0) {
      tokens_ -= 1.0;
      return Clock::duration::zero();
    }
    return std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>((1.0 - tokens_) / min_per_second_));
  }

  double tokens(Clock::time_point now) {
    refill(now);
    return tokens_;
  }

 private:
  void refill(Clock::time_point now) {
    if (now <= last_) return;
    tokens_ = std::min(max_, tokens_ + std::chrono::duration<double>(now - last_).count() * min_per_second_);
    last_ = now;
  }
  double ratio_;
  double min_per_second_;
  double max_;
  double tokens_;
  Clock::time_point last_;
};

}  // namespace chainidx::ingest

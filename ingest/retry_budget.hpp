#pragma once
// One retry budget for the whole process, so that an outage does not turn into a retry storm:
// retries may add at most `ratio` of the recent first attempts (plus a floor of `min_per_second`),
// as gRPC's and Finagle's retry budgets do. Each first attempt deposits `ratio` of a token, each
// retry spends one; tokens also trickle in at `min_per_second`, and at most `max_tokens` are
// saved up. When the budget is empty a retry waits until a token is there. Pure: time is passed
// in, so tests step it by hand. Not thread-safe (the network thread owns it).

#include "ingest/token_bucket.hpp"

namespace chainidx::ingest {

class RetryBudget {
 public:
  using Clock = TokenBucket::Clock;

  RetryBudget(double ratio, double min_per_second, double max_tokens, Clock::time_point now)
      : ratio_(ratio), bucket_(min_per_second, max_tokens, now) {}

  /// A first attempt (not a retry) went out: the budget grows by `ratio`.
  void on_attempt(Clock::time_point now) { bucket_.deposit(ratio_, now); }

  /// Takes a token for a retry if there is one; otherwise how long until there will be one
  /// (at the floor rate), and takes nothing.
  Clock::duration try_retry(Clock::time_point now) { return bucket_.try_take(now); }

  double tokens(Clock::time_point now) { return bucket_.tokens(now); }

 private:
  double ratio_;
  TokenBucket bucket_;  // refills at the floor rate, holds at most max_tokens
};

}  // namespace chainidx::ingest

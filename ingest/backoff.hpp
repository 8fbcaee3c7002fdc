#pragma once
// Exponential backoff with jitter, as a pure function of the attempt number and a random draw in
// [0, 1): attempt 0 waits between initial/2 and initial, each next attempt twice as long, capped
// at `max` (half of it fixed, so that many clients spread out without ever retrying at once). The caller resets its attempt counter on the first good message, not on connect.

#include <algorithm>
#include <chrono>

namespace chainidx::ingest {

struct BackoffPolicy {
  std::chrono::milliseconds initial{200};
  std::chrono::milliseconds max{30000};
  /// Full jitter: the wait is drawn from [0, ceiling) whole, so that many clients that lost the
  /// same peer at once (every WebSocket of a provider's outage) come back spread over the window
  /// rather than in a herd at its middle. The WebSocket reconnects use it.
  bool full_jitter = false;

  std::chrono::milliseconds delay(unsigned attempt, double random01) const {
    double ceiling = static_cast<double>(initial.count());
    for (unsigned i = 0; i < attempt && ceiling < static_cast<double>(max.count()); ++i) ceiling *= 2;
    ceiling = std::min(ceiling, static_cast<double>(max.count()));
    const double r = std::clamp(random01, 0.0, 1.0);
    return std::chrono::milliseconds(static_cast<std::int64_t>(ceiling * (full_jitter ? r : 0.5 + 0.5 * r)));
  }
};

}  // namespace chainidx::ingest

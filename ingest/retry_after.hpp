#pragma once
// A server's Retry-After header (RFC 9110 §10.2.3), read defensively: either delay-seconds or an
// HTTP-date, capped, and nonsense reported rather than obeyed. Pure: the time is passed in.

#include <chrono>
#include <optional>
#include <string>
#include <string_view>

namespace chainidx::ingest {

struct RetryAfter {
  /// How long to wait: nullopt when the value was unusable (fall back to our own backoff).
  std::optional<std::chrono::milliseconds> delay;
  /// Set when the value was capped or ignored: what to log.
  std::string warning;
};

/// `value` is the header's text; `now` the current wall-clock time (for HTTP dates); `cap` the
/// longest wait accepted (longer values are cut to it, with a warning). A date in the past is a
/// zero wait. Accepts "120", "0", and the three HTTP-date forms (IMF-fixdate
/// "Sun, 06 Nov 1994 08:49:37 GMT", RFC 850 "Sunday, 06-Nov-94 08:49:37 GMT", asctime
/// "Sun Nov  6 08:49:37 1994").
RetryAfter parse_retry_after(std::string_view value, std::chrono::system_clock::time_point now, std::chrono::milliseconds cap);

}  // namespace chainidx::ingest

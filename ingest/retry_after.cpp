#include "ingest/retry_after.hpp"

#include <ctime>
#include <iomanip>
#include <locale>
#include <sstream>

namespace chainidx::ingest {

namespace {

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

std::optional<std::chrono::system_clock::time_point> parse_http_date(std::string_view text) {
  for (const char* format : {"%a, %d %b %Y %H:%M:%S GMT", "%A, %d-%b-%y %H:%M:%S GMT", "%a %b %e %H:%M:%S %Y"}) {
    std::tm tm{};
    std::istringstream in{std::string(text)};
    in.imbue(std::locale::classic());
    in >> std::get_time(&tm, format);
    if (in.fail()) continue;
    in >> std::ws;
    if (!in.eof()) continue;  // trailing text
    std::time_t t = timegm(&tm);
    if (t == static_cast<std::time_t>(-1)) continue;
    return std::chrono::system_clock::from_time_t(t);
  }
  return std::nullopt;
}

}  // namespace

RetryAfter parse_retry_after(std::string_view value, std::chrono::system_clock::time_point now, std::chrono::milliseconds cap) {
  using std::chrono::milliseconds;
  std::string_view v = trim(value);
  RetryAfter out;
  auto capped = [&](milliseconds d, const std::string& shown) {
    if (d > cap) {
      out.warning = "Retry-After '" + shown + "' is longer than the cap of " + std::to_string(cap.count() / 1000) +
                    " s (chain.retry_after_max_seconds); waiting " + std::to_string(cap.count() / 1000) + " s";
      d = cap;
    }
    out.delay = d;
    return out;
  };
  std::string shown(v.substr(0, 64));
  if (!v.empty() && v.size() <= 64 && v.find_first_not_of("0123456789") == std::string_view::npos) {
    // delay-seconds: digits only. Anything past a day is certainly over the cap; stop counting
    // there so that 2^62 and longer do not overflow.
    std::uint64_t seconds = 0;
    for (char c : v) {
      seconds = seconds * 10 + static_cast<std::uint64_t>(c - '0');
      if (seconds > 86400ull * 365) break;
    }
    return capped(milliseconds(static_cast<std::int64_t>(std::min<std::uint64_t>(seconds, 86400ull * 365) * 1000)), shown);
  }
  if (auto when = parse_http_date(v)) {
    if (*when <= now) {
      out.delay = milliseconds(0);
      return out;
    }
    return capped(std::chrono::duration_cast<milliseconds>(*when - now), shown);
  }
  out.warning = "Retry-After '" + shown + "' is neither a number of seconds nor an HTTP date; ignored";
  return out;
}

}  // namespace chainidx::ingest

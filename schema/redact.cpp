#include "schema/redact.hpp"

namespace chainidx::schema {

std::string redact_postgres_url(std::string_view url) {
  std::string out;
  auto scheme_end = url.find("://");
  if (scheme_end == std::string_view::npos) return "***";
  out.append(url.substr(0, scheme_end + 3));
  std::size_t pos = scheme_end + 3;
  std::size_t auth_end = url.find_first_of("/?#", pos);
  if (auth_end == std::string_view::npos) auth_end = url.size();
  std::string_view authority = url.substr(pos, auth_end - pos);
  if (auto at = authority.rfind('@'); at != std::string_view::npos) {
    std::string_view userinfo = authority.substr(0, at);
    auto colon = userinfo.find(':');
    out.append(colon == std::string_view::npos ? userinfo : userinfo.substr(0, colon));
    if (colon != std::string_view::npos) out.append(":***");
    out.append(authority.substr(at));
  } else {
    out.append(authority);
  }
  pos = auth_end;
  std::size_t query_at = url.find('?', pos);
  std::size_t fragment_at = url.find('#', pos);
  out.append(url.substr(pos, std::min(query_at, fragment_at) - pos));  // the database
  if (query_at != std::string_view::npos && query_at < fragment_at) {
    out.push_back('?');
    std::string_view query = url.substr(query_at + 1, fragment_at == std::string_view::npos ? std::string_view::npos
                                                                                             : fragment_at - query_at - 1);
    for (std::size_t q = 0; q <= query.size();) {
      std::size_t amp = query.find('&', q);
      std::string_view pair = query.substr(q, amp == std::string_view::npos ? std::string_view::npos : amp - q);
      auto eq = pair.find('=');
      // Settings that are never secret stay readable (an operator checks that TLS is on);
      // any other value may be (password, sslpassword, options ...).
      const std::string_view name = pair.substr(0, eq);
      const bool shown = name == "sslmode" || name == "connect_timeout" || name == "target_session_attrs" ||
                         name == "application_name";
      out.append(eq == std::string_view::npos || shown ? std::string(pair) : std::string(name) + "=***");
      if (amp == std::string_view::npos) break;
      out.push_back('&');
      q = amp + 1;
    }
  }
  if (fragment_at != std::string_view::npos) out.append("#***");
  return out;
}

}  // namespace chainidx::schema

#include "schema/redact.hpp"

#include <cctype>

namespace chainidx::schema {
namespace {

// A path segment that looks like a key: 16+ characters with digits and letters mixed, or 24+.
bool looks_like_key(std::string_view seg) {
  if (seg.size() < 16) return false;
  bool digit = false, alpha = false;
  for (char c : seg) {
    if (std::isdigit(static_cast<unsigned char>(c))) digit = true;
    else if (std::isalpha(static_cast<unsigned char>(c))) alpha = true;
    else if (c != '-' && c != '_') return false;
  }
  return (digit && alpha) || seg.size() >= 24;
}

}  // namespace

std::string redact_url(std::string_view url) {
  std::string out;
  auto scheme_end = url.find("://");
  std::size_t pos = 0;
  if (scheme_end != std::string_view::npos) {
    out.append(url.substr(0, scheme_end + 3));
    pos = scheme_end + 3;
  }
  std::size_t auth_end = url.find_first_of("/?#", pos);
  std::string_view authority = url.substr(pos, auth_end == std::string_view::npos ? std::string_view::npos : auth_end - pos);
  if (auto at = authority.rfind('@'); at != std::string_view::npos) {
    std::string_view userinfo = authority.substr(0, at);
    auto colon = userinfo.find(':');
    out.append(colon == std::string_view::npos ? "***" : std::string(userinfo.substr(0, colon)) + ":***");
    out.append(authority.substr(at));
  } else {
    out.append(authority);
  }
  if (auth_end == std::string_view::npos) return out;
  pos = auth_end;
  // Path: segment by segment.
  while (pos < url.size() && url[pos] == '/') {
    out.push_back('/');
    ++pos;
    std::size_t end = url.find_first_of("/?#", pos);
    std::string_view seg = url.substr(pos, end == std::string_view::npos ? std::string_view::npos : end - pos);
    out.append(looks_like_key(seg) ? "***" : std::string(seg));
    pos = end == std::string_view::npos ? url.size() : end;
  }
  // Query: keep names, hide values.
  if (pos < url.size() && url[pos] == '?') {
    out.push_back('?');
    ++pos;
    std::size_t end = url.find('#', pos);
    std::string_view query = url.substr(pos, end == std::string_view::npos ? std::string_view::npos : end - pos);
    std::size_t q = 0;
    while (q <= query.size()) {
      std::size_t amp = query.find('&', q);
      std::string_view pair = query.substr(q, amp == std::string_view::npos ? std::string_view::npos : amp - q);
      auto eq = pair.find('=');
      out.append(eq == std::string_view::npos ? pair : std::string(pair.substr(0, eq)) + "=***");
      if (amp == std::string_view::npos) break;
      out.push_back('&');
      q = amp + 1;
    }
  }
  return out;
}

}  // namespace chainidx::schema

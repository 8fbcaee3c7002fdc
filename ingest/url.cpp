#include "ingest/url.hpp"

namespace chainidx::ingest {

std::optional<Url> parse_url(std::string_view text) {
  Url u;
  auto sep = text.find("://");
  if (sep == std::string_view::npos) return std::nullopt;
  u.scheme = std::string(text.substr(0, sep));
  std::string default_port;
  if (u.scheme == "http" || u.scheme == "ws") default_port = "80";
  else if (u.scheme == "https" || u.scheme == "wss") default_port = "443";
  else return std::nullopt;
  std::string_view rest = text.substr(sep + 3);
  auto path_at = rest.find_first_of("/?");
  std::string_view authority = rest.substr(0, path_at);
  u.target = path_at == std::string_view::npos ? "/" : std::string(rest.substr(path_at));
  if (!u.target.empty() && u.target[0] == '?') u.target = "/" + u.target;
  if (auto at = authority.rfind('@'); at != std::string_view::npos) authority.remove_prefix(at + 1);
  if (!authority.empty() && authority[0] == '[') {
    auto close = authority.find(']');
    if (close == std::string_view::npos) return std::nullopt;
    u.host = std::string(authority.substr(1, close - 1));
    authority.remove_prefix(close + 1);
    if (!authority.empty() && authority[0] != ':') return std::nullopt;
    u.port = authority.empty() ? default_port : std::string(authority.substr(1));
  } else {
    auto colon = authority.rfind(':');
    u.host = std::string(authority.substr(0, colon));
    u.port = colon == std::string_view::npos ? default_port : std::string(authority.substr(colon + 1));
  }
  if (u.host.empty() || u.port.empty()) return std::nullopt;
  for (char c : u.port)
    if (c < '0' || c > '9') return std::nullopt;
  return u;
}

}  // namespace chainidx::ingest

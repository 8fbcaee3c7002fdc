#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace chainidx::ingest {

/// The parts of an endpoint URL a client connects with.
struct Url {
  std::string scheme;  ///< http, https, ws, wss
  std::string host;    ///< without brackets for IPv6
  std::string port;    ///< explicit, or the scheme's default
  std::string target;  ///< path and query, "/" when empty
  bool tls() const { return scheme == "https" || scheme == "wss"; }
};

/// nullopt for anything but scheme://host[:port][/path][?query] with a known scheme.
std::optional<Url> parse_url(std::string_view text);

}  // namespace chainidx::ingest

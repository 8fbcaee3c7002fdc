#pragma once
// Endpoint URLs: the parts a client connects with, and how they are named in logs, metrics and
// status without the secrets providers put in them (API keys in the path, the query, the
// user-info or a subdomain). Parsing is Boost.URL's; Boost stays in the .cpp.

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
  /// "user:password" (percent-decoded) from the URL's user-info, for HTTP Basic authentication;
  /// empty without user-info. A secret: never print it.
  std::string credentials;
  /// The Authorization header value for `credentials` ("Basic ..."), or empty.
  std::string authorization() const;
  bool tls() const { return scheme == "https" || scheme == "wss"; }
};

/// nullopt for anything but scheme://[userinfo@]host[:port][/path][?query] with scheme http,
/// https, ws or wss, a non-empty host and a numeric port.
std::optional<Url> parse_url(std::string_view text);

/// How an endpoint is named where no `name` is configured: scheme, host and port, with every host
/// label left of the registered domain (per the Public Suffix List, via libpsl) masked:
/// "https://***.quiknode.pro", "wss://***.***.alchemy.com", "http://127.0.0.1:8545". IP
/// addresses and single-label hosts stay as they are. Text that is not a URL becomes "***".
std::string endpoint_label(std::string_view url);

/// The URL as it may be printed: endpoint_label() plus "***" for user-info, path and query
/// wherever they are present ("https://***.infura.io/***", "http://***@10.0.0.1:8545/***?***").
std::string redact_endpoint_url(std::string_view url);

}  // namespace chainidx::ingest

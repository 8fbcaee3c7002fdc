#include "ingest/url.hpp"

#include <boost/url/parse.hpp>
#include <libpsl.h>
#include <openssl/evp.h>

#include <algorithm>
#include <cctype>

namespace chainidx::ingest {

namespace urls = boost::urls;

namespace {

std::optional<urls::url_view> parse(std::string_view text) {
  auto r = urls::parse_uri(text);
  if (!r) return std::nullopt;
  urls::url_view u = *r;
  if (!u.has_authority() || u.host_address().empty()) return std::nullopt;
  // Boost.URL 1.81 reads "host:8a" as port 8 and path "a"; a path after an authority must
  // start with "/".
  if (!u.encoded_path().empty() && u.encoded_path().front() != '/') return std::nullopt;
  if (u.has_port()) {
    if (u.port().empty() || u.port().size() > 5) return std::nullopt;
    if (!std::all_of(u.port().begin(), u.port().end(), [](char c) { return c >= '0' && c <= '9'; })) return std::nullopt;
  }
  return u;
}

// The host with every label left of its registered domain masked.
std::string masked_host(const urls::url_view& u) {
  if (u.host_type() == urls::host_type::ipv4) return std::string(u.encoded_host());
  if (u.host_type() != urls::host_type::name) return std::string(u.encoded_host());  // [v6], [vFuture]
  std::string host(u.host_address());
  std::transform(host.begin(), host.end(), host.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  if (host.find('.') == std::string::npos) return host;  // localhost, a container name
  static const psl_ctx_t* psl = [] {
    const psl_ctx_t* latest = psl_latest(nullptr);  // the system's list, else the built-in one
    return latest ? latest : psl_builtin();
  }();
  const char* registered = psl ? psl_registrable_domain(psl, host.c_str()) : nullptr;
  // No registered domain (the host is a public suffix itself, or unknown to the list): keep
  // only the last label.
  std::string keep = registered ? registered : host.substr(host.rfind('.') + 1);
  if (keep.size() >= host.size()) return host;
  std::string prefix = host.substr(0, host.size() - keep.size());  // "a.b." left of "example.com"
  std::string out;
  for (char c : prefix)
    if (c == '.') out += "***.";
  return out + keep;
}

}  // namespace

std::optional<Url> parse_url(std::string_view text) {
  auto u = parse(text);
  if (!u) return std::nullopt;
  Url out;
  out.scheme = std::string(u->scheme());
  std::string default_port;
  if (out.scheme == "http" || out.scheme == "ws") default_port = "80";
  else if (out.scheme == "https" || out.scheme == "wss") default_port = "443";
  else return std::nullopt;
  out.host = std::string(u->host_address());
  out.port = u->has_port() ? std::string(u->port()) : default_port;
  out.target = std::string(u->encoded_path());
  if (out.target.empty()) out.target = "/";
  if (u->has_query()) out.target += "?" + std::string(u->encoded_query());
  if (u->has_userinfo()) out.credentials = u->user() + (u->has_password() ? ":" + u->password() : std::string());
  return out;
}

std::string Url::authorization() const {
  if (credentials.empty()) return {};
  std::string encoded(4 * ((credentials.size() + 2) / 3) + 1, '\0');
  int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(encoded.data()), reinterpret_cast<const unsigned char*>(credentials.data()),
                          static_cast<int>(credentials.size()));
  encoded.resize(static_cast<std::size_t>(n));
  return "Basic " + encoded;
}

std::string endpoint_label(std::string_view text) {
  auto u = parse(text);
  if (!u) return "***";
  std::string out = std::string(u->scheme()) + "://" + masked_host(*u);
  if (u->has_port()) out += ":" + std::string(u->port());
  return out;
}

std::string redact_endpoint_url(std::string_view text) {
  auto u = parse(text);
  if (!u) return "***";
  std::string out = std::string(u->scheme()) + "://" + (u->has_userinfo() ? "***@" : "") + masked_host(*u);
  if (u->has_port()) out += ":" + std::string(u->port());
  if (!u->encoded_path().empty() && u->encoded_path() != "/") out += "/***";
  if (u->has_query()) out += "?***";
  if (u->has_fragment()) out += "#***";
  return out;
}

}  // namespace chainidx::ingest

#pragma once
// Secrets in endpoint URLs (credentials, API keys in paths or queries) must never reach a log.
// Lives in schema/ because every layer prints endpoints and schema/ is the one they all share.

#include <string>
#include <string_view>

namespace chainidx::schema {

/// The URL with its password, query values and API-key-looking path segments (long runs of
/// letters and digits) replaced by "***". Scheme, host, port and short path segments stay, so
/// the operator can still tell endpoints apart.
std::string redact_url(std::string_view url);

}  // namespace chainidx::schema

#pragma once
// Secrets in the Postgres URL (the password in its user-info, or password=... in its query) must
// never reach a log. Provider URLs have their own, stricter rule: ingest/url.hpp.

#include <string>
#include <string_view>

namespace chainidx::schema {

/// The URL with the user-info's password and every query value replaced by "***"; scheme,
/// user, host, port and database stay, so the operator can tell which database is meant.
/// "postgresql://indexer:hunter2@db:5432/chainidx?sslpassword=x" ->
/// "postgresql://indexer:***@db:5432/chainidx?sslpassword=***".
std::string redact_postgres_url(std::string_view url);

}  // namespace chainidx::schema

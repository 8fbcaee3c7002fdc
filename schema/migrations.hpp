#pragma once
// The SQL migrations under schema/sql/, embedded in the binary at build time.

#include <span>
#include <string>
#include <string_view>

namespace chainidx::schema {

struct Migration {
  int version;            ///< from the NNN_ prefix of the file name
  std::string_view name;  ///< the file name without .sql
  std::string_view sql;   ///< text with "${schema}" where the chain's schema name goes
};

/// All migrations, in ascending version order.
std::span<const Migration> migrations();

/// The migration's SQL with every "${schema}" replaced by `quoted_schema` (already quoted).
std::string render_migration(const Migration& m, std::string_view quoted_schema);

}  // namespace chainidx::schema

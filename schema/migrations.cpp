#include "schema/migrations.hpp"

namespace chainidx::schema {

std::string render_migration(const Migration& m, std::string_view quoted_schema) {
  static constexpr std::string_view kPlaceholder = "${schema}";
  std::string out;
  out.reserve(m.sql.size());
  std::size_t pos = 0;
  for (;;) {
    auto at = m.sql.find(kPlaceholder, pos);
    if (at == std::string_view::npos) break;
    out.append(m.sql.substr(pos, at - pos));
    out.append(quoted_schema);
    pos = at + kPlaceholder.size();
  }
  out.append(m.sql.substr(pos));
  return out;
}

}  // namespace chainidx::schema

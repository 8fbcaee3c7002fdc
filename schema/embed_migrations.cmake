# Writes OUTPUT: a C++ file defining chainidx::schema::migrations() from SQL_FILES.
set(body "")
set(index 0)
foreach(file IN LISTS SQL_FILES)
  get_filename_component(name "${file}" NAME_WE)
  string(REGEX MATCH "^[0-9]+" version "${name}")
  math(EXPR version "${version}")
  file(READ "${file}" sql)
  string(APPEND body "  Migration{${version}, \"${name}\", R\"chainidx_sql(${sql})chainidx_sql\"},\n")
  math(EXPR index "${index} + 1")
endforeach()
file(WRITE "${OUTPUT}.tmp" "// Generated from schema/sql/*.sql by schema/embed_migrations.cmake. Do not edit.
#include \"schema/migrations.hpp\"
namespace chainidx::schema {
namespace { constexpr Migration kMigrations[] = {
${body}}; }
std::span<const Migration> migrations() { return kMigrations; }
}  // namespace chainidx::schema
")
file(COPY_FILE "${OUTPUT}.tmp" "${OUTPUT}" ONLY_IF_DIFFERENT)

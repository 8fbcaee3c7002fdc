#pragma once
// The one rule for the names an operator gives on the command line and to the admin API (topic
// prefixes, replay workers): they go into topic names, logs and the chunk table unquoted.

#include <string_view>

namespace chainidx::app {

/// 1 to 100 letters, digits, '.', '_' or '-'.
inline bool is_name(std::string_view v) {
  return !v.empty() && v.size() <= 100 &&
         v.find_first_not_of("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-") == std::string_view::npos;
}

}  // namespace chainidx::app

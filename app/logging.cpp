#include "app/logging.hpp"

#include <boost/json.hpp>
#include <spdlog/pattern_formatter.h>
#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>

#include <cctype>
#include <chrono>
#include <cstdlib>
#include <ctime>
#include <iostream>

namespace chainidx::app {
namespace {

thread_local std::string t_chain;

// %*: "chain=NAME " on a chain's thread, unless the message names a chain itself.
class ChainFlag final : public spdlog::custom_flag_formatter {
 public:
  void format(const spdlog::details::log_msg& msg, const std::tm&, spdlog::memory_buf_t& dest) override {
    if (t_chain.empty()) return;
    const std::string_view payload(msg.payload.data(), msg.payload.size());
    if (payload.starts_with("chain=") || payload.find(" chain=") != std::string_view::npos) return;
    const std::string text = "chain=" + t_chain + " ";
    dest.append(text.data(), text.data() + text.size());
  }
  std::unique_ptr<custom_flag_formatter> clone() const override { return std::make_unique<ChainFlag>(); }
};

bool plain_integer(std::string_view v) {
  if (v.empty() || v.size() > 18) return false;  // fits an int64 for certain
  if (v.size() > 1 && v[0] == '0') return false;  // "007" stays text
  for (char c : v)
    if (c < '0' || c > '9') return false;
  return true;
}

// Whether m[at...] is spaces and then `key=` (a quoted value may hold `" ` inside).
bool pair_follows(std::string_view m, std::size_t at) {
  while (at < m.size() && m[at] == ' ') ++at;
  const std::size_t start = at;
  while (at < m.size() && (std::isalnum(static_cast<unsigned char>(m[at])) || m[at] == '_' || m[at] == '.')) ++at;
  return at > start && at < m.size() && m[at] == '=';
}

// Splits `key=value key="quoted value"` into pairs; false when the message is not of that form.
bool parse_pairs(std::string_view m, boost::json::object& out) {
  std::size_t i = 0;
  while (i < m.size()) {
    while (i < m.size() && m[i] == ' ') ++i;
    if (i == m.size()) break;
    const std::size_t eq = m.find('=', i);
    if (eq == std::string_view::npos || eq == i) return false;
    const std::string_view key = m.substr(i, eq - i);
    if (key.find_first_of(" \"") != std::string_view::npos) return false;
    std::size_t v = eq + 1;
    std::string_view value;
    bool quoted = false;
    if (v < m.size() && m[v] == '"') {
      // The closing quote is the one followed by the end or by the next `key=`: a quote inside
      // an error message is kept.
      std::size_t close = v + 1;
      while (true) {
        close = m.find('"', close);
        if (close == std::string_view::npos) return false;
        if (close + 1 == m.size() || (m[close + 1] == ' ' && pair_follows(m, close + 1))) break;
        ++close;
      }
      value = m.substr(v + 1, close - v - 1);
      i = close + 1;
      quoted = true;
    } else {
      const std::size_t end = std::min(m.find(' ', v), m.size());
      value = m.substr(v, end - v);
      i = end;
    }
    if (!quoted && plain_integer(value)) out[key] = std::stoll(std::string(value));
    else out[key] = value;
  }
  return true;
}

class JsonFormatter final : public spdlog::formatter {
 public:
  void format(const spdlog::details::log_msg& msg, spdlog::memory_buf_t& dest) override {
    const auto t = msg.time;
    const std::time_t secs = std::chrono::system_clock::to_time_t(t);
    const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(t.time_since_epoch()).count() % 1000;
    std::tm utc{};
    gmtime_r(&secs, &utc);
    char stamp[40];
    const std::size_t n = std::strftime(stamp, sizeof stamp, "%Y-%m-%dT%H:%M:%S", &utc);
    std::snprintf(stamp + n, sizeof stamp - n, ".%03dZ", static_cast<int>(ms));
    const auto level = spdlog::level::to_string_view(msg.level);
    const std::string line = json_log_line(stamp, std::string_view(level.data(), level.size()),
                                           std::string_view(msg.payload.data(), msg.payload.size()), t_chain);
    dest.append(line.data(), line.data() + line.size());
  }
  std::unique_ptr<spdlog::formatter> clone() const override { return std::make_unique<JsonFormatter>(); }
};

}  // namespace

std::string json_log_line(std::string_view time, std::string_view level, std::string_view message, std::string_view chain) {
  boost::json::object o;
  o["time"] = time;
  o["level"] = level;
  boost::json::object pairs;
  if (parse_pairs(message, pairs)) {
    for (auto& [k, v] : pairs)
      if (k != "time" && k != "level") o[k] = std::move(v);
  } else {
    o["message"] = message;
  }
  if (!chain.empty() && !o.contains("chain")) o["chain"] = chain;
  return boost::json::serialize(o) + "\n";
}

std::unique_ptr<spdlog::formatter> json_log_formatter() { return std::make_unique<JsonFormatter>(); }

void set_log_chain(std::string chain) { t_chain = std::move(chain); }
const std::string& log_chain() { return t_chain; }

bool setup_logging(const std::string& format, const std::string& level) {
  // On standard error, as the README says: standard output stays free for what a command prints.
  // Nothing printed carries a secret: endpoints are named by their configured name or a masked
  // label, the Postgres URL without its password.
  auto logger = spdlog::stderr_logger_mt("chainidx");
  spdlog::set_default_logger(logger);
  if (format == "json") logger->set_formatter(json_log_formatter());
  else {
    auto text = std::make_unique<spdlog::pattern_formatter>(spdlog::pattern_time_type::utc);
    text->add_flag<ChainFlag>('*').set_pattern("%Y-%m-%dT%H:%M:%S.%eZ level=%l %*%v");
    logger->set_formatter(std::move(text));
  }
  spdlog::set_level(spdlog::level::from_str(level));
  const char* env = std::getenv("CHAINIDX_LOG_LEVEL");
  if (!env || !*env) return true;
  // A value that is none of the levels is refused rather than read as "off" (what spdlog
  // would make of it).
  for (const char* known : {"trace", "debug", "info", "warn", "error", "critical", "off"}) {
    if (std::string_view(env) == known) {
      spdlog::set_level(spdlog::level::from_str(env));
      return true;
    }
  }
  std::cerr << "chainidx: CHAINIDX_LOG_LEVEL=\"" << env
            << "\" is not a log level; use one of trace, debug, info, warn, error, critical, off (or unset it for [log] level)\n";
  return false;
}

}  // namespace chainidx::app

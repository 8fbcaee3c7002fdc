#pragma once
// The process's log: standard error, one line per event. Every call site writes
// `event=NAME key=value key="quoted value"`; the text format prints that after the time and
// level, the JSON format turns the same pairs into one JSON object per line.

#include <memory>
#include <string>
#include <string_view>

#include <spdlog/formatter.h>

namespace chainidx::app {

/// The JSON line for one message: {"time":..., "level":..., then each key=value pair}. A pair's
/// value is a number when it is a plain decimal integer, a string otherwise; a message that is
/// not key=value pairs goes whole into "message"; `chain`, when given and the message names none,
/// is added as "chain". Ends with a newline.
std::string json_log_line(std::string_view time, std::string_view level, std::string_view message,
                          std::string_view chain = {});

/// spdlog's formatter for the JSON format.
std::unique_ptr<spdlog::formatter> json_log_formatter();

/// Installs the process's logger: `format` "text" or "json", `level` a spdlog level name; the
/// CHAINIDX_LOG_LEVEL environment variable wins over `level`. Returns false (after saying why on
/// standard error) when CHAINIDX_LOG_LEVEL is not a level.
bool setup_logging(const std::string& format, const std::string& level);

/// The chain this thread works for (a process with several chains sets it on each chain's
/// threads): every line logged on the thread carries `chain=NAME` (in JSON, "chain") unless it
/// names a chain itself. Empty: nothing added.
void set_log_chain(std::string chain);
/// This thread's chain, or "".
const std::string& log_chain();

}  // namespace chainidx::app

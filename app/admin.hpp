#pragma once
// Replay jobs seen from `chainidx run`: the admin API that starts and lists them
// (POST /admin/replay, GET /admin/replays, behind a bearer token), and their progress as metrics.
// A replay started here runs as a `chainidx replay` child process with the same config: the
// range engine, its chunk table and its resumability are the command's, and a replay's fault
// never touches the live pipeline. Everything here runs on a thread of its own (it waits for
// Postgres), never on the io thread.

#include <boost/asio/any_io_executor.hpp>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace chainidx::app {

class Metrics;

struct AdminRequest {
  std::string method;         ///< "GET", "POST", ...
  std::string target;         ///< path (query removed)
  std::string authorization;  ///< the Authorization header, as sent
  std::string body;
  std::optional<std::uint64_t> cursor;  ///< the live cursor when the request came (replays stay at or below it)
};

struct AdminReply {
  int status = 200;
  std::string body;  ///< JSON, or a plain message for 401/404/405
  bool json = true;
};

/// Compares a presented bearer token with the configured one in time that depends on neither.
bool token_matches(std::string_view presented, std::string_view expected);

class AdminApi {
 public:
  struct Settings {
    std::string token;        ///< empty: /admin/ answers 404 (off); the progress metrics still run
    std::string config_path;  ///< given to the replay child processes
    std::string postgres_url;
    std::string chain;
    std::vector<std::string> chains;  ///< every chain of the process (with several, a replay names its own)
    std::string worker_prefix;  ///< the children's worker names start with it
  };
  AdminApi(Settings settings, Metrics* metrics);
  /// Stops the replays started here (SIGTERM: each finishes its batch in flight; the job resumes
  /// when asked again) and waits for them.
  ~AdminApi();
  AdminApi(const AdminApi&) = delete;
  AdminApi& operator=(const AdminApi&) = delete;

  /// Where handle() must run.
  boost::asio::any_io_executor executor();
  /// Answers one /admin/ request. Blocking (Postgres); run it on executor().
  AdminReply handle(const AdminRequest& request);

 private:
  struct Impl;
  std::shared_ptr<Impl> impl_;
};

}  // namespace chainidx::app

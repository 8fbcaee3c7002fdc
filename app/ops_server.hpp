#pragma once
// The operations HTTP server on [server] listen: GET /metrics (Prometheus text format), /healthz,
// /readyz (200, or 503 with the reason), /status (JSON) and the admin API under /admin/, for
// every chain the process indexes. It runs on an io_context of its own; each answer reads the
// chains' statuses on their own threads (each chain's io thread, which never blocks on a sink
// write), so one chain's trouble never holds up another's probes. Beast lives in
// ops_server.cpp only.
//
// With several chains: /healthz and /readyz answer 200 when every chain is healthy (ready), with
// a line per chain; /healthz/<chain> and /readyz/<chain> judge one chain; /status has a `chains`
// array; POST /admin/replay names its chain.

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/io_context.hpp>

#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "app/health.hpp"

namespace chainidx::app {

class AdminApi;
class Metrics;
struct LiveStatus;

/// server.listen cannot be bound (in use, no such address): the message names it and the fix.
class ListenError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

class OpsServer {
 public:
  /// One chain as the server sees it.
  struct Chain {
    boost::asio::any_io_executor executor;  ///< the chain's io thread: `status` is read there
    LiveStatus* status = nullptr;
    Metrics* metrics = nullptr;
    AdminApi* admin = nullptr;  ///< may be null: /admin/ answers 404
  };
  /// Binds `listen` ("HOST:PORT") at once: a port in use throws ListenError naming it. Serves on
  /// `io`; `chains` (at least one) must outlive the server's last answer.
  OpsServer(boost::asio::io_context& io, const std::string& listen, std::vector<Chain> chains, ProbeSettings probes);
  ~OpsServer();

  /// The port bound (useful when `listen` asked for port 0).
  unsigned short port() const;
  /// Stops accepting and closes the open connections; the io_context can then run out of work.
  void stop();

 private:
  struct Impl;
  std::shared_ptr<Impl> impl_;
};

}  // namespace chainidx::app

#pragma once
// The operations HTTP server on [server] listen: GET /metrics (Prometheus text format), /healthz,
// /readyz (200, or 503 with the reason), /status (JSON) and the admin API under /admin/. Runs on the pipeline's io thread,
// which never blocks on a sink write (those run on worker threads), so a probe is answered while
// a write is in flight. Beast lives in ops_server.cpp only.

#include <boost/asio/io_context.hpp>

#include <memory>
#include <stdexcept>
#include <string>

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
  /// Binds `listen` ("HOST:PORT") at once: a port in use throws ListenError naming it. `admin`
  /// (may be null: /admin/ answers 404) answers /admin/ on its own thread.
  OpsServer(boost::asio::io_context& io, const std::string& listen, LiveStatus& status, Metrics& metrics, ProbeSettings probes,
            AdminApi* admin = nullptr);
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

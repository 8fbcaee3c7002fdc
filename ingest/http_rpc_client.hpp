#pragma once

#include <boost/asio/any_io_executor.hpp>

#include <chrono>
#include <functional>
#include <string_view>
#include <memory>
#include <string>
#include <vector>

#include "ingest/json_rpc.hpp"
#include "ingest/rpc_error.hpp"
#include "ingest/task.hpp"

namespace chainidx::ingest {

/// JSON-RPC over HTTP(S) with a kept-alive connection, batch requests and a token bucket that
/// counts every call, those inside a batch included.
/// Up to Options::max_in_flight requests at once, each on its own kept-alive connection (more
/// wait for one); the limit halves when the provider throttles and grows back by one per 20
/// served requests. Use from one thread (the executor's); not thread-safe. Beast stays in the .cpp.
///
/// Note for callers (and this file): g++ 12 mis-handles temporaries with destructors inside a
/// co_await expression (double frees seen here); build arguments into named locals first.
/// What one request (a call or a batch) came to, for metrics.
struct RpcObservation {
  enum class Outcome { kOk, kRpcError, kThrottled, kHttpError, kTransport, kMalformed };
  std::string_view endpoint;  ///< the client's name (no secrets)
  std::string_view method;    ///< the call's method; a batch's when all its calls share one, else "batch"
  std::size_t calls = 1;
  std::chrono::nanoseconds duration{};  ///< from the request's start (rate-limit wait included) to its answer
  Outcome outcome = Outcome::kOk;
};
using RpcObserver = std::function<void(const RpcObservation&)>;
const char* outcome_name(RpcObservation::Outcome outcome);

class HttpRpcClient {
 public:
  struct Options {
    double requests_per_second = 50;
    double burst = 100;
    std::chrono::milliseconds timeout{15000};  ///< per request, connect included
    std::chrono::milliseconds retry_after_max{60000};  ///< a server's Retry-After is capped at this
    std::string name;  ///< how logs name the endpoint; empty: endpoint_label(url)
    std::size_t max_in_flight = 1;  ///< requests (connections) at once
  };
  /// `url` must be a valid http:// or https:// URL (config validation guarantees it).
  HttpRpcClient(boost::asio::any_io_executor executor, std::string url, Options options);
  ~HttpRpcClient();

  /// One call; the result's JSON text. Throws RpcError (a JSON-RPC error is Kind::kRpc).
  Task<std::string> call(RpcRequest request);
  /// A batch; the replies in request order, each with its result or its error.
  /// Throws RpcError on transport, HTTP or framing trouble, or when replies go missing.
  Task<std::vector<RpcReply>> batch(std::vector<RpcRequest> requests);

  /// The endpoint's name for logs: the configured name, or the URL's label (no secrets).
  const std::string& endpoint() const;
  /// HTTP requests sent, for metrics.
  std::uint64_t requests_sent() const;
  /// JSON-RPC calls sent (a batch counts each of its calls), as the token bucket counts them.
  std::uint64_t calls_sent() const;
  /// How long a call would wait for the rate limit now (Retry-After included).
  std::chrono::nanoseconds rate_wait() const;
  /// Requests allowed in flight now (max_in_flight, lowered while the provider throttles).
  std::size_t in_flight_limit() const;
  /// The token bucket's current rate (calls per second): the configured one, lowered while the
  /// provider throttles.
  double current_rate() const;
  /// Called after every request with what it came to (replaces the one before).
  void observe(RpcObserver observer);

 private:
  struct Impl;
  class Observed;
  Task<std::string> call_observed(RpcRequest request, Observed& observed);
  Task<std::vector<RpcReply>> batch_observed(std::vector<RpcRequest> requests, Observed& observed);
  std::unique_ptr<Impl> impl_;
};

}  // namespace chainidx::ingest

#pragma once
// An HTTP JSON-RPC proxy in front of a real node that misbehaves on demand: it can answer a
// request itself (a 429, a JSON-RPC error) or alter the node's answer before passing it on.
// For what a real node cannot do on request; everything else goes to the node unchanged.

#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>

namespace chainidx::testing {

class FaultProxy {
 public:
  struct Canned {
    int status = 200;
    std::string body;
    std::string retry_after;  ///< Retry-After header value, when not empty
    std::chrono::milliseconds delay{0};  ///< wait this long before answering (a hung request)
  };
  /// Called for each request body with its sequence number (from 1); a value answers the
  /// request without asking the node.
  using Intercept = std::function<std::optional<Canned>(const std::string& request, std::uint64_t n)>;
  /// Called with the node's answer to a forwarded request; may change it.
  using Rewrite = std::function<void(const std::string& request, std::string& response, std::uint64_t n)>;

  FaultProxy(int upstream_port, Intercept intercept, Rewrite rewrite = nullptr);
  ~FaultProxy();

  std::string url() const;
  std::uint64_t requests() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace chainidx::testing

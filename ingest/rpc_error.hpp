#pragma once

#include <chrono>
#include <optional>
#include <stdexcept>
#include <string>

namespace chainidx::ingest {

/// A failed JSON-RPC exchange. Says whether trying again (here or at another endpoint) makes
/// sense, and how long the server asked us to wait.
class RpcError : public std::runtime_error {
 public:
  enum class Kind {
    kTransport,   ///< connect, TLS, read or write failed, or timed out: retry with backoff
    kHttpStatus,  ///< non-200 answer; 429 and 5xx are retryable
    kMalformed,   ///< the answer is not valid JSON-RPC or fails validation: retry elsewhere
    kRpc,         ///< a JSON-RPC error object: retryable unless the method or params are wrong
  };
  RpcError(Kind kind, std::string message, int code = 0, std::optional<std::chrono::milliseconds> retry_after = std::nullopt)
      : std::runtime_error(std::move(message)), kind_(kind), code_(code), retry_after_(retry_after) {}

  Kind kind() const { return kind_; }
  /// HTTP status for kHttpStatus, JSON-RPC error code for kRpc.
  int code() const { return code_; }
  std::optional<std::chrono::milliseconds> retry_after() const { return retry_after_; }
  bool retryable() const {
    switch (kind_) {
      case Kind::kTransport:
      case Kind::kMalformed:
        return true;
      case Kind::kHttpStatus:
        return code_ == 429 || code_ >= 500;
      case Kind::kRpc:
        return code_ != kMethodNotFound && code_ != kInvalidParams && code_ != kInvalidRequest;
    }
    return false;
  }
  static constexpr int kInvalidRequest = -32600;
  static constexpr int kMethodNotFound = -32601;
  static constexpr int kInvalidParams = -32602;

 private:
  Kind kind_;
  int code_;
  std::optional<std::chrono::milliseconds> retry_after_;
};

}  // namespace chainidx::ingest

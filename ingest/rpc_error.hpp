#pragma once

#include <algorithm>
#include <array>
#include <cctype>
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

/// Whether a JSON-RPC error is a provider's way of saying 429: Infura's -32005 ("limit exceeded"),
/// -32029 and similar codes, or a "rate limit" / "too many requests" / "request limit" text.
inline bool says_rate_limited(int code, std::string message) {
  std::transform(message.begin(), message.end(), message.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  // Too big a query, not too many: Infura's -32005 also says "query returned more than 10000
  // results" and "query timeout exceeded", Chainstack "Block range limit exceeded".
  for (const char* p : {"results", "block range", "timeout exceeded", "response size", "too many logs"})
    if (message.find(p) != std::string::npos) return false;
  if (code == -32005 || code == -32029) return true;
  for (const char* p : {"rate limit", "too many requests", "request limit", "limit exceeded", "exceeded the quota", "throttl"})
    if (message.find(p) != std::string::npos) return true;
  return false;
}

/// Whether an answer means "this endpoint does not serve that method (in that form)", as the
/// major node families and providers word it: -32601 (geth, Erigon, Besu, Nethermind, Reth),
/// -32602 to eth_getBlockReceipts (nodes that take a block number only), and the texts that
/// providers send under other codes ("Unsupported method", "method not found", "is not
/// available", "not whitelisted", ...). The caller then uses another method or endpoint.
inline bool says_method_unsupported(const RpcError& e) {
  if (e.kind() != RpcError::Kind::kRpc) return false;
  if (e.code() == RpcError::kMethodNotFound || e.code() == RpcError::kInvalidParams) return true;
  std::string text(e.what());
  std::transform(text.begin(), text.end(), text.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  static constexpr std::array<const char*, 12> kPhrases = {
      "method not found", "unsupported method", "method not supported", "not supported", "does not exist",
      "is not available", "not whitelisted", "not allowed", "unknown method", "no such method", "method disabled",
      "is not enabled"};
  // About a method, not about the data ("block does not exist" is no reason to switch methods).
  if (text.find("method") == std::string::npos) return false;
  return std::any_of(kPhrases.begin(), kPhrases.end(), [&](const char* p) { return text.find(p) != std::string::npos; });
}

/// Whether an answer means "this batch (or its answer) is too big for this provider": HTTP 413,
/// or a JSON-RPC error about the batch or response size (geth's "batch too large" / "batch
/// response exceeded", providers' "batch size limit", "response size exceeded", "too many
/// requests in batch"). The caller sends smaller batches.
inline bool says_batch_too_large(const RpcError& e) {
  if (e.kind() == RpcError::Kind::kHttpStatus) return e.code() == 413;
  if (e.kind() != RpcError::Kind::kRpc) return false;
  std::string text(e.what());
  std::transform(text.begin(), text.end(), text.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  const bool about_size = text.find("batch") != std::string::npos || text.find("response size") != std::string::npos ||
                          text.find("response is too big") != std::string::npos;
  if (!about_size) return false;
  for (const char* p : {"too large", "too big", "exceed", "limit", "too many"})
    if (text.find(p) != std::string::npos) return true;
  return false;
}

}  // namespace chainidx::ingest

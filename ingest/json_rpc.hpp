#pragma once
// JSON-RPC 2.0 framing: requests out, responses (single or batch) split into their results.

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "schema/result.hpp"

namespace chainidx::ingest {

struct RpcRequest {
  std::string method;
  std::string params;  ///< a JSON array, e.g. ["0x10", true]
};

struct RpcReply {
  std::uint64_t id = 0;
  std::string result;  ///< the result's JSON text when there was no error, with kJsonPadding spare capacity
  std::optional<int> error_code;
  std::string error_message;
};

/// {"jsonrpc":"2.0","id":ID,"method":...,"params":...}
std::string encode_request(const RpcRequest& request, std::uint64_t id);
/// A batch: ids first_id, first_id + 1, ...
std::string encode_batch(const std::vector<RpcRequest>& requests, std::uint64_t first_id);

/// Parses a response body (one object or a batch array) into replies, in body order.
/// An Error when the body is not JSON-RPC (no id, neither result nor error, not JSON).
schema::Result<std::vector<RpcReply>> parse_replies(std::string_view body);

}  // namespace chainidx::ingest

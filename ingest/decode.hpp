#pragma once
// Decoding of JSON-RPC results into chainidx's types. Every function takes the JSON text of one
// `result` value and checks types, hex and lengths; anything malformed is an Error naming the
// field, never a partly filled value. simdjson stays inside decode.cpp.

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "ingest/receipt.hpp"
#include "schema/block.hpp"
#include "schema/result.hpp"

namespace chainidx::ingest {

/// Spare bytes the JSON parser may read past the end of the text (simdjson's padding).
inline constexpr std::size_t kJsonPadding = 64;

/// JSON text to decode. Text in a std::string with kJsonPadding bytes of spare capacity (as
/// RpcReply results have) is read in place; any other text is copied into a padded buffer first.
class JsonText {
 public:
  JsonText(const char* text) : text_(text) {}
  JsonText(std::string_view text) : text_(text) {}
  JsonText(const std::string& text) : text_(text), padded_(text.capacity() - text.size() >= kJsonPadding) {}
  std::string_view text() const { return text_; }
  bool padded() const { return padded_; }

 private:
  std::string_view text_;
  bool padded_ = false;
};

/// eth_getBlockBy{Number,Hash} result. Transactions may be hashes or full objects; a JSON null
/// (unknown block) decodes to nullopt.
schema::Result<std::optional<schema::Block>> decode_block(JsonText json);

/// eth_getBlockReceipts result (an array of receipts; null decodes to an empty optional).
schema::Result<std::optional<std::vector<Receipt>>> decode_receipts(JsonText json);

/// eth_getTransactionReceipt result; null decodes to nullopt.
schema::Result<std::optional<Receipt>> decode_receipt(JsonText json);

/// eth_getLogs result.
schema::Result<std::vector<schema::Log>> decode_logs(JsonText json);
/// eth_getLogs result with each log's blockTimestamp, where the node gives it (geth 1.16, reth,
/// anvil do; older nodes do not).
struct TimedLogs {
  std::vector<schema::Log> logs;
  std::vector<std::optional<std::uint64_t>> block_timestamps;  ///< parallel to logs
};
schema::Result<TimedLogs> decode_timed_logs(JsonText json);

/// A WebSocket message on a newHeads subscription: {"method":"eth_subscription","params":
/// {"subscription":ID,"result":HEADER}}. nullopt for a message that is not a notification
/// (e.g. a reply to a request); an Error when the header is malformed.
schema::Result<std::optional<schema::BlockRef>> decode_new_head(JsonText message);

/// eth_chainId / eth_blockNumber result: a JSON string holding a hex quantity.
schema::Result<std::uint64_t> decode_quantity(JsonText json);

}  // namespace chainidx::ingest

#pragma once
// Decoding of JSON-RPC results into chainidx's types. Every function takes the JSON text of one
// `result` value and checks types, hex and lengths; anything malformed is an Error naming the
// field, never a partly filled value. simdjson stays inside decode.cpp.

#include <optional>
#include <string_view>
#include <vector>

#include "ingest/receipt.hpp"
#include "schema/block.hpp"
#include "schema/result.hpp"

namespace chainidx::ingest {

/// eth_getBlockBy{Number,Hash} result. Transactions may be hashes or full objects; a JSON null
/// (unknown block) decodes to nullopt.
schema::Result<std::optional<schema::Block>> decode_block(std::string_view json);

/// eth_getBlockReceipts result (an array of receipts; null decodes to an empty optional).
schema::Result<std::optional<std::vector<Receipt>>> decode_receipts(std::string_view json);

/// eth_getTransactionReceipt result; null decodes to nullopt.
schema::Result<std::optional<Receipt>> decode_receipt(std::string_view json);

/// eth_getLogs result.
schema::Result<std::vector<schema::Log>> decode_logs(std::string_view json);

/// A WebSocket message on a newHeads subscription: {"method":"eth_subscription","params":
/// {"subscription":ID,"result":HEADER}}. nullopt for a message that is not a notification
/// (e.g. a reply to a request); an Error when the header is malformed.
schema::Result<std::optional<schema::BlockRef>> decode_new_head(std::string_view message);

/// eth_chainId / eth_blockNumber result: a JSON string holding a hex quantity.
schema::Result<std::uint64_t> decode_quantity(std::string_view json);

}  // namespace chainidx::ingest

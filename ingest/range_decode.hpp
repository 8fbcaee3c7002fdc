#pragma once
// Turning the answers to one block range's JSON-RPC batch into checked blocks. Pure and
// thread-safe (no shared state): the range engine runs it on its decode workers, off the
// network thread. Every check the one-block fetcher makes is made here too.

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "ingest/json_rpc.hpp"
#include "ingest/range_plan.hpp"
#include "ingest/receipt.hpp"
#include "schema/block.hpp"
#include "schema/result.hpp"

namespace chainidx::ingest {

/// Checks a decoded block body on its own: its header hashes to its hash (when `verify_hash`)
/// and its transactions came as full bodies.
schema::Status check_block_body(const schema::Block& block, bool verify_hash);

/// Decodes the eth_getBlockByNumber(n, true) results for `range` (one reply per block, in
/// order; replies with an error must have been handled by the caller), checking each body, its
/// number, and the parent links inside the range. An Error names the block and the field.
schema::Result<std::vector<schema::Block>> decode_range_blocks(std::span<const RpcReply> replies, BlockRange range, bool verify_hash);

/// Decodes one eth_getBlockReceipts result per block and merges them in (attach_receipts).
schema::Status attach_block_receipts(std::vector<schema::Block>& blocks, std::span<const RpcReply> replies);

/// Decodes eth_getTransactionReceipt results, one per transaction of `blocks` in order, and
/// merges them in.
schema::Status attach_transaction_receipts(std::vector<schema::Block>& blocks, std::span<const RpcReply> replies);

}  // namespace chainidx::ingest

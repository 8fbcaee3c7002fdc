#pragma once

#include <atomic>
#include <optional>

#include "ingest/http_rpc_client.hpp"
#include "schema/block.hpp"

namespace chainidx::ingest {

/// Fetches a whole block: header with full transactions, receipts (eth_getBlockReceipts, or
/// eth_getTransactionReceipt per transaction where the node lacks it) and the logs inside them,
/// decoded and checked against each other (see attach_receipts). A block that fails a check is
/// counted and reported as RpcError::Kind::kMalformed: never returned, never written.
class BlockFetcher {
 public:
  /// With `verify_block_hash`, a block whose header fields do not hash to its hash is refused
  /// (see header_hash); chains with non-Ethereum header layouts turn it off.
  explicit BlockFetcher(HttpRpcClient& rpc, bool verify_block_hash = true) : rpc_(rpc), verify_block_hash_(verify_block_hash) {}

  /// nullopt when the node does not know the block (yet, or any more). Throws RpcError. The
  /// block and its receipts are asked for in one batch (one round trip): by number, the receipts
  /// are checked to be the block's and asked for again by its hash when the chain moved between.
  Task<std::optional<schema::Block>> by_number(std::uint64_t number);
  Task<std::optional<schema::Block>> by_hash(const schema::Hash32& hash);

  /// chain.index = "events": from now on by_number and by_hash fetch the header and the block's
  /// logs that match `filter_members` (log_filter_members: "address" and maybe "topics") instead
  /// of the whole block, in one batch: a sparse block (schema::Block::sparse) that keeps its
  /// header and parent link. Each log must carry the header's block hash and be in its logs
  /// bloom; logs asked for by number that name another hash (the chain moved between the
  /// answers) are asked for again by the header's hash.
  void fetch_logs_only(std::string filter_members) { log_filter_ = std::move(filter_members); }

  /// eth_chainId.
  Task<std::uint64_t> chain_id();
  /// The header of the node's latest block (eth_getBlockByNumber("latest", false)).
  Task<schema::BlockRef> latest_head();
  /// The header of the node's block with `tag` ("safe", "finalized"), or nullopt when it has none.
  Task<std::optional<schema::BlockRef>> tagged_header(const std::string& tag);
  /// The header of a block by number, or nullopt.
  Task<std::optional<schema::BlockRef>> header_by_number(std::uint64_t number);

  /// The headers of blocks first..last (eth_getBlockByNumber(n, false) each, in one batch), in
  /// order; nullopt for a block the node does not have.
  Task<std::vector<std::optional<schema::BlockRef>>> headers_by_number(std::uint64_t first, std::uint64_t last);

  /// Blocks refused because their parts did not agree (for metrics and tests).
  std::uint64_t rejected() const { return rejected_; }
  bool uses_block_receipts() const { return block_receipts_; }
  /// The node said it has no eth_getBlockReceipts: receipts come per transaction from now on.
  void without_block_receipts(const RpcError& why);

 private:
  // The block request and eth_getBlockReceipts(receipts_param) in one batch, then complete().
  Task<std::optional<schema::Block>> fetch(RpcRequest block_request, std::string receipts_param, const char* what);
  // Decodes and checks the block and adds its receipts: those given (when they are the block's),
  // else fetched by the block's hash, or per transaction where the node has no eth_getBlockReceipts.
  Task<std::optional<schema::Block>> complete(std::string block_json, const char* what, std::optional<std::string> receipts_json);

  // fetch_logs_only's fetch: the header request and the eth_getLogs filter's block selector.
  Task<std::optional<schema::Block>> fetch_logs(RpcRequest header_request, std::string selector, const char* what);

  HttpRpcClient& rpc_;
  std::string log_filter_;  // fetch_logs_only's filter members; empty: whole blocks
  bool verify_block_hash_;
  bool block_receipts_ = true;  // cleared when the node says eth_getBlockReceipts does not exist
  bool receipts_in_batch_ = true;  // cleared when the node refuses it batched with the block
  std::uint64_t rejected_ = 0;
};

}  // namespace chainidx::ingest

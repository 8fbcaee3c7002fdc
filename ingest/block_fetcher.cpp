#include "ingest/block_fetcher.hpp"

#include "ingest/attach_receipts.hpp"
#include "ingest/decode.hpp"
#include "ingest/range_decode.hpp"

#include <spdlog/spdlog.h>

namespace chainidx::ingest {

using schema::Block;

namespace {

std::string quoted(const std::string& s) { return "\"" + s + "\""; }

[[noreturn]] void malformed(const std::string& endpoint, const std::string& what) {
  throw RpcError(RpcError::Kind::kMalformed, endpoint + ": " + what);
}

}  // namespace

Task<std::optional<Block>> BlockFetcher::by_number(std::uint64_t number) {
  RpcRequest request{"eth_getBlockByNumber", "[" + quoted(schema::to_quantity_hex(number)) + ",true]"};
  std::string json = co_await rpc_.call(std::move(request));
  auto block = co_await complete(std::move(json), "eth_getBlockByNumber");
  if (block && block->number != number) {
    ++rejected_;
    malformed(rpc_.endpoint(), "asked for block " + std::to_string(number) + ", got " + std::to_string(block->number));
  }
  co_return block;
}

Task<std::optional<Block>> BlockFetcher::by_hash(const schema::Hash32& hash) {
  RpcRequest request{"eth_getBlockByHash", "[" + quoted(schema::to_hex(hash)) + ",true]"};
  std::string json = co_await rpc_.call(std::move(request));
  auto block = co_await complete(std::move(json), "eth_getBlockByHash");
  if (block && block->hash != hash) {
    ++rejected_;
    malformed(rpc_.endpoint(), "asked for block " + schema::to_hex(hash) + ", got " + schema::to_hex(block->hash));
  }
  co_return block;
}

Task<std::optional<Block>> BlockFetcher::complete(std::string block_json, const char* what) {
  auto decoded = decode_block(block_json);
  if (!decoded.ok()) {
    ++rejected_;
    malformed(rpc_.endpoint(), std::string(what) + ": " + decoded.error().message);
  }
  if (!decoded->has_value()) co_return std::nullopt;
  Block block = std::move(**decoded);
  if (auto body = check_block_body(block, verify_block_hash_); !body.ok()) {
    ++rejected_;
    malformed(rpc_.endpoint(), std::string(what) + ": " + body.error().message);
  }

  std::vector<Receipt> receipts;
  bool have = false;
  if (block_receipts_ && !block.transaction_hashes.empty()) {
    try {
      // By hash, so the receipts are of this block even if the chain moves meanwhile.
      RpcRequest request{"eth_getBlockReceipts", "[" + quoted(schema::to_hex(block.hash)) + "]"};
      std::string json = co_await rpc_.call(std::move(request));
      auto r = decode_receipts(json);
      if (!r.ok()) {
        ++rejected_;
        malformed(rpc_.endpoint(), "eth_getBlockReceipts: " + r.error().message);
      }
      if (!r->has_value()) co_return std::nullopt;  // the block was reorganised away meanwhile
      receipts = std::move(**r);
      have = true;
    } catch (const RpcError& e) {
      if (!says_method_unsupported(e)) throw;
      without_block_receipts(e);
    }
  }
  if (!have && !block.transaction_hashes.empty()) {
    constexpr std::size_t kChunk = 100;
    for (std::size_t start = 0; start < block.transaction_hashes.size(); start += kChunk) {
      std::vector<RpcRequest> requests;
      for (std::size_t i = start; i < std::min(start + kChunk, block.transaction_hashes.size()); ++i)
        requests.push_back({"eth_getTransactionReceipt", "[" + quoted(schema::to_hex(block.transaction_hashes[i])) + "]"});
      auto replies = co_await rpc_.batch(std::move(requests));
      for (auto& reply : replies) {
        if (reply.error_code)
          throw RpcError(RpcError::Kind::kRpc, rpc_.endpoint() + ": eth_getTransactionReceipt: " + reply.error_message, *reply.error_code);
        auto r = decode_receipt(reply.result);
        if (!r.ok()) {
          ++rejected_;
          malformed(rpc_.endpoint(), "eth_getTransactionReceipt: " + r.error().message);
        }
        if (!r->has_value()) co_return std::nullopt;
        receipts.push_back(std::move(**r));
      }
    }
  }
  if (auto status = attach_receipts(block, std::move(receipts)); !status.ok()) {
    // Never written: the caller retries, and the block is fetched again.
    ++rejected_;
    malformed(rpc_.endpoint(), "block " + std::to_string(block.number) + ": " + status.error().message);
  }
  co_return block;
}

void BlockFetcher::without_block_receipts(const RpcError& why) {
  if (!block_receipts_) return;
  block_receipts_ = false;
  spdlog::warn("event=rpc_fallback endpoint={} method=eth_getBlockReceipts instead=eth_getTransactionReceipt reason=\"{}\"",
               rpc_.endpoint(), why.what());
}

Task<std::uint64_t> BlockFetcher::chain_id() {
  RpcRequest request{"eth_chainId", "[]"};
  std::string json = co_await rpc_.call(std::move(request));
  auto id = decode_quantity(json);
  if (!id.ok()) malformed(rpc_.endpoint(), "eth_chainId: " + id.error().message);
  co_return *id;
}

Task<std::optional<schema::BlockRef>> BlockFetcher::header_by_number(std::uint64_t number) {
  RpcRequest request{"eth_getBlockByNumber", "[" + quoted(schema::to_quantity_hex(number)) + ",false]"};
  std::string json = co_await rpc_.call(std::move(request));
  auto b = decode_block(json);
  if (!b.ok()) malformed(rpc_.endpoint(), "eth_getBlockByNumber: " + b.error().message);
  if (!b->has_value()) co_return std::nullopt;
  co_return (*b)->ref();
}

Task<schema::BlockRef> BlockFetcher::latest_head() {
  RpcRequest request{"eth_getBlockByNumber", "[\"latest\",false]"};
  std::string json = co_await rpc_.call(std::move(request));
  auto b = decode_block(json);
  if (!b.ok()) malformed(rpc_.endpoint(), "eth_getBlockByNumber(latest): " + b.error().message);
  if (!b->has_value()) malformed(rpc_.endpoint(), "eth_getBlockByNumber(latest) returned null");
  co_return (*b)->ref();
}

}  // namespace chainidx::ingest

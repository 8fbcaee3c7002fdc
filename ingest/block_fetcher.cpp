#include "ingest/block_fetcher.hpp"

#include "ingest/attach_receipts.hpp"
#include "ingest/decode.hpp"
#include "ingest/header_hash.hpp"
#include "ingest/logs_bloom.hpp"
#include "ingest/range_decode.hpp"

#include <algorithm>

#include <spdlog/spdlog.h>

namespace chainidx::ingest {

using schema::Block;

namespace {

std::string quoted(const std::string& s) { return "\"" + s + "\""; }

[[noreturn]] void malformed(const std::string& endpoint, const std::string& what) {
  throw RpcError(RpcError::Kind::kMalformed, endpoint + ": " + what);
}

}  // namespace

Task<std::optional<Block>> BlockFetcher::fetch(RpcRequest block_request, std::string receipts_param, const char* what) {
  if (!block_receipts_ || !receipts_in_batch_) {
    std::string json = co_await rpc_.call(std::move(block_request));
    Task<std::optional<Block>> completed = complete(std::move(json), what, std::nullopt);
    co_return co_await std::move(completed);
  }
  std::vector<RpcRequest> both{std::move(block_request), RpcRequest{"eth_getBlockReceipts", "[" + receipts_param + "]"}};
  std::vector<RpcReply> replies = co_await rpc_.batch(std::move(both));
  if (replies[0].error_code)
    throw RpcError(RpcError::Kind::kRpc, rpc_.endpoint() + ": " + what + ": " + replies[0].error_message, *replies[0].error_code);
  std::optional<std::string> receipts;
  if (replies[1].error_code) {
    RpcError e(RpcError::Kind::kRpc, rpc_.endpoint() + ": eth_getBlockReceipts: " + replies[1].error_message, *replies[1].error_code);
    if (!says_method_unsupported(e)) throw e;
    // Perhaps only this form of the call is refused (a number where the node wants a hash):
    // complete() asks by hash, as it did before batching, and falls back from there; the batch
    // is not tried again on this endpoint.
    receipts_in_batch_ = false;
    spdlog::info("event=rpc_fallback endpoint={} method=eth_getBlockReceipts instead=\"separate request by hash\" reason=\"{}\"",
                 rpc_.endpoint(), e.what());
  } else {
    receipts = std::move(replies[1].result);
  }
  Task<std::optional<Block>> completed = complete(std::move(replies[0].result), what, std::move(receipts));
  co_return co_await std::move(completed);
}

Task<std::optional<Block>> BlockFetcher::fetch_logs(RpcRequest header_request, std::string selector, const char* what) {
  std::vector<RpcRequest> both{std::move(header_request), RpcRequest{"eth_getLogs", "[{" + selector + "," + log_filter_ + "}]"}};
  std::vector<RpcReply> replies = co_await rpc_.batch(std::move(both));
  for (std::size_t i = 0; i < 2; ++i)
    if (replies[i].error_code)
      throw RpcError(RpcError::Kind::kRpc, rpc_.endpoint() + ": " + (i ? "eth_getLogs" : what) + ": " + replies[i].error_message,
                     *replies[i].error_code);
  auto decoded = decode_block(replies[0].result);
  if (!decoded.ok()) {
    ++rejected_;
    malformed(rpc_.endpoint(), std::string(what) + ": " + decoded.error().message);
  }
  if (!decoded->has_value()) co_return std::nullopt;
  Block block = std::move(**decoded);
  if (verify_block_hash_ && header_hash(block) != block.hash) {
    ++rejected_;
    malformed(rpc_.endpoint(), std::string(what) + ": block " + std::to_string(block.number) + ": header fields do not hash to the block hash " +
                                   schema::to_hex(block.hash));
  }
  auto logs = decode_logs(replies[1].result);
  if (!logs.ok()) {
    ++rejected_;
    malformed(rpc_.endpoint(), "eth_getLogs: " + logs.error().message);
  }
  // Asked for by number beside the header: the chain may have moved between the two answers.
  const bool other_block = std::any_of(logs->begin(), logs->end(), [&](const schema::Log& l) { return l.block_hash != block.hash; });
  if (other_block && selector.rfind("\"blockHash\"", 0) != 0) {
    RpcRequest again{"eth_getLogs", "[{\"blockHash\":" + quoted(schema::to_hex(block.hash)) + "," + log_filter_ + "}]"};
    std::string json = co_await rpc_.call(std::move(again));
    logs = decode_logs(json);
    if (!logs.ok()) {
      ++rejected_;
      malformed(rpc_.endpoint(), "eth_getLogs: " + logs.error().message);
    }
  }
  std::sort(logs->begin(), logs->end(), [](const schema::Log& a, const schema::Log& b) { return a.log_index < b.log_index; });
  for (std::size_t i = 0; i < logs->size(); ++i) {
    const schema::Log& l = (*logs)[i];
    std::string problem;
    if (l.block_hash != block.hash || l.block_number != block.number)
      problem = "a log of block " + std::to_string(l.block_number) + " (" + schema::to_hex(l.block_hash) + ")";
    else if (i > 0 && (*logs)[i - 1].log_index == l.log_index)
      problem = "log " + std::to_string(l.log_index) + " twice";
    else if (!bloom_holds(block.logs_bloom, l))
      problem = "log " + std::to_string(l.log_index) + ", which the header's logs bloom does not hold";
    if (!problem.empty()) {
      ++rejected_;
      malformed(rpc_.endpoint(), "eth_getLogs for block " + std::to_string(block.number) + " " + schema::to_hex(block.hash) + " answered " + problem);
    }
  }
  block.logs = std::move(*logs);
  block.transactions.clear();
  block.transaction_hashes.clear();
  block.withdrawals.clear();
  block.sparse = true;
  co_return block;
}

Task<std::optional<Block>> BlockFetcher::by_number(std::uint64_t number) {
  // Named first: g++ 12 mishandles temporaries with destructors inside a co_await expression.
  const std::string n = quoted(schema::to_quantity_hex(number));
  const bool logs_only = !log_filter_.empty();
  RpcRequest request{"eth_getBlockByNumber", "[" + n + (logs_only ? ",false]" : ",true]")};
  // (Not a conditional expression around co_await: g++ 12 miscompiles those.)
  Task<std::optional<Block>> fetched = logs_only ? fetch_logs(std::move(request), "\"fromBlock\":" + n + ",\"toBlock\":" + n, "eth_getBlockByNumber")
                                                 : fetch(std::move(request), n, "eth_getBlockByNumber");
  auto block = co_await std::move(fetched);
  if (block && block->number != number) {
    ++rejected_;
    malformed(rpc_.endpoint(), "asked for block " + std::to_string(number) + ", got " + std::to_string(block->number));
  }
  co_return block;
}

Task<std::optional<Block>> BlockFetcher::by_hash(const schema::Hash32& hash) {
  const std::string h = quoted(schema::to_hex(hash));
  const bool logs_only = !log_filter_.empty();
  RpcRequest request{"eth_getBlockByHash", "[" + h + (logs_only ? ",false]" : ",true]")};
  Task<std::optional<Block>> fetched = logs_only ? fetch_logs(std::move(request), "\"blockHash\":" + h, "eth_getBlockByHash")
                                                 : fetch(std::move(request), h, "eth_getBlockByHash");
  auto block = co_await std::move(fetched);
  if (block && block->hash != hash) {
    ++rejected_;
    malformed(rpc_.endpoint(), "asked for block " + schema::to_hex(hash) + ", got " + schema::to_hex(block->hash));
  }
  co_return block;
}

Task<std::optional<Block>> BlockFetcher::complete(std::string block_json, const char* what, std::optional<std::string> receipts_json) {
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
  if (receipts_json && !block.transaction_hashes.empty()) {
    auto r = decode_receipts(*receipts_json);
    if (!r.ok()) {
      ++rejected_;
      malformed(rpc_.endpoint(), "eth_getBlockReceipts: " + r.error().message);
    }
    // Asked for by number in the same batch: the chain may have moved between the two answers.
    // Receipts of another block (or none) are not an error: they are asked for by hash below.
    if (r->has_value() && !(*r)->empty() && (**r)[0].block_hash == block.hash) {
      receipts = std::move(**r);
      have = true;
    }
  }
  if (!have && block_receipts_ && !block.transaction_hashes.empty()) {
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

Task<std::vector<std::optional<schema::BlockRef>>> BlockFetcher::headers_by_number(std::uint64_t first, std::uint64_t last) {
  std::vector<RpcRequest> requests;
  for (std::uint64_t n = first; n <= last; ++n)
    requests.push_back({"eth_getBlockByNumber", "[" + quoted(schema::to_quantity_hex(n)) + ",false]"});
  std::vector<RpcReply> replies = co_await rpc_.batch(std::move(requests));
  std::vector<std::optional<schema::BlockRef>> out;
  for (auto& reply : replies) {
    if (reply.error_code)
      throw RpcError(RpcError::Kind::kRpc, rpc_.endpoint() + ": eth_getBlockByNumber: " + reply.error_message, *reply.error_code);
    auto b = decode_block(reply.result);
    if (!b.ok()) malformed(rpc_.endpoint(), "eth_getBlockByNumber: " + b.error().message);
    if (b->has_value() && (*b)->number != first + out.size())
      malformed(rpc_.endpoint(), "eth_getBlockByNumber(" + std::to_string(first + out.size()) + ") answered block " + std::to_string((*b)->number));
    out.push_back(b->has_value() ? std::optional<schema::BlockRef>((*b)->ref()) : std::nullopt);
  }
  co_return out;
}

Task<std::optional<schema::BlockRef>> BlockFetcher::tagged_header(const std::string& tag) {
  RpcRequest request{"eth_getBlockByNumber", "[" + quoted(tag) + ",false]"};
  std::string json = co_await rpc_.call(std::move(request));
  auto b = decode_block(json);
  if (!b.ok()) malformed(rpc_.endpoint(), "eth_getBlockByNumber(" + tag + "): " + b.error().message);
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

#include "ingest/range_decode.hpp"

#include "ingest/attach_receipts.hpp"
#include "ingest/decode.hpp"
#include "ingest/header_hash.hpp"

namespace chainidx::ingest {

using schema::Error;

schema::Status check_block_body(const schema::Block& block, bool verify_hash) {
  if (verify_hash && header_hash(block) != block.hash)
    return Error{"block " + std::to_string(block.number) + ": header fields do not hash to the block hash " + schema::to_hex(block.hash)};
  if (block.transactions.size() != block.transaction_hashes.size())
    return Error{"block " + std::to_string(block.number) + ": transactions came back as hashes where full bodies were asked for"};
  return schema::Ok{};
}

schema::Result<std::vector<schema::Block>> decode_range_blocks(std::span<const RpcReply> replies, BlockRange range, bool verify_hash) {
  if (replies.size() != range.size())
    return Error{"eth_getBlockByNumber: " + std::to_string(replies.size()) + " answers for " + std::to_string(range.size()) + " blocks"};
  std::vector<schema::Block> blocks;
  blocks.reserve(replies.size());
  for (std::size_t i = 0; i < replies.size(); ++i) {
    const std::uint64_t number = range.first + i;
    auto decoded = decode_block(replies[i].result);
    if (!decoded.ok()) return Error{"eth_getBlockByNumber(" + std::to_string(number) + "): " + decoded.error().message};
    if (!decoded->has_value())
      return Error{"eth_getBlockByNumber(" + std::to_string(number) + "): null for a block at confirmed depth (a lagging node?)"};
    schema::Block& block = **decoded;
    if (block.number != number)
      return Error{"eth_getBlockByNumber: asked for block " + std::to_string(number) + ", got " + std::to_string(block.number)};
    if (auto s = check_block_body(block, verify_hash); !s.ok()) return s.error();
    if (!blocks.empty() && block.parent_hash != blocks.back().hash)
      return Error{"block " + std::to_string(number) + ": parentHash " + schema::to_hex(block.parent_hash) +
                   " is not the hash of block " + std::to_string(number - 1) + " in the same answer"};
    blocks.push_back(std::move(block));
  }
  return blocks;
}

schema::Status attach_block_receipts(std::vector<schema::Block>& blocks, std::span<const RpcReply> replies) {
  if (replies.size() != blocks.size()) return Error{"eth_getBlockReceipts: answers do not match the blocks"};
  for (std::size_t i = 0; i < blocks.size(); ++i) {
    auto r = decode_receipts(replies[i].result);
    if (!r.ok()) return Error{"eth_getBlockReceipts(" + std::to_string(blocks[i].number) + "): " + r.error().message};
    std::vector<Receipt> receipts;
    if (r->has_value()) receipts = std::move(**r);
    else if (!blocks[i].transaction_hashes.empty())
      return Error{"eth_getBlockReceipts(" + std::to_string(blocks[i].number) + "): null for a block at confirmed depth"};
    if (auto s = attach_receipts(blocks[i], std::move(receipts)); !s.ok())
      return Error{"block " + std::to_string(blocks[i].number) + ": " + s.error().message};
  }
  return schema::Ok{};
}

schema::Status attach_transaction_receipts(std::vector<schema::Block>& blocks, std::span<const RpcReply> replies) {
  std::size_t at = 0;
  for (auto& block : blocks) {
    std::vector<Receipt> receipts;
    for (std::size_t i = 0; i < block.transaction_hashes.size(); ++i, ++at) {
      if (at >= replies.size()) return Error{"eth_getTransactionReceipt: fewer answers than transactions"};
      auto r = decode_receipt(replies[at].result);
      if (!r.ok()) return Error{"eth_getTransactionReceipt(block " + std::to_string(block.number) + "): " + r.error().message};
      if (!r->has_value()) return Error{"eth_getTransactionReceipt(block " + std::to_string(block.number) + "): null at confirmed depth"};
      receipts.push_back(std::move(**r));
    }
    if (auto s = attach_receipts(block, std::move(receipts)); !s.ok())
      return Error{"block " + std::to_string(block.number) + ": " + s.error().message};
  }
  if (at != replies.size()) return Error{"eth_getTransactionReceipt: more answers than transactions"};
  return schema::Ok{};
}

}  // namespace chainidx::ingest

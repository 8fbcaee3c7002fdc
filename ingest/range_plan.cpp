#include "ingest/range_plan.hpp"

#include <algorithm>
#include <stdexcept>
#include <string>

namespace chainidx::ingest {

RangePlanner::RangePlanner(std::uint64_t first, std::uint64_t last) : next_(first), last_(first > last ? first - 1 : last) {}

std::optional<BlockRange> RangePlanner::next(std::uint64_t max_blocks, std::uint64_t start_limit) {
  max_blocks = std::max<std::uint64_t>(max_blocks, 1);
  if (!returned_.empty()) {
    auto it = returned_.begin();
    if (it->first > start_limit) return std::nullopt;
    BlockRange r{it->first, std::min(it->second, it->first + max_blocks - 1)};
    std::uint64_t rest_last = it->second;
    returned_.erase(it);
    if (r.last < rest_last) returned_.emplace(r.last + 1, rest_last);
    return r;
  }
  if (next_ > last_ || next_ > start_limit) return std::nullopt;
  BlockRange r{next_, std::min(last_, next_ + max_blocks - 1)};
  next_ = r.last + 1;
  return r;
}

void RangePlanner::give_back(BlockRange range) {
  if (range.first > range.last) return;
  // Merge with a neighbour given back before, so that the next asker gets one long range.
  auto it = returned_.lower_bound(range.first);
  if (it != returned_.end() && it->first == range.last + 1) {
    range.last = it->second;
    it = returned_.erase(it);
  }
  if (it != returned_.begin()) {
    auto before = std::prev(it);
    if (before->second + 1 == range.first) {
      before->second = range.last;
      return;
    }
  }
  returned_.emplace(range.first, range.last);
}

std::optional<std::uint64_t> RangePlanner::lowest_open() const {
  if (!returned_.empty()) return returned_.begin()->first;
  if (next_ <= last_) return next_;
  return std::nullopt;
}

ReorderWindow::ReorderWindow(std::uint64_t next, std::optional<schema::BlockRef> parent) : next_(next), parent_(std::move(parent)) {}

void ReorderWindow::insert(std::uint64_t first, Piece piece) {
  auto refuse = [&](const std::string& why) {
    throw std::logic_error("ReorderWindow::put: range " + std::to_string(first) + "-" + std::to_string(piece.last) + ": " + why);
  };
  if (first < next_) refuse("starts before the next block to give out, " + std::to_string(next_));
  auto after = pieces_.lower_bound(first);
  if (after != pieces_.end() && after->first <= piece.last) refuse("overlaps a range held");
  if (after != pieces_.begin() && std::prev(after)->second.last >= first) refuse("overlaps a range held");
  bytes_ += piece.bytes;
  pieces_.emplace(first, std::move(piece));
}

void ReorderWindow::put(std::vector<schema::Block> blocks, std::size_t bytes) {
  if (blocks.empty()) return;
  const std::uint64_t first = blocks.front().number;
  for (std::size_t i = 1; i < blocks.size(); ++i) {
    auto refuse = [&](const std::string& why) {
      throw std::logic_error("ReorderWindow::put: range " + std::to_string(first) + "-" + std::to_string(blocks.back().number) + ": " + why);
    };
    if (blocks[i].number != blocks[i - 1].number + 1) refuse("not contiguous");
    if (blocks[i].parent_hash != blocks[i - 1].hash) refuse("not linked inside itself at block " + std::to_string(blocks[i].number));
  }
  const std::uint64_t last = blocks.back().number;
  insert(first, Piece{std::move(blocks), 0, bytes, first, last, false});
}

void ReorderWindow::put_sparse(BlockRange range, std::vector<schema::Block> blocks, std::size_t bytes) {
  auto refuse = [&](const std::string& why) {
    throw std::logic_error("ReorderWindow::put_sparse: range " + std::to_string(range.first) + "-" + std::to_string(range.last) + ": " + why);
  };
  if (blocks.empty() || blocks.back().number != range.last) refuse("no block for its last number");
  for (std::size_t i = 0; i < blocks.size(); ++i) {
    if (blocks[i].number < range.first) refuse("a block below the range");
    if (i > 0 && blocks[i].number <= blocks[i - 1].number) refuse("blocks not ascending");
  }
  insert(range.first, Piece{std::move(blocks), 0, bytes, range.first, range.last, true});
}

std::size_t ReorderWindow::ready() const {
  std::size_t n = 0;
  std::uint64_t want = next_;
  for (const auto& [first, piece] : pieces_) {
    if (piece.start != want) break;
    n += piece.blocks.size() - piece.offset;
    want = piece.last + 1;
  }
  return n;
}

std::uint64_t ReorderWindow::ready_through() const {
  std::uint64_t want = next_;
  for (const auto& [first, piece] : pieces_) {
    if (piece.start != want) break;
    want = piece.last + 1;
  }
  return want - 1;
}

ReorderWindow::Taken ReorderWindow::take(std::size_t max_blocks) {
  Taken out;
  while (out.blocks.size() < max_blocks && !pieces_.empty() && pieces_.begin()->second.start == next_) {
    auto node = pieces_.begin();
    Piece& piece = node->second;
    const std::size_t remaining = piece.blocks.size() - piece.offset;
    schema::Block& block = piece.blocks[piece.offset];
    if (!piece.sparse && parent_ && block.parent_hash != parent_->hash) {
      out.broken = LinkBreak{block.number, parent_->hash, block.parent_hash, {block.number, piece.blocks.back().number}};
      bytes_ -= piece.bytes;
      pieces_.erase(node);
      break;
    }
    const std::size_t share = piece.bytes / remaining;
    piece.bytes -= share;
    bytes_ -= share;
    parent_ = block.ref();
    next_ = block.number + 1;
    piece.start = next_;
    out.blocks.push_back(std::move(block));
    if (++piece.offset == piece.blocks.size()) {
      bytes_ -= piece.bytes;
      pieces_.erase(node);
    }
  }
  return out;
}

}  // namespace chainidx::ingest

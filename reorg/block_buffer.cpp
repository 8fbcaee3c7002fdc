#include "reorg/block_buffer.hpp"

#include <cassert>
#include <utility>

namespace chainidx::reorg {

using schema::Block;
using schema::BlockRef;

BlockBuffer::BlockBuffer(BufferConfig config, std::optional<BlockRef> last_confirmed)
    : config_(config), confirmed_(std::move(last_confirmed)) {
  assert(config_.confirmations >= 1);
}

std::optional<BlockRef> BlockBuffer::tip() const {
  if (chain_.empty()) return std::nullopt;
  return chain_.back().ref();
}

std::uint64_t BlockBuffer::next_number() const {
  if (!chain_.empty()) return chain_.back().number + 1;
  if (confirmed_) return confirmed_->number + 1;
  return config_.start_block;
}

BlockBuffer::HeadResult BlockBuffer::on_head(const BlockRef& head) {
  if (halted()) return {};
  if (confirmed_ && head.number <= confirmed_->number) return {};
  if (!confirmed_ && head.number < config_.start_block) return {};
  if (auto it = index_.find(head.hash); it != index_.end()) {
    if (it->second == chain_.back().number) return {};
    std::size_t keep = static_cast<std::size_t>(it->second - chain_.front().number) + 1;
    std::uint64_t reverted = chain_.size() - keep;
    truncate_after(keep);
    pending_.clear();
    target_.reset();
    return {true, reverted};
  }
  // A head that extends the tip by one block buries the blocks below it as surely as its body
  // would: what it puts `confirmations` deep is confirmed now, before the body is fetched (the
  // live path's write need not wait for that round trip).
  if (!chain_.empty() && pending_.empty() && !suspect_ && head.number == chain_.back().number + 1 &&
      head.parent_hash == chain_.back().hash && head.number >= config_.confirmations)
    confirm_through(head.number - config_.confirmations);
  target_ = head;
  return {true, 0};
}

const Block* BlockBuffer::next_to_confirm() const {
  if (halted() || suspect_ || !pending_.empty() || chain_.empty() || chain_.size() < config_.confirmations) return nullptr;
  return &chain_.front();
}

std::optional<FetchRequest> BlockBuffer::next_fetch() const {
  if (halted()) return std::nullopt;
  if (suspect_) return FetchRequest{FetchRequest::Kind::kByNumber, confirmed_->number, {}};
  if (!pending_.empty()) {
    const Block& lowest = pending_.front();
    return FetchRequest{FetchRequest::Kind::kByHash, lowest.number - 1, lowest.parent_hash};
  }
  if (!target_) return std::nullopt;
  std::uint64_t next = next_number();
  if (target_->number > next) return FetchRequest{FetchRequest::Kind::kByNumber, next, {}};
  return FetchRequest{FetchRequest::Kind::kByHash, target_->number, target_->hash};
}

AddResult BlockBuffer::add_block(Block block) {
  using Kind = AddResult::Kind;
  if (halted()) return {Kind::kHalted};
  if (suspect_) {
    if (block.number != confirmed_->number) return {Kind::kUnexpected};
    BlockRef suspect = *std::exchange(suspect_, std::nullopt);
    if (block.hash == confirmed_->hash) return {Kind::kStaleBranch};
    deep_reorg_ = DeepReorg{*confirmed_, suspect};
    return {Kind::kDeepReorg};
  }
  if (contains(block.hash)) return {Kind::kDuplicate};
  if (!confirmed_ && block.number < config_.start_block) return {Kind::kUnexpected};
  if (!pending_.empty() && block.hash == pending_.front().parent_hash) {
    if (block.number + 1 != pending_.front().number) return {Kind::kUnexpected};
    pending_.push_front(std::move(block));
  } else {
    // A block that is not the parent we walk towards starts a new branch: the walk it replaces
    // came from an older head.
    pending_.clear();
    pending_.push_back(std::move(block));
  }
  return try_link();
}

AddResult BlockBuffer::try_link() {
  using Kind = AddResult::Kind;
  const Block& lowest = pending_.front();

  if (auto it = index_.find(lowest.parent_hash); it != index_.end()) {
    if (it->second + 1 != lowest.number) {
      pending_.clear();
      return {Kind::kUnexpected};
    }
    std::size_t keep = static_cast<std::size_t>(it->second - chain_.front().number) + 1;
    std::uint64_t reverted = chain_.size() - keep;
    truncate_after(keep);
    append_pending();
    return {reverted == 0 ? Kind::kLinked : Kind::kReorged, reverted};
  }

  bool links_to_cursor = confirmed_ ? lowest.parent_hash == confirmed_->hash && lowest.number == confirmed_->number + 1
                                    : lowest.number == config_.start_block;
  if (links_to_cursor) {
    std::uint64_t reverted = chain_.size();
    truncate_after(0);
    append_pending();
    return {reverted == 0 ? Kind::kLinked : Kind::kReorged, reverted};
  }

  if (confirmed_ && lowest.number <= confirmed_->number + 1) {
    // The branch needs a parent at or below the cursor other than the cursor itself: either the
    // head it came from is stale, or the chain reorganised below the cursor. The node's answer
    // for the cursor's number decides (see next_fetch()).
    suspect_ = lowest.ref();
    pending_.clear();
    target_.reset();
    return {Kind::kVerifyingCursor};
  }
  return {Kind::kNeedsAncestor};
}

void BlockBuffer::truncate_after(std::size_t keep) {
  while (chain_.size() > keep) {
    index_.erase(chain_.back().hash);
    chain_.pop_back();
  }
}

void BlockBuffer::append_pending() {
  for (auto& b : pending_) {
    index_.emplace(b.hash, b.number);
    chain_.push_back(std::move(b));
  }
  pending_.clear();
  if (target_ && contains(target_->hash)) target_.reset();
  confirm();
}

void BlockBuffer::confirm() {
  const std::uint64_t tip_number = chain_.back().number;
  if (tip_number >= config_.confirmations) confirm_through(tip_number - config_.confirmations);
}

void BlockBuffer::confirm_through(std::uint64_t last) {
  while (!chain_.empty() && chain_.front().number <= last) {
    Block& b = chain_.front();
    assert(!confirmed_ || b.parent_hash == confirmed_->hash);
    confirmed_ = b.ref();
    index_.erase(b.hash);
    ready_.push_back(std::move(b));
    chain_.pop_front();
  }
}

bool BlockBuffer::on_final(const schema::BlockRef& final) {
  if (deep_reorg_) return false;
  if (confirmed_ && final.number <= confirmed_->number) return true;
  if (!contains(final.hash)) return false;
  confirm_through(final.number);
  return true;
}

void BlockBuffer::on_fetch_missing(const FetchRequest& request) {
  if (suspect_) {
    // The node lacks the cursor's number: it lags behind us, so its branch is no evidence.
    suspect_.reset();
    return;
  }
  if (!pending_.empty() && request.kind == FetchRequest::Kind::kByHash && request.hash == pending_.front().parent_hash) {
    pending_.clear();
    return;
  }
  target_.reset();
}

std::vector<Block> BlockBuffer::take_confirmed() { return std::exchange(ready_, {}); }

}  // namespace chainidx::reorg

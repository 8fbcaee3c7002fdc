#pragma once
// BlockBuffer: the reorg-aware window of unconfirmed blocks between the last confirmed block
// and the node's head. Pure logic: it does no I/O and reads no clock. The caller feeds it heads
// and the blocks it asks for, and takes confirmed blocks out.
//
//   confirmed ─┐
//   (cursor)   ▼
//      ... ── C ──  chain_: U1 ── U2 ── ... ── Un   (linked by parent_hash; Un is the tip)
//                                    └── P1 ── P2   pending_: a branch being walked back by
//                                                   hash from a newer head until it links
//
// The node's latest head is canonical. A head the buffer cannot link yet becomes its target:
// next_fetch() asks for blocks by number while the target is ahead of the tip (a gap) and by
// hash while walking back a branch whose parent is unknown (a reorg). When a branch links to
// a block in chain_, the blocks after that point are dropped (reverted) and the branch becomes
// the chain. A block is confirmed, moved out in order and exactly once, when
// tip.number >= number + confirmations, or as soon as a head whose parent is the tip arrives
// with head.number >= number + confirmations (before its body is fetched). A branch that can
// only link below the last confirmed block is either stale (a lagging provider's old head) or a
// deep reorg; the buffer asks for the cursor's block by number to tell which. A deep reorg is reported and halts the buffer (the
// only policy so far).
//
// Memory: chain_ holds at most confirmations blocks past the cursor, pending_ at most
// confirmations + 1 (a walk back starts at most one block past the tip).

#include <cstdint>
#include <deque>
#include <optional>
#include <unordered_map>
#include <vector>

#include "schema/block.hpp"

namespace chainidx::reorg {

struct BufferConfig {
  std::uint64_t confirmations = 12;  ///< >= 1
  std::uint64_t start_block = 0;     ///< first block to index when there is no cursor
};

/// What the buffer needs the caller to fetch next.
struct FetchRequest {
  enum class Kind { kByNumber, kByHash };
  Kind kind = Kind::kByNumber;
  std::uint64_t number = 0;  ///< kByNumber: the block number; kByHash: the expected number
  schema::Hash32 hash;       ///< kByHash only

  bool operator==(const FetchRequest&) const = default;
};

/// A branch that cannot link without replacing an already-confirmed block.
struct DeepReorg {
  schema::BlockRef last_confirmed;  ///< the cursor the new branch does not descend from
  schema::BlockRef branch_block;    ///< the lowest block of the new branch we fetched
};

struct AddResult {
  enum class Kind {
    kLinked,         ///< extended the chain (possibly completing a walk back) with no revert
    kReorged,        ///< linked, replacing `reverted` blocks of the previous chain
    kNeedsAncestor,  ///< kept as part of a branch; next_fetch() asks for its parent
    kDuplicate,      ///< already in the chain; nothing changed
    kUnexpected,     ///< not what was asked for (wrong number for a parent, below start_block); dropped
    kVerifyingCursor,  ///< a branch forks below the cursor; next_fetch() asks the node for the
                       ///< cursor's block by number to tell a deep reorg from a stale branch
    kStaleBranch,    ///< the cursor is still canonical: the branch came from a stale head; dropped
    kDeepReorg,      ///< see deep_reorg(); the buffer is halted
    kHalted,         ///< the buffer halted earlier; nothing changed
  };
  Kind kind = Kind::kLinked;
  std::uint64_t reverted = 0;
};

class BlockBuffer {
 public:
  /// `last_confirmed` is the cursor of an earlier run, or nullopt on the first run.
  BlockBuffer(BufferConfig config, std::optional<schema::BlockRef> last_confirmed);

  /// Tells the buffer about the node's latest head. The head is ignored when it is the tip
  /// already, at or below the last confirmed block (a stale or lagging head), or below
  /// start_block. A head that is a block of the chain below the tip rolls the chain back to it
  /// (the node's latest head is canonical). Returns whether the head changed anything.
  struct HeadResult {
    bool accepted = false;
    std::uint64_t reverted = 0;  ///< blocks dropped by a roll back to a known block
  };
  HeadResult on_head(const schema::BlockRef& head);

  /// The block that a head extending the tip by one would confirm (the oldest unconfirmed block,
  /// when the chain holds `confirmations` of them), or nullptr. The live writer stages its write
  /// ahead of that head. Valid until the next call that changes the buffer.
  const schema::Block* next_to_confirm() const;

  /// The block the buffer needs next, or nullopt when it is up to date with the latest head.
  std::optional<FetchRequest> next_fetch() const;

  /// Adds a fetched block (the answer to next_fetch(), or any block of the head's chain).
  AddResult add_block(schema::Block block);

  /// The node could not serve `request` (unknown hash or number): the head or branch it came
  /// from is stale. The buffer drops that branch / target and waits for the next head.
  void on_fetch_missing(const FetchRequest& request);

  /// Confirmation by the node's tag (chain.confirmations = "safe" / "finalized"): `final` is the
  /// node's safe or finalized block. When it is a block of the chain, it and every block below it
  /// are confirmed. True when it was (or was confirmed already); false when the chain does not
  /// hold it (not fetched yet, or another branch): nothing changes.
  bool on_final(const schema::BlockRef& final);

  /// Moves out the blocks confirmed since the last call, in ascending order.
  std::vector<schema::Block> take_confirmed();

  /// The last block confirmed (taken or not), or the initial cursor.
  const std::optional<schema::BlockRef>& last_confirmed() const { return confirmed_; }
  /// The newest block of the chain, or nullopt when nothing unconfirmed is held.
  std::optional<schema::BlockRef> tip() const;
  std::size_t unconfirmed_size() const { return chain_.size(); }
  std::size_t pending_size() const { return pending_.size(); }
  bool halted() const { return deep_reorg_.has_value(); }
  const std::optional<DeepReorg>& deep_reorg() const { return deep_reorg_; }

 private:
  std::uint64_t next_number() const;
  bool contains(const schema::Hash32& hash) const { return index_.contains(hash); }
  AddResult try_link();
  void append_pending();
  void truncate_after(std::size_t keep);
  void confirm();
  void confirm_through(std::uint64_t last);  // moves the chain's blocks up to `last` out, in order

  BufferConfig config_;
  std::optional<schema::BlockRef> confirmed_;
  std::optional<schema::BlockRef> target_;
  std::deque<schema::Block> chain_;
  std::deque<schema::Block> pending_;  // ascending; pending_.back() is the newest
  std::unordered_map<schema::Hash32, std::uint64_t, schema::FixedBytesHash> index_;  // chain_ only
  std::vector<schema::Block> ready_;
  std::optional<DeepReorg> deep_reorg_;
  std::optional<schema::BlockRef> suspect_;  // lowest block of a branch forking below the cursor
};

}  // namespace chainidx::reorg

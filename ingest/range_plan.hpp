#pragma once
// The pure half of history: which block ranges to fetch next, and how fetched ranges (which come
// back in any order, from several endpoints) are put back in block order with their parent
// links checked. No I/O, no clock: the range engine drives both and tests step them by hand.

#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <vector>

#include "schema/block.hpp"

namespace chainidx::ingest {

/// Blocks first..last, both included.
struct BlockRange {
  std::uint64_t first = 0;
  std::uint64_t last = 0;
  std::uint64_t size() const { return last - first + 1; }
  bool operator==(const BlockRange&) const = default;
};

/// Cuts first..last into ranges of at most the asker's batch size, lowest first. A range that
/// failed is given back and handed out again before anything new, split if the next asker takes
/// smaller batches.
class RangePlanner {
 public:
  /// Nothing to plan when first > last.
  RangePlanner(std::uint64_t first, std::uint64_t last);

  /// The lowest range not handed out, at most `max_blocks` long and not starting after
  /// `start_limit` (how far ahead of the writer the caller lets fetches run). nullopt when there
  /// is none within the limit.
  std::optional<BlockRange> next(std::uint64_t max_blocks, std::uint64_t start_limit);
  /// A range handed out earlier that was not fetched: it goes out again first.
  void give_back(BlockRange range);
  /// The lowest block not handed out, if any (a given-back range counts).
  std::optional<std::uint64_t> lowest_open() const;
  /// Every block has been handed out (and none given back since).
  bool exhausted() const { return returned_.empty() && next_ > last_; }

 private:
  std::uint64_t next_;
  std::uint64_t last_;
  std::map<std::uint64_t, std::uint64_t> returned_;  // first -> last
};

/// A parent link that does not hold: block `number`'s parent_hash is not the hash of the block
/// before it (the cursor, or the last block taken out).
struct LinkBreak {
  std::uint64_t number = 0;
  schema::Hash32 expected_parent;  ///< the hash of block number - 1 as already taken out
  schema::Hash32 parent_hash;      ///< what block `number` names as its parent
  BlockRange dropped;              ///< the blocks thrown away with it: fetch them again
};

/// Holds fetched ranges until the blocks before them have arrived, then gives blocks out in
/// order, each checked to be the child of the one before (the first against the cursor).
/// Counts the bytes it holds, so that the caller can bound them.
class ReorderWindow {
 public:
  /// `next` is the first block to give out; `parent` the block before it (the cursor), when
  /// there is one to link to.
  ReorderWindow(std::uint64_t next, std::optional<schema::BlockRef> parent);

  /// A fetched range: ascending, contiguous, linked inside itself, starting at or after
  /// next() and overlapping nothing held. `bytes` is what it costs to hold (its share of the
  /// fetched answer). Throws std::logic_error when the range breaks these rules.
  void put(std::vector<schema::Block> blocks, std::size_t bytes);
  /// A range fetched by its logs alone (logs-only history): the sparse blocks that have logs,
  /// ascending, within `range`, and always one for range.last (its header: the cursor needs its
  /// hash). No link is checked; taking it moves next() past range.last.
  void put_sparse(BlockRange range, std::vector<schema::Block> blocks, std::size_t bytes);

  struct Taken {
    std::vector<schema::Block> blocks;  ///< in order, linked
    std::optional<LinkBreak> broken;    ///< set when taking stopped at a break
  };
  /// Moves out up to `max_blocks` blocks from next() on, stopping at a missing block or at a
  /// block that does not link; such a block and the rest of its range are dropped and named in
  /// `broken`, to be fetched again.
  Taken take(std::size_t max_blocks);

  /// How many blocks take() could give out now without a gap (links not yet checked).
  std::size_t ready() const;
  /// The last block number those ready() blocks reach (a sparse range counts to its end);
  /// next() - 1 when none is ready.
  std::uint64_t ready_through() const;
  std::uint64_t next() const { return next_; }
  /// The block before next(): the last one taken, or the cursor.
  const std::optional<schema::BlockRef>& parent() const { return parent_; }
  std::size_t bytes() const { return bytes_; }
  bool empty() const { return pieces_.empty(); }

 private:
  struct Piece {
    std::vector<schema::Block> blocks;
    std::size_t offset = 0;  // blocks before it were taken out
    std::size_t bytes = 0;   // what the remaining blocks cost
    std::uint64_t start = 0;  // the number the piece goes on from (the next block to give out)
    std::uint64_t last = 0;   // the last number it covers
    bool sparse = false;      // logs-only: numbers between its blocks are covered too, unlinked
  };
  void insert(std::uint64_t first, Piece piece);
  std::uint64_t next_;
  std::optional<schema::BlockRef> parent_;
  std::map<std::uint64_t, Piece> pieces_;  // by first block number covered; only the first piece has an offset
  std::size_t bytes_ = 0;
};

}  // namespace chainidx::ingest

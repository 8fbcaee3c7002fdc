#pragma once
// The range engine: fetches a range of confirmed-depth blocks from every endpoint of the pool at
// once and hands them to a writer in block order, in batches, each linked to the one before.
//
//   RangePlanner ─► workers (per endpoint: max_in_flight, each one JSON-RPC batch of
//     eth_getBlockByNumber(n, true) + eth_getBlockReceipts(n) per range) ─► decode workers
//     (a thread pool) ─► ReorderWindow (order, parent links) ─► writer (the caller's Write)
//
// While the writer writes batch N, later ranges are fetched and decoded. What is fetched and not
// yet written is bounded in bytes (RangeOptions::buffer_bytes), however long the range.

#include <boost/asio/any_io_executor.hpp>

#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <stdexcept>
#include <vector>

#include "ingest/endpoint_pool.hpp"
#include "ingest/range_plan.hpp"
#include "schema/block.hpp"

namespace chainidx::ingest {

struct RangeOptions {
  std::uint64_t batch_blocks = 50;           ///< blocks per JSON-RPC batch (lowered for big answers or a refusing provider)
  std::size_t target_answer_bytes = 8 << 20;  ///< a batch's answer above this halves the batch
  std::size_t buffer_bytes = 64 << 20;        ///< fetched and not yet written, at most (about)
  std::size_t write_blocks = 100;             ///< blocks per Write call, at most
  std::chrono::milliseconds max_write_delay{2000};  ///< a fetched block waits at most this long for its batch to fill
  std::size_t decode_threads = 0;             ///< 0: one per core
  unsigned link_retries = 3;                  ///< refetches of a block that does not link before the node is asked
  bool terminal_progress = false;             ///< a progress line on standard error (a terminal), redrawn every second
  /// Called for every block once it is complete (logs and receipts attached), on a decoding
  /// thread, before it is handed on: the app's decoding of contract events. Thread-safe.
  std::function<void(schema::Block&)> enrich;

  /// Logs-only history (chain.index = "events"): each range is one eth_getLogs over these
  /// addresses and topic0s (any topic when empty) plus its last block's header, and gives sparse
  /// blocks (schema::Block::sparse): those with logs, and the last one. Its width starts at
  /// `initial_blocks` per endpoint, is cut to what a provider's refusal says (log_range.hpp)
  /// and grows back after small answers, never past `max_blocks`.
  struct Logs {
    std::vector<schema::Address> addresses;
    std::vector<schema::Hash32> topic0s;
    std::uint64_t initial_blocks = 2000;
    std::uint64_t max_blocks = 100000;
  };
  std::optional<Logs> logs;
};

/// The node's chain no longer holds a block already handed to the writer (or the cursor): a
/// reorg deeper than the confirmations.
class RangeDeepReorg : public std::runtime_error {
 public:
  RangeDeepReorg(schema::BlockRef ours, schema::BlockRef nodes, const std::string& message)
      : std::runtime_error(message), ours_(ours), nodes_(nodes) {}
  const schema::BlockRef& ours() const { return ours_; }
  const schema::BlockRef& nodes() const { return nodes_; }

 private:
  schema::BlockRef ours_;
  schema::BlockRef nodes_;
};

class RangeFetcher {
 public:
  /// Stores a batch (ascending, linked) or throws; the range engine stops on a throw.
  using Write = std::function<Task<void>(std::vector<schema::Block>)>;

  RangeFetcher(boost::asio::any_io_executor executor, EndpointPool& pool, RangeOptions options);
  ~RangeFetcher();

  /// Fetches first..last and writes them in order, the first linked to `cursor` (when given).
  /// Returns the last block written (or `cursor`), early when a stop was requested. Throws
  /// PoolError, RangeDeepReorg, or what `write` throws.
  Task<std::optional<schema::BlockRef>> run(std::uint64_t first, std::uint64_t last, std::optional<schema::BlockRef> cursor,
                                            Write write);

  /// One piece of a job of several ranges: first..last, the first block linked to `parent` when
  /// given (segments need not be adjacent).
  struct Segment {
    std::uint64_t first = 0;
    std::uint64_t last = 0;
    std::optional<schema::BlockRef> parent;
  };
  /// The job's next segment, or nullopt when there is none (or a stop was requested). Asked for
  /// once every range of the segment before it has been handed out, so that fetching runs on
  /// into it while the last batches of that one are decoded and written: one engine for the
  /// whole job, with no drain between segments.
  using NextSegment = std::function<Task<std::optional<Segment>>()>;
  /// Every block of a segment has been written (called in segment order, after its last write).
  using SegmentDone = std::function<Task<void>(const Segment&)>;

  /// Runs segments from `next` until it has no more, writing each one's blocks in order
  /// (segments in the order `next` gave them). `overall` is what the progress line counts
  /// against. Returns the last block written. Throws as run() does, or what `next` and `done` throw.
  Task<std::optional<schema::BlockRef>> run_segments(BlockRange overall, NextSegment next, Write write, SegmentDone done);
  /// Stops taking ranges; run() returns once the fetches and the write in progress end.
  void request_stop();
  /// The run in progress is stopping (asked to, or because something failed).
  bool stop_requested() const;
  /// See RangeOptions::terminal_progress.
  void set_terminal_progress(bool on);

  struct Stats {
    std::uint64_t blocks = 0;        ///< written
    std::uint64_t logs = 0;
    std::uint64_t transactions = 0;
    std::uint64_t answer_bytes = 0;  ///< JSON received
    std::uint64_t batches = 0;       ///< JSON-RPC batches answered
    std::uint64_t refetches = 0;     ///< ranges fetched again (failures, link breaks)
  };
  const Stats& stats() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace chainidx::ingest

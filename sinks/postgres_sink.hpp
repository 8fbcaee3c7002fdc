#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "schema/events.hpp"
#include "sinks/sink.hpp"

namespace chainidx::sinks {

/// Writes blocks, transactions and logs into the chain's schema with COPY, and moves the cursor
/// in the same transaction (invariant 2). Also the checkpoint store. libpqxx stays in the .cpp.
class PostgresSink final : public Sink, public CheckpointStore {
 public:
  /// `url` is a libpq connection URI; `schema_name` a validated identifier (the chain's name).
  PostgresSink(std::string url, std::string schema_name);
  ~PostgresSink() override;

  /// The configured contracts' event tables: every write stores the blocks' decoded events in
  /// them and undecodable logs in `undecodable`. Call before migrate().
  void set_event_tables(std::vector<schema::EventTable> tables);
  /// chain.raw_logs = false: the blocks' logs are not copied into `logs` (their decoded events
  /// and undecodable logs still are written). On by default.
  void set_raw_logs(bool write);

  /// Creates the schema and applies the migrations it lacks, each in its own transaction,
  /// under an advisory lock so that two starting indexers do not race; then makes the event
  /// tables that do not exist yet, and refuses (kRefused) a table that was made for other
  /// columns than the ABI gives now. Throws SinkError.
  void migrate();

  /// Leader election between `chainidx run` processes of one chain, on this sink's own session
  /// (use a PostgresSink for nothing else: its session holds the lock). The leader holds a
  /// session advisory lock and a lease in the writer row, renewed by renew_leadership(); each
  /// takeover raises the row's epoch by one.
  struct Leadership {
    std::string instance;  ///< who leads ("" when nobody ever led)
    std::string host;
    int pid = 0;
    std::int64_t epoch = 0;
    double lease_left_seconds = 0;  ///< negative once the lease ran out
    bool ours = false;              ///< this instance leads, with `epoch`
  };
  /// One attempt to lead: takes the lock when it is free, or when the leader's lease ran out
  /// after terminating the leader's sessions (its lease session and every session it writes on,
  /// so that a paused leader's open transactions let their locks go). On success the writer
  /// row names this instance under a new epoch. Otherwise who leads. `instance` is unique per
  /// process; `host` and `pid` are for other instances' messages. Throws SinkError (kFenced
  /// when this instance led before, lost its session, and another instance leads now).
  Leadership try_lead(const std::string& instance, const std::string& host, int pid, std::chrono::seconds lease);
  /// Extends the lease of a leader; after a lost session, takes the lock again first. kFenced
  /// when another instance leads now; kRetryable on database trouble (try again).
  void renew_leadership(std::chrono::seconds lease);

  /// Makes every cursor-advancing write and check_writer() of this sink check that `instance`
  /// with `epoch` still leads (kFenced otherwise), and tags the sessions it writes on so that
  /// the next leader can terminate them.
  void write_as(const std::string& instance, std::int64_t epoch);
  void check_writer() override;

  std::string_view name() const override { return "postgres"; }
  /// Throws SinkError: kRetryable on database trouble, kRefused when the server refuses the
  /// data itself (the message names the block, table, column and the server's words), kFenced
  /// when another instance has claimed the chain. std::logic_error when the batch does not
  /// continue the stored cursor (a bug upstream: nothing is written).
  void write(std::span<const schema::Block> blocks) override;
  /// write() in two steps, so that the rows can be copied while another sink writes the batch:
  /// prepare() does all of it (writer check, cursor lock, COPY, cursor row) but the commit and
  /// keeps the transaction open; commit_prepared() commits it; abort_prepared() rolls it back.
  /// Errors as write(). A batch already written (a retry after a commit whose answer was lost)
  /// prepares nothing, and its commit does nothing.
  void prepare(std::span<const schema::Block> blocks);
  void commit_prepared();
  void abort_prepared() noexcept;
  std::optional<schema::BlockRef> load_cursor() override;
  std::vector<std::pair<schema::Address, std::uint64_t>> addresses_in(const std::string& table, const std::string& column) override;

  /// A replay's claim on a chunk of its range, renewed by every write_range() of the chunk.
  struct Lease {
    std::string job;
    std::uint64_t first_block = 0;
    std::uint64_t last_block = 0;
    std::string worker;
    int seconds = 60;
  };
  /// Replaces blocks (ascending, linked) and their rows, whatever is stored for those numbers,
  /// in one transaction: a replay of indexed history changes nothing, a replay of a gap fills it,
  /// a replay over rows of another branch rewrites them. Never writes above the cursor (kRefused);
  /// when the batch holds the cursor's number, the cursor moves to this batch's block there. With
  /// `lease`, renews it in the same transaction and fails with kFenced when it was lost.
  void write_range(std::span<const schema::Block> blocks, const Lease* lease);
  /// The stored block `number` (hash and parent), if any.
  std::optional<schema::BlockRef> stored_block(std::uint64_t number);
  /// Creates the chunks of job first..last (chunk_blocks each) unless they exist; idempotent.
  void plan_replay(const std::string& job, std::uint64_t first, std::uint64_t last, std::uint64_t chunk_blocks);
  /// Claims the lowest chunk of `job` that is not done and not leased (FOR UPDATE SKIP LOCKED).
  /// With `in_order`, only the lowest chunk that is not done, and only when no worker holds it:
  /// one chunk at a time, each after every chunk below it is done (factory-made contracts need
  /// the addresses the chunks below made).
  std::optional<Lease> claim_chunk(const std::string& job, const std::string& worker, int lease_seconds, bool in_order = false);
  /// Extends a claimed chunk's lease (kFenced when it was lost): for a chunk claimed ahead of
  /// the one being written, and for replays that write no rows.
  void renew_lease(const Lease& lease);
  /// Marks a claimed chunk done (kFenced when the lease was lost).
  void finish_chunk(const Lease& lease);
  /// Chunks of `job`: done and in all.
  std::pair<std::uint64_t, std::uint64_t> replay_progress(const std::string& job);

  /// One replay job as its chunks tell it.
  struct ReplayJob {
    std::string job;  ///< "FROM-TO"
    std::uint64_t first_block = 0, last_block = 0;
    std::uint64_t chunks = 0, chunks_done = 0;
    std::uint64_t blocks = 0, blocks_done = 0;
    std::uint64_t chunks_leased = 0;  ///< not done, with a lease not yet run out: a worker is on them
    std::string workers;              ///< the workers that held its chunks, comma-separated
    std::int64_t finished_at = 0;     ///< unix seconds of the last chunk done, once all are (0: not yet)
  };
  /// Every replay job in the chunk table, newest range first.
  std::vector<ReplayJob> replay_jobs();

 private:
  struct Impl;
  void renew_once(std::chrono::seconds lease);
  std::unique_ptr<Impl> impl_;
};

}  // namespace chainidx::sinks

#pragma once

#include <boost/asio/io_context.hpp>

#include <memory>
#include <vector>

#include "app/config.hpp"
#include "ingest/task.hpp"
#include "sinks/postgres_sink.hpp"
#include "sinks/sink.hpp"

namespace chainidx::app {

struct LiveStatus;
class Metrics;

/// Process exit codes of `chainidx run`.
enum ExitCode : int {
  kExitOk = 0,
  kExitFatal = 1,
  kExitConfig = 2,
  kExitDeepReorg = 3,
  kExitChainIdMismatch = 4,
  /// Stopped by SIGINT/SIGTERM while a confirmed batch could not be committed (a sink was
  /// down): the log names the blocks left for the next start.
  kExitStoppedUncommitted = 5,
  /// Another instance took over this chain's output (Kafka fenced the producer, or a newer
  /// writer claim in Postgres). Nothing more was written.
  kExitFenced = 6,
  /// A sink refused data in a way no retry can fix (a Postgres data or schema error): the log
  /// names the block, the table, the column and the database's message.
  kExitSinkRefused = 7,
  /// Every endpoint refused the same request in a way no retry can fix (e.g. a method none of
  /// them serves): the log names the request and each endpoint's answer.
  kExitEndpointsRefused = 8,
  /// A block failed validation on every endpoint, chain.undecodable_after_rounds times: the log
  /// names the block, each endpoint's answer and the field. The block is never skipped.
  kExitUndecodable = 9,
  /// `chainidx replay` refused the range as asked: above head - confirmations or above the live
  /// cursor, or it would not link to the stored blocks around it. The message names the range to
  /// ask for instead. Nothing was written.
  kExitReplayRefused = 10,
};

/// One `chainidx replay` process's part of a replay job.
struct ReplayRequest {
  std::uint64_t first = 0;
  std::uint64_t last = 0;
  std::uint64_t chunk_blocks = 1000;  ///< the unit of work sharing and of resuming
  int lease_seconds = 60;             ///< a chunk whose worker stopped renewing goes to another after this
  std::string worker;                 ///< this process's name in the chunk table
  bool write_postgres = true;         ///< rows too (chunks and progress are kept in Postgres either way)
  std::string job() const { return std::to_string(first) + "-" + std::to_string(last); }
};

/// heads → fetcher → BlockBuffer → sinks, for one chain. Runs on one io_context thread; sink
/// writes (blocking libraries) run on a worker thread and the coroutine resumes on the io thread.
class Pipeline {
 public:
  /// `sinks` are written in order for every confirmed batch; the last one must be the
  /// checkpoint store's sink (Postgres), so its cursor never passes a block another sink lacks.
  Pipeline(boost::asio::io_context& io, Config config, std::vector<sinks::Sink*> sinks, sinks::CheckpointStore& checkpoints);
  ~Pipeline();

  /// Runs until request_stop() or a fatal condition; returns an ExitCode.
  ingest::Task<int> run();

  /// Replays request.first..last through the range engine: claims the job's chunks from
  /// `postgres` one after another (sharing them with other replay processes), writes each to the
  /// sinks given at construction and then, with write_postgres, to `postgres`'s idempotent range
  /// write. Never writes above the live cursor; moves the cursor's hash when a chunk holds it
  /// (repair after a deep-reorg halt). Returns an ExitCode.
  ingest::Task<int> replay(ReplayRequest request, sinks::PostgresSink& postgres);

  /// Keeps `status` (for the probes and /status) and `metrics` up to date from now on; both must
  /// outlive the pipeline's run. Call before run(), on the io thread.
  void observe(LiveStatus& status, Metrics& metrics);

  /// Stop taking heads, finish the batch in flight, return. Call on the io thread.
  void request_stop();

  /// Another instance leads the chain now (`reason` says who): stop as request_stop() does and
  /// make run() return kExitFenced. The batch in flight cannot land: its Postgres transaction
  /// fails the epoch check and the new leader's producer has fenced this one's. Io thread.
  void fence(const std::string& reason);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace chainidx::app

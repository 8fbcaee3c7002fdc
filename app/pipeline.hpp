#pragma once

#include <boost/asio/io_context.hpp>

#include <memory>
#include <vector>

#include "app/config.hpp"
#include "ingest/task.hpp"
#include "sinks/sink.hpp"

namespace chainidx::app {

/// Process exit codes of `chainidx run`.
enum ExitCode : int {
  kExitOk = 0,
  kExitFatal = 1,
  kExitConfig = 2,
  kExitDeepReorg = 3,
  kExitChainIdMismatch = 4,
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

  /// Stop taking heads, finish the batch in flight, return. Call on the io thread.
  void request_stop();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace chainidx::app

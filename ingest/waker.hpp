#pragma once
// Coroutines on one executor waiting for "something changed" or for a time, woken all at once.
// Each waiter has its own timer, so a wake-up never races a new wait.

#include <boost/asio/any_io_executor.hpp>

#include <chrono>
#include <optional>
#include <vector>

#include "ingest/task.hpp"

namespace chainidx::ingest {

class Waker {
 public:
  explicit Waker(boost::asio::any_io_executor executor) : executor_(std::move(executor)) {}
  /// Returns after `timeout` (never, when nullopt) or at the next wake_all(), whichever is first.
  Task<void> wait(std::optional<std::chrono::steady_clock::duration> timeout = std::nullopt);
  /// Ends every wait in progress.
  void wake_all();
  std::size_t waiting() const { return waiting_.size(); }

 private:
  struct Waiter;
  boost::asio::any_io_executor executor_;
  std::vector<Waiter*> waiting_;
};

}  // namespace chainidx::ingest

#pragma once

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>

#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "ingest/backoff.hpp"
#include "ingest/task.hpp"
#include "schema/block.hpp"

namespace chainidx::ingest {

/// Follows the chain head over WebSocket (eth_subscribe newHeads) across several endpoints.
/// Heartbeats: WebSocket pings on an idle connection, and a stall timer that drops a connection
/// that delivered no head for `stall_timeout` (a socket can stay open with a dead node behind
/// it). On any trouble it backs off and moves to the next endpoint; the backoff resets on the
/// first good head, not on connect. Beast stays in the .cpp.
class HeadSubscriber {
 public:
  struct Options {
    std::chrono::milliseconds stall_timeout{60000};
    std::chrono::milliseconds handshake_timeout{10000};
    BackoffPolicy backoff{};
  };
  using OnHead = std::function<void(const schema::BlockRef&)>;

  HeadSubscriber(boost::asio::any_io_executor executor, std::vector<std::string> ws_urls, Options options, OnHead on_head);
  ~HeadSubscriber();

  /// Runs until stop(). Never throws for network trouble: that is logged, counted and retried.
  boost::asio::awaitable<void> run();

  /// Makes run() return soon: closes the current socket and cuts a backoff short. Explicit
  /// rather than through Asio's per-operation cancellation, which Beast's websocket read does
  /// not honour in Boost 1.81. Call on the executor's thread.
  void stop();

  std::uint64_t reconnects() const;
  std::uint64_t heads_received() const;
  std::uint64_t malformed_messages() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace chainidx::ingest

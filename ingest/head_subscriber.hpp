#pragma once

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>

#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "ingest/backoff.hpp"
#include "ingest/task.hpp"
#include "schema/block.hpp"

namespace chainidx::ingest {

/// Follows the chain head over WebSocket (eth_subscribe newHeads) across several endpoints.
/// Liveness, two ways: Beast's keep-alive pings (a ping after `ping_interval` without a frame; a
/// socket that answers nothing for twice that is dead, however long the chain's block interval),
/// and beside it a head-stall timer that drops a connection that answers pings but delivered no
/// head for `stall_timeout` (a node that stopped following the chain). On any trouble it backs
/// off and moves to the next endpoint; the backoff resets once a subscription is confirmed and
/// answering, not on a mere connect. Beast stays in the .cpp.
class HeadSubscriber {
 public:
  struct Options {
    std::chrono::milliseconds stall_timeout{60000};
    std::chrono::milliseconds handshake_timeout{10000};  ///< connect, TLS, upgrade and the subscription's answer
    std::chrono::milliseconds ping_interval{10000};
    BackoffPolicy backoff{};
    /// A live connection dropped for bringing no usable heads: the stall watchdog fired, or the
    /// caller dropped it (stale, lagging). Called on the executor's thread.
    std::function<void()> on_stall;
  };
  struct Endpoint {
    std::string url;
    std::string name;  ///< for logs; empty: endpoint_label(url)
  };
  using OnHead = std::function<void(const schema::BlockRef&)>;
  /// A subscription became live on endpoint i (its index in the list), or ended (nullopt).
  using OnSubscription = std::function<void(std::optional<std::size_t>)>;

  HeadSubscriber(boost::asio::any_io_executor executor, std::vector<Endpoint> endpoints, Options options, OnHead on_head);
  ~HeadSubscriber();

  /// Runs until stop(). Never throws for network trouble: that is logged, counted and retried.
  boost::asio::awaitable<void> run();

  /// Makes run() return soon: closes the current socket and cuts a backoff short. Explicit
  /// rather than through Asio's per-operation cancellation, which Beast's websocket read does
  /// not honour in Boost 1.81. Call on the executor's thread.
  void stop();

  /// Drops the live subscription now (it is stale, or its endpoint lags) and moves on to the next
  /// endpoint; `reason` is logged as the reconnect's reason. Call on the executor's thread.
  void drop(std::string reason);

  /// The endpoint whose subscription is live (confirmed by the node), if any.
  std::optional<std::size_t> live_endpoint() const;
  void set_on_subscription(OnSubscription f);

  std::uint64_t reconnects() const;
  std::uint64_t heads_received() const;
  std::uint64_t malformed_messages() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace chainidx::ingest

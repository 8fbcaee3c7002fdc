#pragma once
// Judges head liveness against the chain rather than against a fixed timer. Pure: heads and time
// come in as arguments, decisions come out; the pipeline does the I/O.
//
// - The block interval is learned from the heads' arrival (the median of the last gaps per
//   block) or set per chain (chain.block_interval_ms).
// - HTTP polling: while no WebSocket subscription is live, the head is polled about once a block
//   interval, so confirmation never stops; while one is live, the head is polled after
//   kStaleIntervals intervals without a WebSocket head, to find out whether the socket went stale.
// - A WebSocket that brought nothing for kStaleIntervals intervals while an HTTP head moved past
//   its newest head is stale: drop it at once (long before chain.head_stall_timeout_seconds).
// - A head from an endpoint more than lag_blocks behind the best head any endpoint reported is
//   not given to the reorg buffer: a lagging endpoint can never cause a false reorg.
// - A head more than lag_blocks above the best head and above every other endpoint's is a jump
//   (jump()): believed only when the chain's pace since the best head allows it, or another
//   endpoint has that block (the caller asks). One endpoint claiming a far-ahead head can so
//   never make the honest ones look lagging.

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <deque>
#include <optional>
#include <string>
#include <vector>

namespace chainidx::ingest {

class HeadTracker {
 public:
  using Clock = std::chrono::steady_clock;
  static constexpr unsigned kStaleIntervals = 3;
  static constexpr unsigned kSurveyIntervals = 10;

  struct Options {
    std::chrono::milliseconds block_interval{0};  ///< 0: learned from the heads
    std::uint64_t lag_blocks = 5;
    std::chrono::milliseconds min_poll{250};       ///< never poll more often than this
    std::chrono::milliseconds max_poll{30000};
    std::chrono::milliseconds unknown_interval{1000};  ///< until enough heads were seen to learn one
    /// A socket is never judged stale sooner: an interval learned from a burst of blocks can be
    /// a few milliseconds, and a head that a busy host delivers late is not a dead socket.
    std::chrono::milliseconds min_stale{1000};
  };

  explicit HeadTracker(Options options) : options_(options) {}

  enum class Source { kWebSocket, kHttp };

  /// A head reported by an endpoint at `now`. True when it may go to the reorg buffer: false when
  /// its endpoint lags more than lag_blocks behind the best head seen.
  bool on_head(const std::uint64_t block_number, Source source, Clock::time_point now) {
    const bool lagging = best_ && block_number + options_.lag_blocks < *best_;
    if (lagging) return false;
    if (!best_ || block_number > *best_) {
      if (best_ && best_at_) learn(block_number - *best_, now - *best_at_);
      best_ = block_number;
      best_at_ = now;
    }
    if (source == Source::kWebSocket) {
      ws_head_ = std::max(ws_head_.value_or(0), block_number);
      ws_head_at_ = now;
    }
    return true;
  }

  /// A WebSocket subscription became live (or ended: live = false) at `now`.
  void on_subscription(bool live, Clock::time_point now) {
    ws_live_ = live;
    if (live) {
      ws_head_.reset();
      ws_head_at_ = now;  // its first head is due from now on
    }
  }
  bool ws_live() const { return ws_live_; }

  /// The expected time between blocks: the configured one, else the learned one.
  std::chrono::milliseconds block_interval() const {
    if (options_.block_interval.count() > 0) return options_.block_interval;
    if (gaps_.size() < kMinGaps) return options_.unknown_interval;
    std::vector<double> g(gaps_.begin(), gaps_.end());
    std::nth_element(g.begin(), g.begin() + static_cast<std::ptrdiff_t>(g.size() / 2), g.end());
    return std::chrono::milliseconds(static_cast<std::int64_t>(g[g.size() / 2]));
  }

  /// How long to wait without a head before polling the HTTP head.
  std::chrono::milliseconds poll_after() const {
    const auto interval = block_interval();
    const auto d = ws_live_ ? interval * kStaleIntervals : interval;
    return std::clamp(d, options_.min_poll, options_.max_poll);
  }

  /// How often every endpoint's head is asked for even while heads come (to learn each
  /// endpoint's lag and to catch a subscription on a lagging endpoint): kSurveyIntervals block
  /// intervals, within [2 s, 60 s].
  std::chrono::milliseconds survey_every() const {
    return std::clamp(block_interval() * kSurveyIntervals, std::chrono::milliseconds(2000), std::chrono::milliseconds(60000));
  }

  /// Whether the live WebSocket is stale at `now`: it brought nothing for kStaleIntervals block
  /// intervals while the best head (from HTTP) moved past its newest. The reason in words, or
  /// nullopt.
  std::optional<std::string> stale_websocket(Clock::time_point now) const {
    if (!ws_live_ || !best_) return std::nullopt;
    const auto interval = block_interval();
    const auto quiet = now - ws_head_at_;
    if (quiet < std::max<Clock::duration>(interval * kStaleIntervals, options_.min_stale)) return std::nullopt;
    if (ws_head_ && *ws_head_ >= *best_) return std::nullopt;
    const auto quiet_ms = std::chrono::duration_cast<std::chrono::milliseconds>(quiet).count();
    return "no new head for " + std::to_string(quiet_ms) + " ms (" + std::to_string(kStaleIntervals) + " block intervals of " +
           std::to_string(interval.count()) + " ms) while the HTTP head moved on to block " + std::to_string(*best_);
  }

  std::optional<std::uint64_t> best() const { return best_; }

  /// Whether `block_number`, reported at `now` by one endpoint while the other endpoints' newest
  /// heads are at most `others` (nullopt: no other endpoint answered), is a jump that needs
  /// another endpoint's word: more than lag_blocks above both the best head and `others`, and
  /// more than the chain's pace since the best head allows (two blocks per block interval). A
  /// chain of one endpoint has nobody to ask: its caller does not call this.
  bool jump(std::uint64_t block_number, std::optional<std::uint64_t> others, Clock::time_point now) const {
    const std::optional<std::uint64_t> reference = best_ && others ? std::max(*best_, *others) : best_ ? best_ : others;
    if (!reference || block_number <= *reference + options_.lag_blocks) return false;
    if (best_ && best_at_) {
      const auto elapsed = now - *best_at_;
      const auto interval = std::max(block_interval(), std::chrono::milliseconds(1));
      const std::uint64_t pace = 2 * static_cast<std::uint64_t>(elapsed / interval) + 1;
      if (block_number <= *best_ + options_.lag_blocks + pace) return false;
    }
    return true;
  }

 private:
  static constexpr std::size_t kMinGaps = 3;
  static constexpr std::size_t kMaxGaps = 16;

  void learn(std::uint64_t blocks, Clock::duration gap) {
    if (blocks == 0) return;
    const double ms = std::chrono::duration<double, std::milli>(gap).count() / static_cast<double>(blocks);
    gaps_.push_back(ms);
    if (gaps_.size() > kMaxGaps) gaps_.pop_front();
  }

  Options options_;
  std::optional<std::uint64_t> best_;
  std::optional<Clock::time_point> best_at_;
  std::optional<std::uint64_t> ws_head_;
  Clock::time_point ws_head_at_{};
  bool ws_live_ = false;
  std::deque<double> gaps_;
};

}  // namespace chainidx::ingest

#pragma once
// Every HTTP endpoint of a chain, and every retry and failover decision about them: callers ask
// the pool for an answer and get one, or a PoolError that says why none can come. No caller
// writes its own retry loop.

#include <boost/asio/any_io_executor.hpp>

#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "ingest/backoff.hpp"
#include "ingest/block_fetcher.hpp"
#include "ingest/failure_tally.hpp"
#include "ingest/http_rpc_client.hpp"
#include "ingest/retry_budget.hpp"
#include "ingest/waker.hpp"

namespace chainidx::ingest {

/// Why the pool gave up on a request: no retry, anywhere, can make it work.
class PoolError : public std::runtime_error {
 public:
  enum class Kind {
    kRefusedEverywhere,  ///< every endpoint refused the request (a method none of them serves)
    kUndecodable,        ///< every endpoint's answer failed validation, undecodable_after_rounds times
    kWrongChain,         ///< an endpoint serves another chain (eth_chainId)
  };
  PoolError(Kind kind, const std::string& message) : std::runtime_error(message), kind_(kind) {}
  Kind kind() const { return kind_; }

 private:
  Kind kind_;
};

struct PoolEndpoint {
  std::string http;  ///< http(s) URL; may hold a key, printed only as `name` or its label
  std::string name;
  double requests_per_second = 50;
  double burst = 100;
  std::size_t max_in_flight = 4;
};

struct PoolSettings {
  std::vector<PoolEndpoint> endpoints;
  std::uint64_t chain_id = 0;
  bool verify_block_hash = true;
  std::chrono::milliseconds http_timeout{15000};
  std::chrono::milliseconds retry_after_max{60000};
  BackoffPolicy backoff{};
  unsigned undecodable_after_rounds = 5;
  /// The process-wide retry budget (see RetryBudget): retries may add this share of the first
  /// attempts, at least `retry_floor_per_second`, with `retry_burst` saved up.
  double retry_ratio = 0.2;
  double retry_floor_per_second = 2;
  double retry_burst = 50;
};

class EndpointPool {
 public:
  /// One endpoint's client and state.
  struct Member {
    Member(boost::asio::any_io_executor ex, const PoolEndpoint& e, const PoolSettings& s);
    HttpRpcClient rpc;
    BlockFetcher fetcher;
    std::size_t max_in_flight;
    double burst;  ///< the token bucket's burst: a batch never holds more calls than this
    bool chain_id_checked = false;
    unsigned failures = 0;  ///< consecutive failed requests (reset by a success)
    std::size_t batch_blocks = 0;  ///< blocks per range batch, adapted to answers (0: not yet set)
  };

  EndpointPool(boost::asio::any_io_executor executor, PoolSettings settings);

  std::size_t size() const { return members_.size(); }
  Member& at(std::size_t i) { return *members_[i]; }
  const PoolSettings& settings() const { return settings_; }
  std::vector<std::string> names() const;

  /// Checks endpoint `i`'s eth_chainId once; throws PoolError(kWrongChain) on a mismatch
  /// (its data must never be mixed in) and RpcError when it cannot answer.
  Task<void> check_chain_id(std::size_t i);

  /// Runs `op` on the current endpoint until it works, failing over to the next endpoint after
  /// each failure and backing off once a whole round failed (or as long as Retry-After says).
  /// `what` names the request in logs, `subject` (default `what`) in a PoolError. nullopt when
  /// a stop was requested first. Throws PoolError when the FailureTally gives up.
  /// (g++ 12: build `op` and `subject` into named locals before co_awaiting this.)
  template <class T, class Op>
  Task<std::optional<T>> run(const char* what, Op op, std::string subject = {});

  /// The wait before retrying after `e`, the `attempt`-th failure in a row.
  std::chrono::milliseconds retry_delay(const RpcError& e, unsigned attempt);
  /// Every request's first attempt is counted here (it grows the retry budget).
  void first_attempt();
  /// Waits until the process-wide retry budget has a token for one retry, and takes it.
  Task<void> retry_allowed();
  std::uint64_t retries_delayed() const { return retries_delayed_; }
  /// Sleeps; cut short by request_stop().
  Task<void> sleep(std::chrono::milliseconds d);
  void request_stop();
  bool stopping() const { return stop_; }

  /// Logs one failed attempt (event=rpc_retry).
  void log_retry(const char* what, unsigned attempt, std::size_t at, std::size_t next, std::chrono::milliseconds delay,
                 const std::string& problem) const;

 private:
  boost::asio::any_io_executor executor_;
  PoolSettings settings_;
  std::vector<std::unique_ptr<Member>> members_;
  std::size_t current_ = 0;
  bool stop_ = false;
  Waker sleeps_;
  RetryBudget budget_;
  std::uint64_t retries_delayed_ = 0;
  std::chrono::steady_clock::time_point budget_logged_{};
  std::mt19937 rng_{std::random_device{}()};
};

template <class T, class Op>
Task<std::optional<T>> EndpointPool::run(const char* what, Op op, std::string subject) {
  FailureTally tally(names(), settings_.undecodable_after_rounds);
  if (subject.empty()) subject = what;
  for (unsigned attempt = 0; !stop_; ++attempt) {
    std::string problem;
    std::chrono::milliseconds delay{0};
    const std::size_t at = current_;
    if (attempt == 0) first_attempt();
    else co_await retry_allowed();
    try {
      co_await check_chain_id(at);
      T result = co_await op(members_[at]->fetcher);
      members_[at]->failures = 0;
      co_return result;
    } catch (const RpcError& e) {
      problem = e.what();
      ++members_[at]->failures;
      switch (tally.record(at, e)) {
        case FailureTally::Verdict::kRefusedEverywhere:
          throw PoolError(PoolError::Kind::kRefusedEverywhere, tally.refused_message(what));
        case FailureTally::Verdict::kUndecodable:
          throw PoolError(PoolError::Kind::kUndecodable, tally.undecodable_message(subject));
        case FailureTally::Verdict::kRetry:
          break;
      }
      if (e.retryable()) delay = retry_delay(e, attempt / static_cast<unsigned>(members_.size()));
    }
    if (members_.size() > 1) {
      // Next endpoint, skipping those that refused this request for good.
      do current_ = (current_ + 1) % members_.size();
      while (tally.refused(current_));
      // Another endpoint may well answer at once; wait only when the round comes back here.
      if (current_ > at) delay = std::chrono::milliseconds(0);
    }
    log_retry(what, attempt, at, current_, delay, problem);
    if (delay.count() > 0) co_await sleep(delay);
  }
  co_return std::nullopt;
}

}  // namespace chainidx::ingest

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
#include "ingest/endpoint_choice.hpp"
#include "ingest/endpoint_health.hpp"
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
  CircuitOptions circuit{};
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
    EndpointHealth health;  ///< circuit breaker, latency, error rate, head, failures in a row
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

  /// Runs `op` on the best endpoint (see choose_endpoint) until it works, failing over to the
  /// next best after each failure and backing off once every endpoint failed it in a round (or
  /// as long as Retry-After says). Endpoints whose circuit is open get nothing until their
  /// cool-down ends. `needs_block`: the block number the request needs, so that an endpoint known
  /// to lag below it is asked last. `what` names the request in logs, `subject` (default `what`)
  /// in a PoolError. nullopt when a stop was requested first. Throws PoolError when the
  /// FailureTally gives up.
  /// (g++ 12: build `op` and `subject` into named locals before co_awaiting this.)
  template <class T, class Op>
  Task<std::optional<T>> run(const char* what, Op op, std::string subject = {}, std::optional<std::uint64_t> needs_block = {});

  /// Health bookkeeping for requests made outside run() (the range engine's). `at` answered
  /// after `latency`; `at` failed (`e` says whether it was the endpoint's fault).
  void record_success(std::size_t at, std::chrono::microseconds latency);
  void record_failure(std::size_t at, const RpcError& e);
  /// Endpoint `at` reported `block_number` as its head.
  void record_head(std::size_t at, std::uint64_t block_number);
  /// The newest head any endpoint reported (0: none yet).
  std::uint64_t best_head() const;
  /// Asks every endpoint whose circuit lets a request through for its head, all at once, one
  /// attempt each (a failure counts in its health, nothing is retried). The answers by endpoint,
  /// once all came or `deadline` passed; the caller records those it believes (record_head).
  Task<std::vector<std::optional<schema::BlockRef>>> survey_heads(std::chrono::milliseconds deadline);
  /// Asks the endpoints in `which` for block `number`'s header, all at once, one attempt each
  /// (failures count in their health). The answers by endpoint (nullopt: no answer, or no such
  /// block), once all came or `deadline` passed.
  Task<std::vector<std::optional<schema::BlockRef>>> ask_headers(std::vector<std::size_t> which, std::uint64_t number,
                                                                 std::chrono::milliseconds deadline);
  /// The endpoints whose circuit lets a request through now, best first (see choose_endpoint).
  std::vector<std::size_t> ranked() const;
  /// Opens endpoint `at`'s circuit now (it served data the others contradict): it gets nothing
  /// for a cool-down. Logs `reason`.
  void quarantine(std::size_t at, const std::string& reason);
  /// Endpoint `at`'s state now.
  EndpointState state(std::size_t at) const;
  /// Wakes when an endpoint's circuit changes (a probe answered) or a stop is requested.
  Waker& health_changed() { return health_changed_; }

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
  Waker health_changed_;
  RetryBudget budget_;
  std::uint64_t retries_delayed_ = 0;
  std::chrono::steady_clock::time_point budget_logged_{};
  std::mt19937 rng_{std::random_device{}()};
  std::vector<const EndpointHealth*> health_;  // members' health, for choose_endpoint

  struct HeadSurvey;
  // One endpoint's part of survey_heads (a member coroutine, so that its arguments live in its
  // frame: a lambda's captures would die with the lambda).
  Task<void> ask_head(std::size_t at, std::shared_ptr<HeadSurvey> survey, std::optional<std::uint64_t> number);
  Task<std::vector<std::optional<schema::BlockRef>>> survey(std::vector<std::size_t> which, std::optional<std::uint64_t> number,
                                                            std::chrono::milliseconds deadline);

  // Each endpoint's rate-limit wait now, for EndpointChoice::rate_wait_ms.
  std::vector<double> rate_waits() const;

  // The endpoint for this attempt, waiting while every usable one has its circuit open. nullopt
  // on a stop.
  Task<std::optional<std::size_t>> choose(EndpointChoice& choice);
};

template <class T, class Op>
Task<std::optional<T>> EndpointPool::run(const char* what, Op op, std::string subject, std::optional<std::uint64_t> needs_block) {
  FailureTally tally(names(), settings_.undecodable_after_rounds);
  if (subject.empty()) subject = what;
  EndpointChoice choice;
  choice.excluded.assign(members_.size(), false);
  choice.needs_block = needs_block;
  std::vector<bool> tried(members_.size(), false);  // failed in this round
  for (unsigned attempt = 0, round = 0; !stop_; ++attempt) {
    std::string problem;
    std::chrono::milliseconds delay{0};
    if (attempt == 0) first_attempt();
    else co_await retry_allowed();
    for (std::size_t i = 0; i < members_.size(); ++i) choice.excluded[i] = tally.refused(i) || tried[i];
    choice.current = current_;
    choice.rate_wait_ms = rate_waits();
    auto chosen = co_await choose(choice);
    if (!chosen) break;
    const std::size_t at = *chosen;
    current_ = at;
    members_[at]->health.begin(std::chrono::steady_clock::now());
    try {
      co_await check_chain_id(at);
      const auto began = std::chrono::steady_clock::now();
      T result = co_await op(members_[at]->fetcher);
      record_success(at, std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() - began));
      co_return result;
    } catch (const RpcError& e) {
      problem = e.what();
      record_failure(at, e);
      switch (tally.record(at, e)) {
        case FailureTally::Verdict::kRefusedEverywhere:
          throw PoolError(PoolError::Kind::kRefusedEverywhere, tally.refused_message(what));
        case FailureTally::Verdict::kUndecodable:
          throw PoolError(PoolError::Kind::kUndecodable, tally.undecodable_message(subject));
        case FailureTally::Verdict::kRetry:
          break;
      }
      tried[at] = true;
      if (e.retryable()) delay = retry_delay(e, round);
    }
    // Another endpoint may well answer at once; wait only once every one failed this round.
    for (std::size_t i = 0; i < members_.size(); ++i) choice.excluded[i] = tally.refused(i) || tried[i];
    choice.current.reset();
    const auto next = choose_endpoint(health_, std::chrono::steady_clock::now(), choice);
    if (next) {
      delay = std::chrono::milliseconds(0);
    } else {
      std::fill(tried.begin(), tried.end(), false);
      ++round;
    }
    log_retry(what, attempt, at, next.value_or(at), delay, problem);
    if (delay.count() > 0) co_await sleep(delay);
  }
  co_return std::nullopt;
}

}  // namespace chainidx::ingest

#include "ingest/endpoint_pool.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <spdlog/spdlog.h>

#include <algorithm>

namespace chainidx::ingest {

namespace asio = boost::asio;

EndpointPool::Member::Member(asio::any_io_executor ex, const PoolEndpoint& e, const PoolSettings& s)
    : rpc(ex, e.http, {e.requests_per_second, e.burst, s.http_timeout, s.retry_after_max, e.name, std::max<std::size_t>(1, e.max_in_flight)}),
      fetcher(rpc, s.verify_block_hash),
      max_in_flight(std::max<std::size_t>(1, e.max_in_flight)),
      burst(e.burst),
      health(s.circuit) {}

EndpointPool::EndpointPool(asio::any_io_executor executor, PoolSettings settings)
    : executor_(executor), settings_(std::move(settings)), sleeps_(executor), health_changed_(executor),
      budget_(settings_.retry_ratio, settings_.retry_floor_per_second, settings_.retry_burst, std::chrono::steady_clock::now()) {
  for (const auto& e : settings_.endpoints) members_.push_back(std::make_unique<Member>(executor_, e, settings_));
  for (const auto& m : members_) health_.push_back(&m->health);
}

void EndpointPool::record_success(std::size_t at, std::chrono::microseconds latency) {
  Member& m = *members_[at];
  const bool was_closed = m.health.closed();
  m.health.on_success(latency);
  if (!was_closed) {
    spdlog::info("event=circuit_closed endpoint={} reason=\"the probe was answered\"", m.rpc.endpoint());
    health_changed_.wake_all();
  }
}

void EndpointPool::record_failure(std::size_t at, const RpcError& e) {
  Member& m = *members_[at];
  if (!e.retryable()) {  // a refusal says nothing about the endpoint's health
    if (!m.health.closed()) health_changed_.wake_all();
    m.health.on_abandoned();
    return;
  }
  // The last endpoint with a closed circuit keeps it closed: with nowhere else to go, backoff and
  // the retry budget pace its retries, and an open circuit would only add the cool-down.
  bool another_closed = false;
  for (std::size_t i = 0; i < members_.size(); ++i)
    if (i != at && members_[i]->health.closed()) another_closed = true;
  const bool was_probing = m.health.state(0) == EndpointState::kProbing;
  if (m.health.on_failure(std::chrono::steady_clock::now(), std::uniform_real_distribution<double>(0, 1)(rng_), another_closed)) {
    const auto cooldown = std::chrono::duration_cast<std::chrono::milliseconds>(m.health.open_until() - std::chrono::steady_clock::now());
    spdlog::warn("event=circuit_open endpoint={} consecutive_failures={} cooldown_ms={} reason=\"{}\"", m.rpc.endpoint(),
                 m.health.consecutive_failures(), cooldown.count(), was_probing ? std::string("the probe failed: ") + e.what() : e.what());
  }
  if (was_probing) health_changed_.wake_all();
}

void EndpointPool::record_head(std::size_t at, std::uint64_t block_number) { members_[at]->health.on_head(block_number); }

std::uint64_t EndpointPool::best_head() const { return ingest::best_head(health_); }

// Shared by survey_heads and its requests, which may outlive it when one hangs past the deadline.
struct EndpointPool::HeadSurvey {
  HeadSurvey(asio::any_io_executor ex, std::size_t n) : answers(n), done(std::move(ex)) {}
  std::vector<std::optional<schema::BlockRef>> answers;
  std::size_t pending = 0;
  Waker done;
  std::exception_ptr wrong_chain;  // an endpoint of another chain: the caller must stop
};

Task<void> EndpointPool::ask_head(std::size_t at, std::shared_ptr<HeadSurvey> survey, std::optional<std::uint64_t> number) {
  try {
    co_await check_chain_id(at);
    const auto began = std::chrono::steady_clock::now();
    std::optional<schema::BlockRef> head;
    if (number) head = co_await members_[at]->fetcher.header_by_number(*number);
    else head = co_await members_[at]->fetcher.latest_head();
    record_success(at, std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() - began));
    survey->answers[at] = head;
  } catch (const RpcError& e) {
    record_failure(at, e);
    spdlog::debug("event=head_survey_failed endpoint={} reason=\"{}\"", members_[at]->rpc.endpoint(), e.what());
  } catch (const PoolError&) {
    survey->wrong_chain = std::current_exception();
  }
  if (--survey->pending == 0) survey->done.wake_all();
}

Task<std::vector<std::optional<schema::BlockRef>>> EndpointPool::survey(std::vector<std::size_t> which, std::optional<std::uint64_t> number,
                                                                        std::chrono::milliseconds deadline) {
  auto survey = std::make_shared<HeadSurvey>(executor_, members_.size());
  for (std::size_t i : which) {
    const auto now = std::chrono::steady_clock::now();
    if (!members_[i]->health.available(now)) continue;
    members_[i]->health.begin(now);
    first_attempt();
    ++survey->pending;
    asio::co_spawn(executor_, ask_head(i, survey, number), asio::detached);
  }
  const auto until = std::chrono::steady_clock::now() + deadline;
  while (survey->pending > 0 && !stop_) {
    const auto now = std::chrono::steady_clock::now();
    if (now >= until) break;
    co_await survey->done.wait(until - now);
  }
  if (survey->wrong_chain) std::rethrow_exception(survey->wrong_chain);
  co_return survey->answers;
}

Task<std::vector<std::optional<schema::BlockRef>>> EndpointPool::survey_heads(std::chrono::milliseconds deadline) {
  std::vector<std::size_t> all(members_.size());
  for (std::size_t i = 0; i < all.size(); ++i) all[i] = i;
  return survey(std::move(all), std::nullopt, deadline);
}

Task<std::vector<std::optional<schema::BlockRef>>> EndpointPool::ask_headers(std::vector<std::size_t> which, std::uint64_t number,
                                                                             std::chrono::milliseconds deadline) {
  return survey(std::move(which), number, deadline);
}

std::vector<double> EndpointPool::rate_waits() const {
  std::vector<double> out;
  for (const auto& m : members_) out.push_back(std::chrono::duration<double, std::milli>(m->rpc.rate_wait()).count());
  return out;
}

std::vector<std::size_t> EndpointPool::ranked() const {
  const auto now = std::chrono::steady_clock::now();
  EndpointChoice choice;
  choice.excluded.assign(members_.size(), false);
  choice.rate_wait_ms = rate_waits();
  std::vector<std::size_t> out;
  while (auto at = choose_endpoint(health_, now, choice)) {
    out.push_back(*at);
    choice.excluded[*at] = true;
  }
  return out;
}

void EndpointPool::quarantine(std::size_t at, const std::string& reason) {
  Member& m = *members_[at];
  m.health.open_now(std::chrono::steady_clock::now(), std::uniform_real_distribution<double>(0, 1)(rng_));
  const auto cooldown = std::chrono::duration_cast<std::chrono::milliseconds>(m.health.open_until() - std::chrono::steady_clock::now());
  spdlog::warn("event=circuit_open endpoint={} cooldown_ms={} reason=\"{}\"", m.rpc.endpoint(), cooldown.count(), reason);
}

EndpointState EndpointPool::state(std::size_t at) const { return members_[at]->health.state(best_head()); }

Task<std::optional<std::size_t>> EndpointPool::choose(EndpointChoice& choice) {
  while (!stop_) {
    const auto now = std::chrono::steady_clock::now();
    if (auto at = choose_endpoint(health_, now, choice)) co_return at;
    // Every usable endpoint has its circuit open (or its probe out): wait for the first cool-down
    // to end, or for a probe's answer.
    const auto probe = earliest_probe(health_, choice.excluded);
    const auto wait = probe ? std::max(*probe - now, std::chrono::steady_clock::duration(std::chrono::milliseconds(1)))
                            : std::chrono::steady_clock::duration(std::chrono::milliseconds(100));
    co_await health_changed_.wait(wait);
  }
  co_return std::nullopt;
}

std::vector<std::string> EndpointPool::names() const {
  std::vector<std::string> out;
  for (const auto& m : members_) out.push_back(m->rpc.endpoint());
  return out;
}

Task<void> EndpointPool::check_chain_id(std::size_t i) {
  Member& m = *members_[i];
  if (m.chain_id_checked) co_return;
  std::uint64_t id = co_await m.fetcher.chain_id();
  const std::uint64_t want = settings_.chain_id;
  if (id != want)
    throw PoolError(PoolError::Kind::kWrongChain,
                    "chain id mismatch: config_chain_id=" + std::to_string(want) + " node_chain_id=" + std::to_string(id) +
                        " endpoint=" + m.rpc.endpoint() + "; point chain.endpoints at a node of chain " + std::to_string(want) +
                        " or set chain.chain_id = " + std::to_string(id));
  m.chain_id_checked = true;
}

std::chrono::milliseconds EndpointPool::retry_delay(const RpcError& e, unsigned attempt) {
  if (auto after = e.retry_after()) return *after;
  return settings_.backoff.delay(attempt, std::uniform_real_distribution<double>(0, 1)(rng_));
}

void EndpointPool::first_attempt() { budget_.on_attempt(std::chrono::steady_clock::now()); }

Task<void> EndpointPool::retry_allowed() {
  for (;;) {
    const auto now = std::chrono::steady_clock::now();
    const auto wait = budget_.try_retry(now);
    if (wait == std::chrono::steady_clock::duration::zero() || stop_) co_return;
    ++retries_delayed_;
    if (now - budget_logged_ >= std::chrono::seconds(5)) {
      budget_logged_ = now;
      spdlog::warn("event=retry_budget_exhausted retries_delayed={} wait_ms={} reason=\"retries are limited to {:.0f}% of requests "
                   "(at least {:.0f}/s) so that an outage does not become a retry storm\"",
                   retries_delayed_, std::chrono::duration_cast<std::chrono::milliseconds>(wait).count(), settings_.retry_ratio * 100,
                   settings_.retry_floor_per_second);
    }
    co_await sleep(std::chrono::duration_cast<std::chrono::milliseconds>(wait) + std::chrono::milliseconds(1));
  }
}

Task<void> EndpointPool::sleep(std::chrono::milliseconds d) {
  if (!stop_) co_await sleeps_.wait(d);
}

void EndpointPool::request_stop() {
  stop_ = true;
  sleeps_.wake_all();
  health_changed_.wake_all();
}

void EndpointPool::log_retry(const char* what, unsigned attempt, std::size_t at, std::size_t next, std::chrono::milliseconds delay,
                             const std::string& problem) const {
  spdlog::warn("event=rpc_retry op={} attempt={} endpoint={} next_endpoint={} backoff_ms={} reason=\"{}\"", what, attempt + 1,
               members_[at]->rpc.endpoint(), members_[next]->rpc.endpoint(), delay.count(), problem);
}

}  // namespace chainidx::ingest

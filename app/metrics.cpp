#include "app/metrics.hpp"

#include <prometheus/counter.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>
#include <prometheus/text_serializer.h>

#include <algorithm>
#include <chrono>

#include "app/live_status.hpp"

namespace chainidx::app {

namespace {

using prometheus::BuildCounter;
using prometheus::BuildGauge;
using prometheus::BuildHistogram;
using prometheus::Counter;
using prometheus::Family;
using prometheus::Gauge;
using prometheus::Histogram;

// Seconds, from 250 µs to about 30 s: the live write is milliseconds, a write waiting out a
// database failover tens of seconds.
const Histogram::BucketBoundaries kSeconds{0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30};
const Histogram::BucketBoundaries kBlocks{1, 2, 5, 10, 20, 50, 100, 200, 500, 1000};

double unix_now() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

}  // namespace

struct Metrics::Impl {
  std::string chain;
  prometheus::Registry registry;

  Family<Gauge>& build_info = BuildGauge().Name("chainidx_build_info").Help("Always 1; the labels name the build").Register(registry);
  Family<Gauge>& head_block = BuildGauge().Name("chainidx_head_block").Help("The newest head believed (block number)").Register(registry);
  Family<Gauge>& head_age = BuildGauge()
                                .Name("chainidx_head_age_seconds")
                                .Help("Wall-clock time since the newest head's block timestamp")
                                .Register(registry);
  Family<Gauge>& confirmed_block = BuildGauge()
                                       .Name("chainidx_confirmed_block")
                                       .Help("The newest block written to every sink (the cursor)")
                                       .Register(registry);
  Family<Gauge>& confirmed_age = BuildGauge()
                                     .Name("chainidx_confirmed_age_seconds")
                                     .Help("Wall-clock time since the cursor block's timestamp")
                                     .Register(registry);
  Family<Gauge>& lag = BuildGauge()
                           .Name("chainidx_lag_blocks")
                           .Help("Blocks confirmed (head minus confirmations, or the tagged block) and not yet written")
                           .Register(registry);
  Family<Gauge>& halted = BuildGauge()
                              .Name("chainidx_halted")
                              .Help("1 when the pipeline halted (a deep reorg, a refused write); the reason is in /healthz")
                              .Register(registry);
  Family<Gauge>& leader = BuildGauge()
                              .Name("chainidx_leader")
                              .Help("1 while this process leads the chain (writes it), 0 while it starts or waits as a standby")
                              .Register(registry);
  Family<Gauge>& leader_epoch = BuildGauge()
                                    .Name("chainidx_leader_epoch")
                                    .Help("The leader epoch this process writes under (it goes up by one at each takeover); 0 when not leading")
                                    .Register(registry);
  Family<Gauge>& waiting = BuildGauge()
                               .Name("chainidx_sink_waiting_seconds")
                               .Help("How long confirmed blocks have waited for a sink that fails (0 when none waits)")
                               .Register(registry);
  Family<Gauge>& buffer = BuildGauge().Name("chainidx_buffer_blocks").Help("Unconfirmed blocks held in the reorg buffer").Register(registry);
  Family<Gauge>& endpoint_up = BuildGauge()
                                   .Name("chainidx_endpoint_state")
                                   .Help("1 for the endpoint's current state (healthy, degraded, open, probing), 0 for the others")
                                   .Register(registry);
  Family<Gauge>& endpoint_head = BuildGauge().Name("chainidx_endpoint_head_block").Help("Each endpoint's newest head").Register(registry);
  Family<Counter>& blocks = BuildCounter().Name("chainidx_written_blocks_total").Help("Blocks written, per sink").Register(registry);
  Family<Counter>& transactions = BuildCounter()
                                      .Name("chainidx_written_transactions_total")
                                      .Help("Transactions written, per sink")
                                      .Register(registry);
  Family<Counter>& logs = BuildCounter().Name("chainidx_written_logs_total").Help("Logs written, per sink").Register(registry);
  Family<Counter>& events = BuildCounter()
                                .Name("chainidx_events_total")
                                .Help("Decoded contract events written, per contract and event")
                                .Register(registry);
  Family<Counter>& undecodable = BuildCounter()
                                     .Name("chainidx_undecodable_logs_total")
                                     .Help("Logs of a configured contract that matched an event's topic0 but did not decode, written to the dead-letter table and topic")
                                     .Register(registry);
  Family<Gauge>& factory_made = BuildGauge()
                                    .Name("chainidx_factory_contracts")
                                    .Help("Addresses made by its factory that a factory-made contract's events are decoded for")
                                    .Register(registry);
  Family<Counter>& retries = BuildCounter().Name("chainidx_sink_retries_total").Help("Failed sink writes, retried").Register(registry);
  Family<Histogram>& write_seconds = BuildHistogram()
                                         .Name("chainidx_sink_write_duration_seconds")
                                         .Help("One batch's write to one sink")
                                         .Register(registry);
  Family<Histogram>& batch_blocks = BuildHistogram().Name("chainidx_sink_batch_blocks").Help("Blocks per written batch").Register(registry);
  Family<Histogram>& head_to_write_seconds = BuildHistogram()
                                                 .Name("chainidx_head_to_write_seconds")
                                                 .Help("From the head that confirms a block to its write to every sink")
                                                 .Register(registry);
  Family<Counter>& reorgs = BuildCounter()
                                .Name("chainidx_reorgs_total")
                                .Help("Reorgs below the confirmation depth, by depth (blocks reverted)")
                                .Register(registry);
  Family<Counter>& ws_reconnects = BuildCounter()
                                       .Name("chainidx_ws_reconnects_total")
                                       .Help("WebSocket head subscriptions lost and reconnected")
                                       .Register(registry);
  Family<Counter>& ws_stalls = BuildCounter()
                                   .Name("chainidx_ws_stalls_total")
                                   .Help("WebSocket subscriptions dropped for bringing no usable heads (stalled, stale or lagging)")
                                   .Register(registry);
  Family<Counter>& unbacked = BuildCounter()
                                  .Name("chainidx_unbacked_heads_total")
                                  .Help("Heads far ahead of every other endpoint's that no other endpoint backed (not believed)")
                                  .Register(registry);
  Family<Counter>& staged_dropped = BuildCounter()
                                        .Name("chainidx_staged_writes_dropped_total")
                                        .Help("Writes prepared ahead of confirmation and rolled back (a reorg, a burst, a stop)")
                                        .Register(registry);
  Family<Counter>& rewinds = BuildCounter()
                                 .Name("chainidx_cursor_rewinds_total")
                                 .Help("Times the stored cursor was found behind what was written (the database lost commits)")
                                 .Register(registry);

  Family<Counter>& rpc_requests = BuildCounter()
                                      .Name("chainidx_rpc_requests_total")
                                      .Help("JSON-RPC requests (a batch is one) by endpoint, method and outcome")
                                      .Register(registry);
  Family<Counter>& rpc_calls = BuildCounter()
                                   .Name("chainidx_rpc_calls_total")
                                   .Help("JSON-RPC calls (each call of a batch) by endpoint and method")
                                   .Register(registry);
  Family<Histogram>& rpc_seconds = BuildHistogram()
                                       .Name("chainidx_rpc_request_duration_seconds")
                                       .Help("One request, from its start (rate-limit wait included) to its answer")
                                       .Register(registry);
  Family<Gauge>& rpc_rate = BuildGauge()
                                .Name("chainidx_rpc_rate_limit")
                                .Help("The endpoint's current rate limit, calls per second (lowered while it throttles)")
                                .Register(registry);
  Family<Gauge>& rpc_rate_wait = BuildGauge()
                                     .Name("chainidx_rpc_rate_wait_seconds")
                                     .Help("How long a call to the endpoint would wait for the rate limiter now")
                                     .Register(registry);

  Family<Counter>& kafka_acknowledged = BuildCounter()
                                            .Name("chainidx_kafka_messages_acknowledged_total")
                                            .Help("Kafka messages the broker acknowledged")
                                            .Register(registry);
  Family<Counter>& kafka_failures = BuildCounter()
                                        .Name("chainidx_kafka_delivery_failures_total")
                                        .Help("Kafka messages whose delivery failed (the batch's transaction was aborted and sent again)")
                                        .Register(registry);
  Family<Gauge>& replay_done = BuildGauge()
                                   .Name("chainidx_replay_blocks_done")
                                   .Help("Blocks of a replay job written so far (its rate: deriv() over this)")
                                   .Register(registry);
  Family<Gauge>& replay_total = BuildGauge().Name("chainidx_replay_blocks").Help("Blocks in a replay job").Register(registry);
  Family<Gauge>& replay_running = BuildGauge()
                                      .Name("chainidx_replay_running")
                                      .Help("1 while a worker holds one of the replay job's chunks")
                                      .Register(registry);
  Family<Gauge>& kafka_queue = BuildGauge()
                                   .Name("chainidx_kafka_queue_messages")
                                   .Help("Messages in the Kafka producer's queue, not yet acknowledged by the broker")
                                   .Register(registry);
  std::uint64_t kafka_acknowledged_seen = 0, kafka_failures_seen = 0;

  prometheus::Labels with(std::string_view key, std::string_view value) const {
    return {{"chain", chain}, {std::string(key), std::string(value)}};
  }
  prometheus::Labels only_chain() const { return {{"chain", chain}}; }
};

Metrics::Metrics(const std::string& chain, const std::string& version, const std::string& revision)
    : impl_(std::make_unique<Impl>()) {
  impl_->chain = chain;
  impl_->build_info.Add({{"version", version}, {"revision", revision}}).Set(1);
  // Series that exist from the start, so that rate() and alerts see a zero before the first event.
  const auto c = impl_->only_chain();
  impl_->ws_reconnects.Add(c);
  impl_->ws_stalls.Add(c);
  impl_->unbacked.Add(c);
  impl_->staged_dropped.Add(c);
  impl_->rewinds.Add(c);
  impl_->halted.Add(c).Set(0);
  impl_->leader.Add(c).Set(0);
  impl_->leader_epoch.Add(c).Set(0);
  impl_->buffer.Add(c);
  impl_->head_to_write_seconds.Add(c, kSeconds);
}

Metrics::~Metrics() = default;

void Metrics::written(std::string_view sink, std::uint64_t blocks, std::uint64_t transactions, std::uint64_t logs, double seconds) {
  const auto l = impl_->with("sink", sink);
  impl_->blocks.Add(l).Increment(static_cast<double>(blocks));
  impl_->transactions.Add(l).Increment(static_cast<double>(transactions));
  impl_->logs.Add(l).Increment(static_cast<double>(logs));
  impl_->write_seconds.Add(l, kSeconds).Observe(seconds);
  impl_->batch_blocks.Add(l, kBlocks).Observe(static_cast<double>(blocks));
}

void Metrics::events_written(std::string_view contract, std::string_view event, std::uint64_t count) {
  auto l = impl_->with("contract", contract);
  l.emplace("event", std::string(event));
  impl_->events.Add(l).Increment(static_cast<double>(count));
}

void Metrics::undecodable_written(std::string_view contract, std::uint64_t count) {
  impl_->undecodable.Add(impl_->with("contract", contract)).Increment(static_cast<double>(count));
}

void Metrics::factory_contracts(std::string_view contract, std::uint64_t count) {
  impl_->factory_made.Add(impl_->with("contract", contract)).Set(static_cast<double>(count));
}

void Metrics::sink_retry(std::string_view sink) { impl_->retries.Add(impl_->with("sink", sink)).Increment(); }
void Metrics::head_to_write(double seconds) { impl_->head_to_write_seconds.Add(impl_->only_chain(), kSeconds).Observe(seconds); }
void Metrics::reorg(std::uint64_t depth) { impl_->reorgs.Add(impl_->with("depth", std::to_string(depth))).Increment(); }
void Metrics::ws_reconnect() { impl_->ws_reconnects.Add(impl_->only_chain()).Increment(); }
void Metrics::ws_stall() { impl_->ws_stalls.Add(impl_->only_chain()).Increment(); }
void Metrics::unbacked_head() { impl_->unbacked.Add(impl_->only_chain()).Increment(); }
void Metrics::staged_write_dropped() { impl_->staged_dropped.Add(impl_->only_chain()).Increment(); }
void Metrics::cursor_rewound() { impl_->rewinds.Add(impl_->only_chain()).Increment(); }
void Metrics::buffer_blocks(std::size_t blocks) { impl_->buffer.Add(impl_->only_chain()).Set(static_cast<double>(blocks)); }

void Metrics::replay_progress(std::string_view job, std::uint64_t blocks_done, std::uint64_t blocks, bool running) {
  const auto l = impl_->with("job", job);
  impl_->replay_done.Add(l).Set(static_cast<double>(blocks_done));
  impl_->replay_total.Add(l).Set(static_cast<double>(blocks));
  impl_->replay_running.Add(l).Set(running ? 1 : 0);
}

void Metrics::rpc(std::string_view endpoint, std::string_view method, std::string_view outcome, std::size_t calls, double seconds) {
  Impl& m = *impl_;
  const prometheus::Labels l{{"chain", m.chain}, {"endpoint", std::string(endpoint)}, {"method", std::string(method)}};
  prometheus::Labels with_outcome = l;
  with_outcome.emplace("outcome", std::string(outcome));
  m.rpc_requests.Add(with_outcome).Increment();
  m.rpc_calls.Add(l).Increment(static_cast<double>(calls));
  m.rpc_seconds.Add(l, kSeconds).Observe(seconds);
}

std::string Metrics::scrape(const LiveStatus& s) {
  update(s);
  return text({this});
}

std::string Metrics::text(const std::vector<Metrics*>& all) {
  // Each chain's registry holds the same families: one family of each name, with every chain's
  // series (a series with the same labels, such as the build's, once).
  std::vector<prometheus::MetricFamily> merged;
  for (Metrics* one : all) {
    for (auto& family : one->impl_->registry.Collect()) {
      auto it = std::find_if(merged.begin(), merged.end(), [&](const auto& f) { return f.name == family.name; });
      if (it == merged.end()) {
        merged.push_back(std::move(family));
        continue;
      }
      for (auto& metric : family.metric) {
        const bool seen = std::any_of(it->metric.begin(), it->metric.end(), [&](const prometheus::ClientMetric& m) {
          return m.label.size() == metric.label.size() &&
                 std::equal(m.label.begin(), m.label.end(), metric.label.begin(),
                            [](const auto& a, const auto& b) { return a.name == b.name && a.value == b.value; });
        });
        if (!seen) it->metric.push_back(std::move(metric));
      }
    }
  }
  return prometheus::TextSerializer().Serialize(merged);
}

void Metrics::update(const LiveStatus& s) {
  Impl& m = *impl_;
  const auto c = m.only_chain();
  const double now = unix_now();
  if (s.head) m.head_block.Add(c).Set(static_cast<double>(*s.head));
  if (s.head_timestamp) m.head_age.Add(c).Set(now - static_cast<double>(s.head_timestamp));
  if (s.cursor) m.confirmed_block.Add(c).Set(static_cast<double>(*s.cursor));
  if (s.cursor_timestamp) m.confirmed_age.Add(c).Set(now - static_cast<double>(s.cursor_timestamp));
  m.lag.Add(c).Set(static_cast<double>(s.lag()));
  m.halted.Add(c).Set(s.halted.empty() ? 0 : 1);
  m.leader.Add(c).Set(s.role == "leader" ? 1 : 0);
  m.leader_epoch.Add(c).Set(s.role == "leader" ? static_cast<double>(s.epoch) : 0);
  m.waiting.Add(c).Set(s.waiting_since ? std::chrono::duration<double>(LiveStatus::Clock::now() - *s.waiting_since).count() : 0);
  // The sink counts since start; the counters move by what was added since the last scrape.
  m.kafka_acknowledged.Add(c).Increment(static_cast<double>(s.kafka_acknowledged - std::min(s.kafka_acknowledged, m.kafka_acknowledged_seen)));
  m.kafka_failures.Add(c).Increment(static_cast<double>(s.kafka_delivery_failures - std::min(s.kafka_delivery_failures, m.kafka_failures_seen)));
  m.kafka_acknowledged_seen = std::max(m.kafka_acknowledged_seen, s.kafka_acknowledged);
  m.kafka_queue.Add(c).Set(static_cast<double>(s.kafka_queue_messages));
  m.kafka_failures_seen = std::max(m.kafka_failures_seen, s.kafka_delivery_failures);
  for (const auto& e : s.endpoints) {
    for (const char* state : {"healthy", "degraded", "open", "probing"})
      m.endpoint_up.Add({{"chain", m.chain}, {"endpoint", e.name}, {"state", state}}).Set(e.state == state ? 1 : 0);
    const prometheus::Labels l{{"chain", m.chain}, {"endpoint", e.name}};
    if (e.head) m.endpoint_head.Add(l).Set(static_cast<double>(*e.head));
    m.rpc_rate.Add(l).Set(e.rate);
    m.rpc_rate_wait.Add(l).Set(e.rate_wait_seconds);
  }
}

}  // namespace chainidx::app

#include "app/pipeline.hpp"

#include "app/live_status.hpp"
#include "app/logging.hpp"
#include "app/metrics.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/thread_pool.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <spdlog/spdlog.h>

#include <deque>
#include <map>
#include <random>

#include <unistd.h>

#include "ingest/endpoint_pool.hpp"
#include "ingest/head_subscriber.hpp"
#include "ingest/head_tracker.hpp"
#include "ingest/log_range.hpp"
#include "ingest/range_fetcher.hpp"
#include "reorg/block_buffer.hpp"
#include "sinks/kafka_sink.hpp"

namespace chainidx::app {

namespace asio = boost::asio;
using asio::use_awaitable;
using ingest::Task;
using namespace asio::experimental::awaitable_operators;

namespace {
// How often a run reads the factory-made addresses again when the re-poll is off (see chores).
constexpr std::chrono::seconds kChildrenReload{30};

struct Fatal {
  int code;
  std::string message;
};
}  // namespace

struct Pipeline::Impl {
  asio::io_context& io;
  Config config;
  // The configured contracts: every block's logs of theirs are decoded into Block::events before
  // a sink sees the block (on the range engine's decoding threads for history).
  std::shared_ptr<const abi::EventCatalog> catalog;
  // The addresses factories made, as written (the factory step runs as blocks are written, in
  // order: see write_unwritten).
  abi::FactoryChildren children;
  std::chrono::steady_clock::time_point children_loaded_at{};
  std::vector<sinks::Sink*> sinks;
  sinks::CheckpointStore& checkpoints;
  asio::thread_pool workers{1};       // every blocking sink call, one at a time (a sink is not thread-safe)
  asio::thread_pool kafka_worker{1};  // the live write's Kafka part, while `workers` copies the Postgres rows
  // Every RPC goes through the pool, which owns retries and failover; history (everything at
  // confirmed depth, more than a batch of it) goes through the range engine.
  ingest::EndpointPool pool;
  ingest::RangeFetcher range;
  std::optional<reorg::BlockBuffer> buffer;
  std::optional<schema::BlockRef> latest_head;  // newest head from the subscriber, not yet given to the buffer
  std::optional<schema::BlockRef> newest_head;  // newest head seen at all (decides when to catch up by ranges)
  ingest::HeadTracker heads;                    // block interval, polling, stale sockets, lagging endpoints
  ingest::HeadSubscriber* head_subscriber = nullptr;  // while run() follows the head
  std::chrono::steady_clock::time_point last_survey{};  // when every endpoint's head was last asked for
  std::vector<bool> lagging;                            // endpoints last seen lagging (logged once per change)
  std::deque<schema::BlockRef> recent;                  // the newest blocks written (for the re-poll)
  std::optional<schema::BlockRef> written;              // the last block written by `run` (the cursor)
  std::uint64_t contradicted = 0;                       // answers that contradicted the majority (verify_with)
  std::uint64_t unbacked_heads = 0;                     // far-ahead heads no other endpoint had (not believed)
  std::optional<schema::BlockRef> final_block;          // the node's safe / finalized block (chain.confirmations as a tag)
  std::optional<std::uint64_t> final_asked_at;          // the newest head when it was last asked for
  std::chrono::steady_clock::time_point last_repoll = std::chrono::steady_clock::now();
  asio::steady_timer wake;                      // cancelled when a head arrives or a stop is requested
  std::vector<asio::steady_timer*> sleeping;     // retry waits in progress: cut short by a stop, never by a head
  bool stop = false;
  std::string fenced;  // fence(): why this instance writes nothing more
  bool catching_up = false;  // filling a backlog by ranges
  bool live = true;  // the live writer checks its writer claim before each batch; a replay has none
  sinks::PostgresSink* overlapped = nullptr;  // run's Postgres sink when the sinks are Kafka then it (see write_overlapped)
  sinks::KafkaSink* overlapped_kafka = nullptr;  // and its Kafka sink
  // The live write staged ahead of its confirmation (see stage_next): the block, its Postgres
  // transaction copied and, with pipeline.stage_ahead = "all", its Kafka transaction produced;
  // neither committed.
  struct Staged {
    schema::BlockRef block;
    std::chrono::steady_clock::time_point at;
    bool kafka = false;
  };
  std::optional<Staged> staged;
  // A block whose staged write was dropped for want of a head: not staged again, so that its
  // locks (the writer row, the cursor) are not taken again at once while another instance waits
  // for them to claim the chain.
  std::optional<schema::Hash32> not_restaged;
  LiveStatus* status = nullptr;  // what /healthz, /readyz and /status read (observe())
  Metrics* metrics = nullptr;
  std::chrono::steady_clock::time_point head_at{};  // when the newest head arrived
  std::vector<schema::Block> unwritten;  // confirmed, not yet in every sink
  std::chrono::steady_clock::time_point unwritten_since;  // when the oldest of them was confirmed
  std::mt19937 rng{std::random_device{}()};
  ingest::BackoffPolicy backoff{};       // RPC retries
  ingest::BackoffPolicy sink_backoff{};  // sink write retries

  static ingest::PoolSettings pool_settings(const Config& c) {
    ingest::PoolSettings p;
    for (const auto& e : c.chain.endpoints)
      p.endpoints.push_back({e.http, e.name, e.requests_per_second, static_cast<double>(e.burst), e.max_in_flight});
    p.chain_id = c.chain.chain_id;
    p.verify_block_hash = c.chain.verify_block_hash;
    p.http_timeout = std::chrono::seconds(c.chain.http_timeout_seconds);
    p.retry_after_max = std::chrono::seconds(c.chain.retry_after_max_seconds);
    p.backoff = {std::chrono::milliseconds(c.chain.backoff_initial_ms), std::chrono::milliseconds(c.chain.backoff_max_ms)};
    p.undecodable_after_rounds = c.chain.undecodable_after_rounds;
    p.circuit.failures_to_open = c.chain.circuit_failures;
    p.circuit.cooldown = std::chrono::seconds(c.chain.circuit_cooldown_seconds);
    p.circuit.lag_blocks = c.chain.endpoint_max_lag_blocks;
    return p;
  }
  static ingest::RangeOptions range_options(const Config& c, std::shared_ptr<const abi::EventCatalog> catalog) {
    ingest::RangeOptions r;
    if (!catalog->empty()) r.enrich = [catalog](schema::Block& b) { catalog->decode(b); };
    if (c.chain.index_events_only) {
      const abi::EventCatalog::LogFilter f = catalog->log_filter();
      r.logs = ingest::RangeOptions::Logs{f.addresses, f.topic0s, c.pipeline.log_range_blocks, c.pipeline.log_range_max_blocks};
    }
    r.batch_blocks = c.pipeline.range_batch_blocks;
    r.buffer_bytes = static_cast<std::size_t>(c.pipeline.range_buffer_mb) << 20;
    r.write_blocks = c.pipeline.batch_blocks;
    r.max_write_delay = std::chrono::milliseconds(c.pipeline.max_batch_delay_ms);
    return r;
  }

  Impl(asio::io_context& io_, Config c, std::vector<sinks::Sink*> s, sinks::CheckpointStore& cp)
      : io(io_), config(std::move(c)), catalog(std::make_shared<abi::EventCatalog>(config.chain.catalog())), sinks(std::move(s)),
        checkpoints(cp), pool(io_.get_executor(), pool_settings(config)),
        range(io_.get_executor(), pool, range_options(config, catalog)),
        heads(ingest::HeadTracker::Options{std::chrono::milliseconds(config.chain.block_interval_ms), config.chain.endpoint_max_lag_blocks}),
        wake(io_) {
    backoff = {std::chrono::milliseconds(config.chain.backoff_initial_ms), std::chrono::milliseconds(config.chain.backoff_max_ms)};
    sink_backoff = {std::chrono::milliseconds(config.pipeline.sink_retry_initial_ms),
                    std::chrono::milliseconds(config.pipeline.sink_retry_max_ms)};
    // Logs-only indexing: the live path fetches headers and the wanted logs, not whole blocks.
    if (config.chain.index_events_only) {
      const abi::EventCatalog::LogFilter f = catalog->log_filter();
      const std::string members = ingest::log_filter_members(f.addresses, f.topic0s);
      for (std::size_t i = 0; i < pool.size(); ++i) pool.at(i).fetcher.fetch_logs_only(members);
    }
  }

  // A wait of its own (the writer and the replay's chunk claims may both be waiting out a
  // database), cut short by a stop.
  Task<void> sleep(std::chrono::milliseconds d) {
    if (stop) co_return;
    asio::steady_timer timer(io, d);
    sleeping.push_back(&timer);
    boost::system::error_code ec;
    co_await timer.async_wait(asio::redirect_error(use_awaitable, ec));
    std::erase(sleeping, &timer);
  }

  // Runs blocking work on the worker thread; the coroutine resumes on the io thread.
  template <class F>
  Task<void> blocking(F f) {
    co_await blocking_on(workers, std::move(f));
  }
  template <class F>
  Task<void> blocking_on(asio::thread_pool& pool, F f) {
    co_await asio::co_spawn(pool, [f = std::move(f)]() -> asio::awaitable<void> {
      f();
      co_return;
    }, use_awaitable);
  }

  // The live write's first step when the sinks are Kafka then Postgres: the Postgres rows are
  // copied (PostgresSink::prepare) while the Kafka transaction runs, and only the Postgres COMMIT
  // waits for Kafka's, so the cursor still never passes a block Kafka lacks. Returns how many
  // sinks are done: 2, or 1 when Kafka committed and Postgres failed (rethrown, to be retried by
  // write()). A Kafka failure rolls the Postgres part back and is rethrown: both are retried.
  // With `from_staged`, Postgres holds the batch prepared already (stage_next), and Kafka too
  // when `kafka_staged`: only the commits are left.
  Task<std::size_t> write_overlapped(sinks::PostgresSink& pg, std::string& failed, bool from_staged, bool kafka_staged) {
    std::exception_ptr kafka_error, pg_error;
    sinks::Sink* kafka = sinks.front();
    const auto began = std::chrono::steady_clock::now();
    auto kafka_part = [&]() -> asio::awaitable<void> {
      try {
        if (kafka_staged) co_await blocking_on(kafka_worker, [&] { overlapped_kafka->commit_prepared(); });
        else co_await blocking_on(kafka_worker, [&] { kafka->write(unwritten); });
      } catch (...) {
        kafka_error = std::current_exception();
      }
    };
    auto pg_part = [&]() -> asio::awaitable<void> {
      try {
        co_await blocking([&] { pg.prepare(unwritten); });
      } catch (...) {
        pg_error = std::current_exception();
      }
    };
    if (from_staged) co_await kafka_part();
    else co_await (kafka_part() && pg_part());
    const auto kafka_done = std::chrono::steady_clock::now();
    if (kafka_error) {
      co_await blocking([&] { pg.abort_prepared(); });
      failed = std::string(kafka->name());
      std::rethrow_exception(kafka_error);
    }
    failed = "postgres";
    if (pg_error) std::rethrow_exception(pg_error);
    co_await blocking([&] { pg.commit_prepared(); });
    const auto us = [](auto d) { return std::chrono::duration_cast<std::chrono::microseconds>(d).count(); };
    spdlog::debug("event=sink_written sink=kafka+postgres blocks={}-{} staged={} us={} kafka_us={}", unwritten.front().number,
                  unwritten.back().number, from_staged, us(std::chrono::steady_clock::now() - began), us(kafka_done - began));
    co_return 2;
  }

  // The live write, staged: while the chain is followed at the head and nothing waits to be
  // written, the block that the next head will confirm is prepared (its Postgres rows copied and
  // the cursor row set, the writer claim checked and held locked; with pipeline.stage_ahead =
  // "all", its Kafka transaction produced and acknowledged by the broker too), so that when that
  // head comes little more than the commits is left. Nothing is published before the block is confirmed: a
  // reorg, a burst of heads or a catch-up aborts the staged write (discard_staged) and the blocks
  // go the usual way. Staging trouble is no error: the write happens at confirmation as before.
  Task<void> stage_next() {
    if (staged || !overlapped_kafka || !live || !unwritten.empty() || stop || config.pipeline.stage_ahead == "off") co_return;
    const schema::Block* next = buffer->next_to_confirm();
    if (!next || next->hash == not_restaged) co_return;
    std::vector<schema::Block> batch{*next};
    co_await decode_children(batch);
    const bool with_kafka = config.pipeline.stage_ahead == "all";
    std::exception_ptr kafka_error, pg_error;
    auto kafka_part = [&]() -> asio::awaitable<void> {
      try {
        if (with_kafka) co_await blocking_on(kafka_worker, [&] { overlapped_kafka->prepare(batch); });
      } catch (...) {
        kafka_error = std::current_exception();
      }
    };
    auto pg_part = [&]() -> asio::awaitable<void> {
      try {
        co_await blocking([&] { overlapped->prepare(batch); });
      } catch (...) {
        pg_error = std::current_exception();
      }
    };
    co_await (kafka_part() && pg_part());
    if (kafka_error || pg_error) {
      std::string why;
      try {
        std::rethrow_exception(kafka_error ? kafka_error : pg_error);
      } catch (const std::exception& e) {
        why = e.what();
      }
      spdlog::debug("event=stage_skipped block={} reason=\"{}\"", batch.back().number, why);
      co_await abort_prepared(with_kafka);
      co_return;
    }
    staged = Staged{batch.back().ref(), std::chrono::steady_clock::now(), with_kafka};
  }

  // Aborts a staged write in both sinks (nothing of it was published).
  Task<void> discard_staged(const char* reason) {
    if (!staged) co_return;
    const bool kafka = staged->kafka;
    spdlog::info("event=staged_write_dropped block={} hash={} reason=\"{}\"", staged->block.number, schema::to_hex(staged->block.hash), reason);
    if (metrics) metrics->staged_write_dropped();
    staged.reset();
    co_await abort_prepared(kafka);
  }
  Task<void> abort_prepared(bool kafka) {
    if (kafka) co_await blocking_on(kafka_worker, [&] {
      try {
        overlapped_kafka->abort_prepared();
      } catch (const std::exception& e) {
        // Left to the next write, which aborts it again first (or stops, when fenced).
        spdlog::warn("event=kafka_abort_deferred reason=\"{}\"", e.what());
      }
    });
    co_await blocking([&] { overlapped->abort_prepared(); });
  }

  // A call to a sink outside the batch writes (cursor, replay chunks): database trouble is waited
  // out with backoff and logged; a refusal or a fence ends the run. False when a stop came first.
  template <class F>
  Task<bool> with_sink(const char* what, F f) {
    for (unsigned attempt = 0;; ++attempt) {
      std::string problem;
      try {
        co_await blocking(f);
        co_return true;
      } catch (const sinks::SinkError& e) {
        if (!e.retryable()) throw Fatal{e.kind() == sinks::SinkError::Kind::kFenced ? kExitFenced : kExitSinkRefused, e.what()};
        problem = e.what();
      }
      if (stop) co_return false;
      auto delay = sink_backoff.delay(attempt, std::uniform_real_distribution<double>(0, 1)(rng));
      spdlog::warn("event=sink_retry op={} attempt={} backoff_ms={} reason=\"{}\"", what, attempt + 1, delay.count(), problem);
      co_await sleep(delay);
    }
  }

  // chain.verify_with = N: before a batch is written, its newest block's hash is asked of the N + 1
  // best endpoints (one of them may have served it); the batch is linked by parent hashes below
  // it and to the cursor, so one hash vouches for all of it. N agreeing answers and none
  // against: written. Any answer against: every endpoint is asked, and the majority decides.
  // Ours in the majority: those that said otherwise are put in quarantine. Ours in the minority:
  // those that said ours are, and the batch is discarded and fetched again (Unverified). No
  // majority, or too few answers: held, and asked again after a back-off.
  Task<void> verify_top() {
    const std::size_t n = config.chain.verify_with;
    const std::chrono::milliseconds deadline(config.chain.http_timeout_seconds * 1000);
    for (unsigned attempt = 0; !stop; ++attempt) {
      const schema::BlockRef ours = unwritten.back().ref();
      std::vector<std::size_t> verifiers = pool.ranked();
      if (verifiers.size() > n + 1) verifiers.resize(n + 1);
      auto answers = co_await pool.ask_headers(verifiers, ours.number, deadline);
      std::size_t agree = 0, against = 0;
      for (const auto& a : answers) {
        if (!a) continue;
        if (a->hash == ours.hash) ++agree;
        else ++against;
      }
      if (against == 0 && agree >= n) co_return;
      std::string problem;
      if (against > 0) {
        // Everyone votes.
        std::vector<std::size_t> all = pool.ranked();
        auto votes = co_await pool.ask_headers(all, ours.number, deadline);
        std::map<schema::Hash32, std::size_t> tally;
        std::size_t voted = 0;
        for (const auto& v : votes)
          if (v) ++tally[v->hash], ++voted;
        std::optional<schema::Hash32> majority;
        for (const auto& [hash, count] : tally)
          if (2 * count > voted) majority = hash;
        if (majority) {
          for (std::size_t i = 0; i < votes.size(); ++i) {
            if (!votes[i] || votes[i]->hash == *majority) continue;
            ++contradicted;
            spdlog::warn("event=endpoint_contradicted endpoint={} block={} its_hash={} majority_hash={} votes={}/{} contradicted_total={}",
                         pool.names()[i], ours.number, schema::to_hex(votes[i]->hash), schema::to_hex(*majority), tally[*majority], voted,
                         contradicted);
            pool.quarantine(i, "its block " + std::to_string(ours.number) + " is not the one the majority of endpoints has (chain.verify_with)");
          }
          if (*majority == ours.hash) co_return;
          spdlog::warn("event=batch_refused blocks={}-{} top_hash={} majority_hash={} reason=\"the endpoints that served it are contradicted by the majority: not written, fetched again\"",
                       unwritten.front().number, ours.number, schema::to_hex(ours.hash), schema::to_hex(*majority));
          throw Unverified{};
        }
        problem = "no majority among " + std::to_string(voted) + " answers";
      } else {
        problem = std::to_string(agree) + " of the " + std::to_string(n) + " answers needed (chain.verify_with)";
      }
      auto delay = backoff.delay(attempt, std::uniform_real_distribution<double>(0, 1)(rng));
      spdlog::warn("event=verify_hold block={} hash={} attempt={} backoff_ms={} reason=\"{}\"", ours.number, schema::to_hex(ours.hash),
                   attempt + 1, delay.count(), problem);
      co_await sleep(delay);
    }
  }

  // A batch reached every sink: the cursor, the counters, and for a live batch the time from the
  // head that confirmed it.
  void report_written(std::chrono::steady_clock::time_point began) {
    const auto now = std::chrono::steady_clock::now();
    if (status) {
      const schema::Block& last = unwritten.back();
      status->cursor = last.number;
      status->cursor_hash = schema::to_hex(last.hash);
      status->cursor_timestamp = last.timestamp;
      status->last_write = now;
      status->waiting_since.reset();
      status->sink_problem.clear();
      status->confirmed_top = confirmed_top();
    }
    if (!metrics) return;
    std::uint64_t txs = 0, logs = 0;
    for (const auto& b : unwritten) {
      txs += b.transactions.size();
      logs += b.logs.size();
    }
    const double seconds = std::chrono::duration<double>(now - began).count();
    for (auto* sink : sinks) metrics->written(sink->name(), unwritten.size(), txs, logs, seconds);
    if (!catalog->empty()) report_events();
    if (live && !catching_up && head_at != std::chrono::steady_clock::time_point{})
      metrics->head_to_write(std::chrono::duration<double>(now - head_at).count());
    metrics->buffer_blocks(buffer ? buffer->unconfirmed_size() : 0);
  }

  // The addresses factories made, from the factory events' tables as written: at each start of
  // a run (and so again whenever the stored cursor went back), now and then while it runs (a
  // replay may have written factory events below the cursor), and at each chunk of a replay
  // (kept with those the replay made itself: with `keep`). False when a stop came first.
  Task<bool> load_children(bool keep = false) {
    if (!catalog->has_factories()) co_return true;
    children_loaded_at = std::chrono::steady_clock::now();
    abi::FactoryChildren loaded;
    auto load = [&] {
      loaded.clear();
      for (const auto& s : catalog->factory_sources()) {
        const schema::EventTable& t = catalog->tables()[s.table];
        for (const auto& [address, block] : checkpoints.addresses_in(t.table, t.columns[s.column].name)) loaded.add({address, s.child, block});
      }
    };
    if (!co_await with_sink("load_factory_contracts", load)) co_return false;
    const std::size_t before = children.size();
    if (keep) {
      for (const auto& s : catalog->factory_sources())
        for (const abi::FactoryChild& c : children.of(s.child)) loaded.add(c);
    }
    children = std::move(loaded);
    if (children.size() != before) spdlog::info("event=factory_contracts_loaded count={}", children.size());
    report_children();
    co_return true;
  }

  // The factory step of the batch about to be written (EventCatalog::decode_children), off the
  // network thread: the addresses it makes are known once it is written.
  Task<std::vector<abi::FactoryChild>> decode_children(std::vector<schema::Block>& batch) {
    std::vector<abi::FactoryChild> made;
    if (!catalog->has_factories()) co_return made;
    co_await blocking([&] { made = catalog->decode_children(batch, children, config.chain.index_events_only); });
    co_return made;
  }

  void report_children() {
    if (!metrics) return;
    for (const auto& s : catalog->factory_sources())
      metrics->factory_contracts(catalog->contracts()[s.child].name, children.count(s.child));
  }

  // The decoded and undecodable events of the written batch, per contract event.
  void report_events() {
    const auto& tables = catalog->tables();
    std::vector<std::uint64_t> decoded(tables.size()), failed(tables.size());
    for (const auto& b : unwritten)
      for (const auto& e : b.events) ++(e.error.empty() ? decoded : failed)[e.table];
    std::map<std::string_view, std::uint64_t> failed_by_contract;
    for (std::size_t t = 0; t < tables.size(); ++t) {
      if (decoded[t]) metrics->events_written(tables[t].contract, tables[t].event, decoded[t]);
      if (failed[t]) failed_by_contract[tables[t].contract] += failed[t];
    }
    for (const auto& [contract, n] : failed_by_contract) metrics->undecodable_written(contract, n);
  }

  // Writes `unwritten` to every sink in order, retrying only the sink that failed, with a
  // growing backoff and a log line per attempt, for as long as it takes: no new batch is taken
  // meanwhile (back-pressure), so memory stays flat however long a sink is away. First the
  // writer claim is checked, so a replaced instance publishes nothing more.
  Task<void> write_unwritten() {
    if (unwritten.empty()) co_return;
    if (live && config.chain.verify_with > 0) co_await verify_top();
    // The staged write is used when it is exactly this batch; otherwise it is aborted first.
    // Its Postgres transaction checked the writer claim and holds it locked until it commits,
    // after Kafka's: no separate check is needed before publishing.
    bool from_staged = staged && unwritten.size() == 1 && unwritten.back().hash == staged->block.hash;
    const bool kafka_staged = from_staged && staged->kafka;
    if (staged && !from_staged) co_await discard_staged("the blocks confirmed are not the one staged (a reorg or a burst of heads)");
    staged.reset();
    const std::vector<abi::FactoryChild> made = co_await decode_children(unwritten);
    const auto batch_began = std::chrono::steady_clock::now();
    std::size_t i = 0;
    bool writer_checked = from_staged;
    for (unsigned attempt = 0; i < sinks.size(); ++attempt) {
      std::string failed = "postgres";
      std::string problem;
      try {
        if (!writer_checked && live) {
          co_await blocking([&] { checkpoints.check_writer(); });
          writer_checked = true;
        }
        // The first attempt of a live batch writes both sinks at once; retries go one by one.
        if (i == 0 && attempt == 0 && overlapped) {
          i = 1;  // should the Postgres part fail, Kafka's is done
          std::size_t done = 0;
          try {
            done = co_await write_overlapped(*overlapped, failed, std::exchange(from_staged, false), kafka_staged);
          } catch (...) {
            if (failed != "postgres") i = 0;
            writer_checked = false;
            throw;
          }
          i = done;
        }
        for (; i < sinks.size(); ++i) {
          sinks::Sink* sink = sinks[i];
          failed = std::string(sink->name());
          const auto began = std::chrono::steady_clock::now();
          co_await blocking([&] { sink->write(unwritten); });
          spdlog::debug("event=sink_written sink={} blocks={}-{} us={}", failed, unwritten.front().number, unwritten.back().number,
                        std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() - began).count());
          attempt = 0;
        }
        break;
      } catch (const sinks::SinkError& e) {
        using Kind = sinks::SinkError::Kind;
        if (e.kind() == Kind::kFenced) throw Fatal{kExitFenced, e.what()};
        if (e.kind() == Kind::kRefused)
          throw Fatal{kExitSinkRefused, std::string("sink ") + failed + " refused blocks " + std::to_string(unwritten.front().number) +
                                            "-" + std::to_string(unwritten.back().number) + ": " + e.what()};
        problem = e.what();
      }
      if (stop) {
        throw Fatal{kExitStoppedUncommitted,
                    std::string("stopped before blocks ") + std::to_string(unwritten.front().number) + "-" +
                        std::to_string(unwritten.back().number) + " were committed (sink " + failed + ": " + problem +
                        "); the next start writes them from the cursor"};
      }
      if (metrics) metrics->sink_retry(failed);
      if (status) {
        if (!status->waiting_since) status->waiting_since = std::chrono::steady_clock::now();
        status->sink_problem = failed + ": " + problem;
      }
      auto delay = sink_backoff.delay(attempt, std::uniform_real_distribution<double>(0, 1)(rng));
      spdlog::warn("event=sink_retry sink={} blocks={}-{} attempt={} backoff_ms={} reason=\"{}\"", failed, unwritten.front().number,
                   unwritten.back().number, attempt + 1, delay.count(), problem);
      co_await sleep(delay);
    }
    spdlog::info("event=confirmed blocks={}-{} count={} last_hash={}", unwritten.front().number, unwritten.back().number,
                 unwritten.size(), schema::to_hex(unwritten.back().hash));
    for (const abi::FactoryChild& c : made) {
      children.add(c);
      spdlog::debug("event=factory_contract contract={} address={} block={}", catalog->contracts()[c.contract].name,
                    schema::to_hex(c.address), c.block);
    }
    if (!made.empty()) report_children();
    report_written(batch_began);
    written = unwritten.back().ref();
    for (const auto& b : unwritten) {
      recent.push_back(b.ref());
      if (recent.size() > config.chain.repoll_blocks) recent.pop_front();
    }
    unwritten.clear();
  }

  // The range engine's writer: each batch goes through write_unwritten (retries, back-pressure).
  ingest::RangeFetcher::Write to_sinks() {
    return [this](std::vector<schema::Block> batch) -> Task<void> {
      unwritten = std::move(batch);
      co_await write_unwritten();
    };
  }

  Task<std::optional<schema::Block>> fetch(const reorg::FetchRequest& req) {
    using ingest::BlockFetcher;
    std::optional<std::optional<schema::Block>> r;
    if (req.kind == reorg::FetchRequest::Kind::kByNumber) {
      auto op = [n = req.number](BlockFetcher& f) { return f.by_number(n); };
      std::string subject = "block " + std::to_string(req.number);
      r = co_await pool.run<std::optional<schema::Block>>("fetch_by_number", op, std::move(subject), req.number);
    } else {
      auto op = [h = req.hash](BlockFetcher& f) { return f.by_hash(h); };
      std::string subject = "block " + schema::to_hex(req.hash);
      r = co_await pool.run<std::optional<schema::Block>>("fetch_by_hash", op, std::move(subject));
    }
    if (r && *r && config.chain.index_events_only) catalog->keep_wanted_logs(**r);
    if (r && *r && !catalog->empty()) catalog->decode(**r);
    co_return r ? std::move(*r) : std::nullopt;
  }

  // The head over HTTP, from the best endpoint (replay's check of how far it may go).
  Task<std::optional<schema::BlockRef>> http_head() {
    auto op = [](ingest::BlockFetcher& f) { return f.latest_head(); };
    auto head = co_await pool.run<schema::BlockRef>("latest_head", op);
    co_return head;
  }

  // A head from the WebSocket subscription on endpoint `at`.
  void on_ws_head(const schema::BlockRef& head, std::size_t at) {
    if (pool.names().size() > 1 && heads.jump(head.number, std::nullopt, std::chrono::steady_clock::now())) {
      // Far above the best head: the survey, which asks the other endpoints for it, decides.
      spdlog::debug("event=head_unbacked endpoint={} head={} source=websocket reason=\"far above the best head: every endpoint is asked\"",
                    pool.names()[at], head.number);
      last_survey = {};
      wake.cancel();
      return;
    }
    pool.record_head(at, head.number);
    if (!heads.on_head(head.number, ingest::HeadTracker::Source::kWebSocket, std::chrono::steady_clock::now())) {
      const std::string why = "its head " + std::to_string(head.number) + " is more than " +
                              std::to_string(config.chain.endpoint_max_lag_blocks) + " blocks behind the best head " +
                              std::to_string(*heads.best()) + " (chain.endpoint_max_lag_blocks)";
      spdlog::warn("event=lagging_endpoint endpoint={} head={} best_head={} source=websocket", pool.names()[at], head.number, *heads.best());
      head_subscriber->drop(why);
      return;
    }
    latest_head = head;
    saw_head(head);
    wake.cancel();
  }

  // Every endpoint's head at once: the best one that does not lag becomes the newest head; an
  // endpoint that lags is noted (it serves no head, and no block above its own head); the live
  // subscription is dropped when it went stale while the chain moved on, or when its endpoint lags.
  Task<void> survey_heads() {
    last_survey = std::chrono::steady_clock::now();
    const auto deadline = std::max(std::chrono::milliseconds(2000), 2 * heads.block_interval());
    auto answers = co_await pool.survey_heads(deadline);
    if (stop) co_return;
    co_await drop_unbacked_jumps(answers, deadline);
    if (stop) co_return;
    for (std::size_t i = 0; i < answers.size(); ++i)
      if (answers[i]) pool.record_head(i, answers[i]->number);
    const auto now = std::chrono::steady_clock::now();
    std::vector<std::size_t> order;
    for (std::size_t i = 0; i < answers.size(); ++i)
      if (answers[i]) order.push_back(i);
    // The highest first, so that the others are judged against it.
    std::sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) { return answers[a]->number > answers[b]->number; });
    lagging.resize(answers.size(), false);
    std::optional<schema::BlockRef> best;
    for (std::size_t i : order) {
      const bool lags = !heads.on_head(answers[i]->number, ingest::HeadTracker::Source::kHttp, now);
      if (lags != lagging[i]) {
        if (lags)
          spdlog::warn("event=lagging_endpoint endpoint={} head={} best_head={} reason=\"more than {} blocks behind (chain.endpoint_max_lag_blocks): it serves no head, and no block above its own\"",
                       pool.names()[i], answers[i]->number, *heads.best(), config.chain.endpoint_max_lag_blocks);
        else
          spdlog::info("event=endpoint_caught_up endpoint={} head={}", pool.names()[i], answers[i]->number);
        lagging[i] = lags;
      }
      if (!lags && !best) best = answers[i];
    }
    if (best) {
      saw_head(*best);
      if (!latest_head || best->number > latest_head->number) latest_head = *best;
    }
    if (!head_subscriber) co_return;
    if (auto why = heads.stale_websocket(now)) {
      head_subscriber->drop(*why);
    } else if (auto at = head_subscriber->live_endpoint(); at && *at < lagging.size() && lagging[*at]) {
      head_subscriber->drop("its endpoint lags more than " + std::to_string(config.chain.endpoint_max_lag_blocks) +
                            " blocks behind the best head (chain.endpoint_max_lag_blocks)");
    }
  }

  // A head far above the best and above every other endpoint's (HeadTracker::jump) is believed
  // only when another endpoint has that block: otherwise one endpoint's wrong or hostile head
  // would make every honest endpoint look lagging, and nothing would be confirmed. An answer
  // nobody backs is dropped (event=head_unbacked); the endpoint's later heads are judged again.
  Task<void> drop_unbacked_jumps(std::vector<std::optional<schema::BlockRef>>& answers, std::chrono::milliseconds deadline) {
    if (answers.size() < 2) co_return;
    const auto now = std::chrono::steady_clock::now();
    for (std::size_t i = 0; i < answers.size() && !stop; ++i) {
      if (!answers[i]) continue;
      std::optional<std::uint64_t> others;
      std::vector<std::size_t> ask;
      for (std::size_t j = 0; j < answers.size(); ++j) {
        if (j == i) continue;
        ask.push_back(j);
        if (answers[j]) others = std::max(others.value_or(0), answers[j]->number);
      }
      if (!heads.jump(answers[i]->number, others, now)) continue;
      const schema::BlockRef claim = *answers[i];
      auto theirs = co_await pool.ask_headers(ask, claim.number, deadline);
      bool backed = false;
      for (const auto& t : theirs) backed |= t && t->hash == claim.hash;
      if (backed) continue;
      ++unbacked_heads;
      if (metrics) metrics->unbacked_head();
      spdlog::warn("event=head_unbacked endpoint={} head={} best_head={} other_heads={} reason=\"no other endpoint has block {} and the chain's pace does not reach it: not believed\"",
                   pool.names()[i], claim.number, heads.best() ? std::to_string(*heads.best()) : std::string("none"),
                   others ? std::to_string(*others) : std::string("none"), claim.number);
      answers[i].reset();
    }
  }

  void on_subscription(std::optional<std::size_t> at) {
    if (stop) return;
    heads.on_subscription(at.has_value(), std::chrono::steady_clock::now());
    if (status) status->head_source = at ? "websocket" : "http_poll";
    if (!at && metrics) metrics->ws_reconnect();
    if (at) spdlog::info("event=head_source source=websocket endpoint={}", pool.names()[*at]);
    else
      spdlog::info("event=head_source source=http_poll poll_ms={} reason=\"no live WebSocket subscription\"", heads.poll_after().count());
  }

  void saw_head(const schema::BlockRef& head) {
    if (!newest_head || head.number > newest_head->number) {
      newest_head = head;
      head_at = std::chrono::steady_clock::now();
    }
    if (status) {
      status->head = newest_head->number;
      status->head_at = head_at;
      status->confirmed_top = confirmed_top();
    }
  }

  // The endpoints' states and heads, for /status and the metrics.
  void report_endpoints() {
    if (!status) return;
    const auto names = pool.names();
    status->endpoints.resize(names.size());
    const std::uint64_t best = pool.best_head();
    for (std::size_t i = 0; i < names.size(); ++i) {
      auto& e = status->endpoints[i];
      e.name = names[i];
      switch (pool.at(i).health.state(best)) {
        case ingest::EndpointState::kHealthy: e.state = "healthy"; break;
        case ingest::EndpointState::kDegraded: e.state = "degraded"; break;
        case ingest::EndpointState::kOpen: e.state = "open"; break;
        case ingest::EndpointState::kProbing: e.state = "probing"; break;
      }
      e.head = pool.at(i).health.head();
      e.lagging = i < lagging.size() && lagging[i];
      e.rate = pool.at(i).rpc.current_rate();
      e.rate_wait_seconds = std::chrono::duration<double>(pool.at(i).rpc.rate_wait()).count();
    }
  }

  // More than a write batch of blocks at confirmed depth behind: fetch them as ranges (the range
  // engine), then start the buffer again from the last block written. The buffer's unconfirmed
  // blocks were never written, so dropping them loses nothing; the buffer fetches from the new
  // cursor up, linked to it, so the seam has no gap and no duplicate.
  // The newest block that counts as confirmed now: head - confirmations, or the node's tagged
  // block when chain.confirmations is "safe" / "finalized".
  std::optional<std::uint64_t> confirmed_top() const {
    if (!config.chain.confirm_tag.empty()) return final_block ? std::optional<std::uint64_t>(final_block->number) : std::nullopt;
    if (!newest_head || newest_head->number < config.chain.confirmations) return std::nullopt;
    return newest_head->number - config.chain.confirmations;
  }

  // Asks for the node's safe / finalized block when the head moved since the last time.
  Task<void> refresh_final() {
    if (config.chain.confirm_tag.empty() || !newest_head || final_asked_at == newest_head->number) co_return;
    final_asked_at = newest_head->number;
    auto op = [tag = config.chain.confirm_tag](ingest::BlockFetcher& f) { return f.tagged_header(tag); };
    std::string subject = "the node's " + config.chain.confirm_tag + " block";
    auto tagged = co_await pool.run<std::optional<schema::BlockRef>>("tagged_block", op, std::move(subject));
    if (tagged && *tagged && (!final_block || (*tagged)->number >= final_block->number)) final_block = **tagged;
  }

  // Moves what the buffer confirmed (by depth, or up to the node's tagged block) to `unwritten`.
  void take_confirmed() {
    if (final_block) buffer->on_final(*final_block);
    for (auto& b : buffer->take_confirmed()) {
      if (unwritten.empty()) unwritten_since = std::chrono::steady_clock::now();
      unwritten.push_back(std::move(b));
    }
  }

  Task<void> catch_up() {
    co_await refresh_final();
    const std::optional<std::uint64_t> top_now = confirmed_top();
    if (!top_now) co_return;
    const std::uint64_t top = *top_now;
    const auto& confirmed = buffer->last_confirmed();
    const std::uint64_t from = confirmed ? confirmed->number + 1 : config.chain.start_block;
    if (top < from || top - from + 1 < config.pipeline.batch_blocks) co_return;
    co_await write_unwritten();
    co_await discard_staged("a catch-up by ranges");
    if (stop) co_return;
    const std::optional<schema::BlockRef> cursor = buffer->last_confirmed();
    spdlog::info("event=catch_up from={} to={} head={} blocks={}", from, top, newest_head->number, top - from + 1);
    catching_up = true;
    struct Done {
      bool& flag;
      LiveStatus* status;
      ~Done() {
        flag = false;
        if (status) status->catching_up = false;
      }
    } done{catching_up, status};
    if (status) status->catching_up = true;
    const auto stats_before = range.stats();
    const auto started = std::chrono::steady_clock::now();
    std::optional<schema::BlockRef> written;
    try {
      ingest::RangeFetcher::Write write = to_sinks();
      written = co_await range.run(from, top, cursor, std::move(write));
    } catch (const ingest::RangeDeepReorg& d) {
      throw Fatal{kExitDeepReorg, std::string("deep reorg: ") + d.what() + ". Policy 'halt': stopping with the cursor at " +
                                      std::to_string(d.ours().number) + ". Replay from below the fork once the cause is understood."};
    }
    const auto& st = range.stats();
    const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
    spdlog::info("event=caught_up to={} blocks={} logs={} seconds={:.1f} blocks_per_s={:.0f}", written ? written->number : 0,
                 st.blocks - stats_before.blocks, st.logs - stats_before.logs, secs,
                 static_cast<double>(st.blocks - stats_before.blocks) / std::max(secs, 1e-3));
    buffer.emplace(reorg::BufferConfig{config.chain.confirmations, config.chain.start_block}, written);
    if (!latest_head) latest_head = newest_head;
  }

  void give_head_to_buffer() {
    if (!latest_head) return;
    auto r = buffer->on_head(*latest_head);
    if (r.reverted > 0) spdlog::warn("event=rollback to_block={} reverted={}", latest_head->number, r.reverted);
    latest_head.reset();
  }

  // The backup re-poll: the newest written blocks' hashes compared with the node's again, by
  // number, in batches. A difference is a reorg below the cursor that the live path missed (an
  // outage during it, a provider that served a stale branch): asked once more, of the best
  // endpoint, and if it stands, handled by the deep-reorg policy rather than left in the tables.
  Task<void> repoll() {
    last_repoll = std::chrono::steady_clock::now();
    if (recent.empty()) co_return;
    // Only what is contiguous up to the cursor (a catch-up may have written before `recent`).
    const std::uint64_t last = recent.back().number;
    const std::uint64_t first = recent.front().number;
    constexpr std::uint64_t kBatch = 10;  // within any provider's burst
    for (std::uint64_t from = first; from <= last && !stop; from += kBatch) {
      const std::uint64_t to = std::min(last, from + kBatch - 1);
      auto op = [from, to](ingest::BlockFetcher& f) { return f.headers_by_number(from, to); };
      std::string subject = "blocks " + std::to_string(from) + "-" + std::to_string(to);
      auto node = co_await pool.run<std::vector<std::optional<schema::BlockRef>>>("repoll", op, std::move(subject), to);
      if (!node) co_return;
      for (std::size_t k = 0; k < node->size(); ++k) {
        const schema::BlockRef& ours = recent[from - first + k];
        const auto& theirs = (*node)[k];
        if (ours.number != from + k) co_return;  // not contiguous: nothing to compare by position
        if (!theirs || theirs->hash == ours.hash) continue;  // a node without the block proves nothing
        auto again_op = [n = ours.number](ingest::BlockFetcher& f) { return f.header_by_number(n); };
        std::string again_subject = "block " + std::to_string(ours.number);
        auto again = co_await pool.run<std::optional<schema::BlockRef>>("repoll_confirm", again_op, std::move(again_subject), ours.number);
        if (!again || !*again || (*again)->hash == ours.hash) continue;
        spdlog::error("event=deep_reorg source=repoll block={} stored_hash={} node_hash={} cursor={}", ours.number, schema::to_hex(ours.hash),
                      schema::to_hex((*again)->hash), recent.back().number);
        throw Fatal{kExitDeepReorg, "deep reorg found by the re-poll: the stored block " + std::to_string(ours.number) + " (" +
                                        schema::to_hex(ours.hash) + ") is no longer the node's (" + schema::to_hex((*again)->hash) +
                                        "), a reorg below the cursor that the live path missed. Policy 'halt': stopping with the cursor at " +
                                        std::to_string(recent.back().number) + ". Replay from below block " + std::to_string(ours.number) +
                                        " once the cause is understood"};
      }
    }
    spdlog::debug("event=repoll_ok blocks={}-{}", first, last);
  }

  // A batch whose top the other endpoints contradict (chain.verify_with): it was discarded, and
  // the endpoints that served it are in quarantine; fetch again from the last block written.
  struct Unverified {};

  Task<void> follow() {
    // Seed from HTTP so that a quiet chain still catches up before its next head.
    co_await survey_heads();
    while (!stop) {
      bool refetch = false;
      try {
        co_await follow_step();
      } catch (const Unverified&) {
        refetch = true;
      }
      if (refetch) {
        co_await discard_staged("the other endpoints contradicted the chain");
        start_again_from_written();
      }
    }
    try {
      co_await write_unwritten();
    } catch (const Unverified&) {
      // Stopping: the next start fetches them again from the cursor.
    }
    co_await discard_staged("stopping");
  }

  void start_again_from_written() {
    unwritten.clear();
    buffer.emplace(reorg::BufferConfig{config.chain.confirmations, config.chain.start_block}, written);
    latest_head.reset();
    newest_head.reset();
    last_survey = {};  // ask every endpoint's head again now
    spdlog::info("event=refetch_from block={} reason=\"the batch above it was contradicted by the other endpoints\"",
                 written ? std::to_string(written->number) : std::string("none"));
  }

  // One turn of the live loop: catch up, take a head, fetch one block or wait, write.
  // The periodic chores (every endpoint's head, the re-poll) run while the live loop is idle, so
  // that no head waits for them; when it is never idle (a long gap filled block by block), they
  // run anyway once twice overdue.
  Task<void> chores(bool idle) {
    const int slack = idle ? 1 : 2;
    if (std::chrono::steady_clock::now() - last_survey >= slack * heads.survey_every()) co_await survey_heads();
    if (config.chain.repoll_interval_seconds > 0 &&
        std::chrono::steady_clock::now() - last_repoll >= slack * std::chrono::seconds(config.chain.repoll_interval_seconds))
      co_await repoll();
    // Factory events a replay wrote below the cursor name addresses this run must know. Not
    // while a write is staged: it was decoded with the addresses known then.
    const std::chrono::seconds reload =
        config.chain.repoll_interval_seconds > 0 ? std::chrono::seconds(config.chain.repoll_interval_seconds) : kChildrenReload;
    if (catalog->has_factories() && !staged && std::chrono::steady_clock::now() - children_loaded_at >= slack * reload)
      co_await load_children();
  }

  Task<void> follow_step() {
    co_await catch_up();
    if (stop) co_return;
    co_await chores(/*idle=*/false);
    if (stop) co_return;
    // A staged write waits for the head that confirms it: about one block interval. It must not
    // hold its locks much longer than that (a new instance claiming the chain waits for them),
    // nor keep its Kafka transaction open until the broker times it out: after three block
    // intervals (at least 1 s, at most half of kafka.transaction_timeout_seconds) without that
    // head it is dropped, and its block is written the usual way when the head comes.
    const auto staged_for = std::clamp<std::chrono::steady_clock::duration>(
        3 * heads.block_interval(), std::chrono::seconds(1), std::chrono::seconds(config.kafka.transaction_timeout_seconds) / 2);
    if (staged && std::chrono::steady_clock::now() - staged->at > staged_for) {
      not_restaged = staged->block.hash;
      co_await discard_staged("no head for three block intervals: its locks are let go");
    }
    give_head_to_buffer();
    auto req = buffer->next_fetch();
    // A head that extends the tip confirms as it arrives (BlockBuffer::on_head): when nothing but
    // its body is missing, the confirmed blocks are written before that body is fetched.
    if (req && req->kind == reorg::FetchRequest::Kind::kByHash && buffer->pending_size() == 0 && buffer->tip() &&
        req->number == buffer->tip()->number + 1) {
      take_confirmed();
      co_await write_unwritten();
      if (stop) co_return;
    }
    if (!req) {
      take_confirmed();
      co_await write_unwritten();
      co_await stage_next();
      if (!stop && !latest_head) co_await chores(/*idle=*/true);
      if (stop || latest_head) co_return;
      // No head for a while (a block interval with no live subscription, three with one): ask
      // over HTTP. That keeps confirmation going while every WebSocket is down, and finds a
      // subscription that went quiet while the chain moved on.
      wake.expires_after(heads.poll_after());
      boost::system::error_code ec;
      co_await wake.async_wait(asio::redirect_error(use_awaitable, ec));
      if (!ec && !stop) co_await survey_heads();
      co_return;
    }
    auto block = co_await fetch(*req);
    if (stop) co_return;
    if (status && block && block->number >= status->head.value_or(0)) status->head_timestamp = block->timestamp;
    if (!block) {
      buffer->on_fetch_missing(*req);
      co_return;
    }
    using Kind = reorg::AddResult::Kind;
    std::uint64_t number = block->number;
    std::string hash = schema::to_hex(block->hash);
    auto r = buffer->add_block(std::move(*block));
    switch (r.kind) {
      case Kind::kReorged:
        spdlog::warn("event=reorg new_block={} new_hash={} reverted={}", number, hash, r.reverted);
        if (metrics) metrics->reorg(r.reverted);
        break;
      case Kind::kStaleBranch:
        spdlog::warn("event=stale_branch_dropped cursor={}", buffer->last_confirmed()->number);
        break;
      case Kind::kUnexpected:
        spdlog::warn("event=unexpected_block block={} hash={}", number, hash);
        break;
      case Kind::kDeepReorg: {
        const auto& d = *buffer->deep_reorg();
        for (auto& b : buffer->take_confirmed()) unwritten.push_back(std::move(b));
        co_await write_unwritten();
        throw Fatal{kExitDeepReorg,
                    "deep reorg: the node's chain no longer contains confirmed block " + std::to_string(d.last_confirmed.number) +
                        " (" + schema::to_hex(d.last_confirmed.hash) + "); its branch at block " + std::to_string(d.branch_block.number) +
                        " (" + schema::to_hex(d.branch_block.hash) + ") forks below it. Policy 'halt': stopping with the cursor at " +
                        std::to_string(d.last_confirmed.number) + ". Replay from below the fork once the cause is understood."};
      }
      default:
        break;
    }
    take_confirmed();
    // Full, or waited long enough: a slow catch-up must not hold confirmed blocks back.
    if (unwritten.size() >= config.pipeline.batch_blocks ||
        (!unwritten.empty() &&
         std::chrono::steady_clock::now() - unwritten_since >= std::chrono::milliseconds(config.pipeline.max_batch_delay_ms)))
      co_await write_unwritten();
  }

  // The live run. When the database's cursor is found behind what this process wrote (it lost
  // its newest commits: a crash under synchronous_commit = off, a failover to a replica that
  // lagged), the run starts over from the stored cursor, as a restart would, without leaving the
  // process: Postgres is written again from there, and Kafka skips what it already holds (its
  // published tip, kept by the sink).
  Task<int> run() {
    for (;;) {
      try {
        Task<int> body = run_checked();
        co_return co_await halting(std::move(body));
      } catch (const sinks::CursorBehind& e) {
        spdlog::warn("event=cursor_rewound stored_cursor={} written={} reason=\"{}\" action=\"writing again from the stored cursor\"",
                     e.stored(), written ? std::to_string(written->number) : std::string("none"), e.what());
        if (metrics) metrics->cursor_rewound();
      }
      co_await discard_staged("the stored cursor went back");
      unwritten.clear();
      recent.clear();
      latest_head.reset();
      if (stop) co_return kExitOk;
    }
  }

  // Runs `body`; a halt it raises is logged and becomes its exit code.
  Task<int> halting(Task<int> body) {
    Fatal fatal{kExitFatal, ""};
    try {
      co_return co_await std::move(body);
    } catch (const Fatal& f) {
      fatal = f;
    } catch (const ingest::PoolError& e) {
      using Kind = ingest::PoolError::Kind;
      fatal = {e.kind() == Kind::kWrongChain ? kExitChainIdMismatch : e.kind() == Kind::kUndecodable ? kExitUndecodable : kExitEndpointsRefused,
               e.what()};
    }
    spdlog::error("event=halt exit_code={} message=\"{}\"", fatal.code, fatal.message);
    if (status) status->halted = fatal.message;
    co_return fatal.code;
  }

  // --- replay -----------------------------------------------------------------------------

  // The Postgres part of a replay's sinks: the idempotent range write under the lease of the
  // chunk being written (the first held). The chunk claimed ahead of it is renewed with every
  // batch too, so that its lease cannot run out while it waits its turn.
  struct RangeWrite final : sinks::Sink {
    sinks::PostgresSink* postgres = nullptr;
    std::deque<sinks::PostgresSink::Lease> held;  // claimed and not finished, in writing order
    bool rows = true;
    std::string_view name() const override { return "postgres"; }
    void write(std::span<const schema::Block> blocks) override {
      for (std::size_t i = rows ? 1 : 0; i < held.size(); ++i) postgres->renew_lease(held[i]);
      if (rows) postgres->write_range(blocks, held.empty() ? nullptr : &held.front());
    }
  };
  RangeWrite range_write;

  Task<std::optional<schema::BlockRef>> node_header(std::uint64_t n) {
    auto op = [n](ingest::BlockFetcher& f) { return f.header_by_number(n); };
    std::string subject = "block " + std::to_string(n);
    auto h = co_await pool.run<std::optional<schema::BlockRef>>("header", op, std::move(subject));
    co_return h ? *h : std::nullopt;
  }

  Task<int> replay(ReplayRequest r, sinks::PostgresSink& pg) {
    Task<int> body = replay_checked(std::move(r), pg);
    co_return co_await halting(std::move(body));
  }

  Task<int> replay_checked(ReplayRequest r, sinks::PostgresSink& pg) {
    live = false;
    // On a terminal, a progress line redrawn every second; elsewhere a log line every 5 s.
    range.set_terminal_progress(isatty(STDERR_FILENO) == 1);
    range_write.postgres = &pg;
    range_write.rows = r.write_postgres;
    sinks.push_back(&range_write);
    const std::string job = r.job();
    auto head = co_await http_head();
    if (!head) co_return kExitOk;
    saw_head(*head);
    co_await refresh_final();
    const std::optional<std::uint64_t> top = confirmed_top();
    if (!top || r.last > *top)
      throw Fatal{kExitReplayRefused, std::string("blocks above ") +
                                          (config.chain.confirm_tag.empty() ? "head - confirmations" : "the node's " + config.chain.confirm_tag + " block") +
                                          " (" + (top ? std::to_string(*top) : std::string("none yet")) +
                                          ") are not final: replay up to it at most; `chainidx run` indexes the rest as they confirm"};
    std::optional<schema::BlockRef> cursor;
    if (!co_await with_sink("load_cursor", [&] { cursor = pg.load_cursor(); })) co_return kExitOk;
    if (cursor && r.last > cursor->number)
      throw Fatal{kExitReplayRefused, "blocks above the cursor (block " + std::to_string(cursor->number) +
                                          ") are `chainidx run`'s to write: replay up to block " + std::to_string(cursor->number) +
                                          " at most"};
    if (!co_await load_children()) co_return kExitOk;
    if (r.write_postgres) co_await check_top_links(r, cursor, pg);
    if (!co_await with_sink("plan_replay", [&] { pg.plan_replay(job, r.first, r.last, r.chunk_blocks); })) co_return kExitOk;
    spdlog::info("event=replay_start job={} worker={} from={} to={} chunk_blocks={}", job, r.worker, r.first, r.last, r.chunk_blocks);
    const auto started = std::chrono::steady_clock::now();
    std::uint64_t mine = 0;
    bool finished = false;
    std::optional<schema::BlockRef> stored_below;  // the stored block under the job's range, when the range starts above 0
    // The chunks of the job, one after another through one range engine: the next chunk is
    // claimed while the last batches of the one before are being written.
    using Segment = ingest::RangeFetcher::Segment;
    ingest::RangeFetcher::NextSegment next = [&]() -> Task<std::optional<Segment>> {
      while (!stop && !range.stop_requested()) {
        std::optional<sinks::PostgresSink::Lease> lease;
        // Factory-made contracts: a chunk's blocks need the addresses every chunk below made, so
        // the chunks go one at a time, in order, each with the addresses as written.
        const bool in_order = catalog->has_factories();
        if (!co_await with_sink("claim_chunk", [&] { lease = pg.claim_chunk(job, r.worker, r.lease_seconds, in_order); })) break;
        if (lease && in_order && !co_await load_children(/*keep=*/true)) break;
        if (lease) {
          Segment s{lease->first_block, lease->last_block, std::nullopt};
          if (r.write_postgres && lease->first_block == r.first && r.first > 0) {
            std::uint64_t below = r.first - 1;
            if (!co_await with_sink("stored_block", [&] { stored_below = pg.stored_block(below); })) break;
            s.parent = stored_below;
          }
          spdlog::info("event=replay_chunk job={} blocks={}-{} worker={}", job, lease->first_block, lease->last_block, r.worker);
          range_write.held.push_back(*lease);
          co_return s;
        }
        if (!range_write.held.empty()) {  // ours are still being written: they may be the last
          co_await sleep(std::chrono::milliseconds(250));
          continue;
        }
        std::pair<std::uint64_t, std::uint64_t> progress;
        if (!co_await with_sink("replay_progress", [&] { progress = pg.replay_progress(job); })) break;
        if (progress.first == progress.second) {
          finished = true;
          const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
          spdlog::info("event=replay_done job={} chunks={} blocks_by_this_worker={} seconds={:.1f}", job, progress.second, mine, secs);
          break;
        }
        // The rest is leased by other workers: wait for them, or for a lease to expire (in order,
        // for the chunk below to be done: soon).
        co_await sleep(std::chrono::milliseconds(in_order ? 200 : std::max(500, r.lease_seconds * 250)));
      }
      co_return std::nullopt;
    };
    ingest::RangeFetcher::SegmentDone done = [&](const Segment& s) -> Task<void> {
      const sinks::PostgresSink::Lease lease = range_write.held.front();
      if (!co_await with_sink("finish_chunk", [&] { pg.finish_chunk(lease); })) co_return;
      range_write.held.pop_front();
      mine += s.last - s.first + 1;
      spdlog::info("event=replay_chunk_done job={} blocks={}-{} worker={}", job, s.first, s.last, r.worker);
    };
    try {
      ingest::RangeFetcher::Write write = to_sinks();
      Task<std::optional<schema::BlockRef>> job_run = range.run_segments({r.first, r.last}, std::move(next), std::move(write), std::move(done));
      co_await std::move(job_run);
    } catch (const ingest::RangeDeepReorg& d) {
      if (stored_below && d.ours().number == stored_below->number)
        throw Fatal{kExitReplayRefused, "the stored block " + std::to_string(stored_below->number) + " (" + schema::to_hex(stored_below->hash) +
                                            ") is not the parent of the node's block " + std::to_string(r.first) +
                                            ": the stored rows below the range are of another branch; start the replay lower"};
      throw Fatal{kExitDeepReorg, std::string("deep reorg during the replay: ") + d.what()};
    }
    if (finished) co_return kExitOk;
    spdlog::info("event=replay_stopped job={} worker={} reason=\"stop requested; run the same replay again to continue\"", job, r.worker);
    co_return kExitOk;
  }

  // A range whose top does not link to the stored block above it would leave the stored chain
  // broken there: refuse it, naming how far the range must reach (the stored rows above it that
  // differ from the node's chain).
  Task<void> check_top_links(const ReplayRequest& r, const std::optional<schema::BlockRef>& cursor, sinks::PostgresSink& pg) {
    std::optional<schema::BlockRef> above;
    const std::uint64_t next = r.last + 1;
    if (!co_await with_sink("stored_block", [&] { above = pg.stored_block(next); })) co_return;
    if (!above) co_return;
    auto top = co_await node_header(r.last);
    if (!top || above->parent_hash == top->hash) co_return;
    std::uint64_t reach = next;
    const std::uint64_t limit = cursor ? cursor->number : next;
    for (std::uint64_t n = next + 1; n <= limit && n < next + 10000 && !stop; ++n) {
      std::optional<schema::BlockRef> stored;
      if (!co_await with_sink("stored_block", [&] { stored = pg.stored_block(n); })) co_return;
      auto node = co_await node_header(n);
      if (stored && node && stored->hash == node->hash) break;
      reach = n;
    }
    throw Fatal{kExitReplayRefused, "the node's block " + std::to_string(r.last) + " is not the parent of the stored block " +
                                        std::to_string(next) + ": the stored rows above the range differ from the node's chain up to block " +
                                        std::to_string(reach) + "; replay " + std::to_string(r.first) + ".." + std::to_string(reach) +
                                        " instead"};
  }

  Task<int> run_checked() {
    // The first endpoint that answers has its chain id checked here; the others when first used.
    auto nothing = [](ingest::BlockFetcher&) -> Task<bool> { co_return true; };
    auto checked = co_await pool.run<bool>("eth_chainId", nothing);
    if (!checked) co_return kExitOk;
    std::optional<schema::BlockRef> cursor;
    if (!co_await with_sink("load_cursor", [&] { cursor = checkpoints.load_cursor(); })) co_return kExitOk;
    if (cursor) {
      spdlog::info("event=resume cursor_block={} cursor_hash={}", cursor->number, schema::to_hex(cursor->hash));
      auto op = [n = cursor->number](ingest::BlockFetcher& f) { return f.header_by_number(n); };
      auto header = co_await pool.run<std::optional<schema::BlockRef>>("cursor_check", op);
      if (header && *header && (*header)->hash != cursor->hash) {
        spdlog::error("event=deep_reorg cursor_block={} cursor_hash={} node_hash={} policy=halt message=\"the block at the cursor is no longer canonical; Postgres is left at the cursor\"",
                      cursor->number, schema::to_hex(cursor->hash), schema::to_hex((*header)->hash));
        if (status)
          status->halted = "deep reorg: the block at the cursor (" + std::to_string(cursor->number) + ", " + schema::to_hex(cursor->hash) +
                           ") is no longer canonical; replay from below the fork";
        co_return kExitDeepReorg;
      }
    } else {
      spdlog::info("event=first_run start_block={}", config.chain.start_block);
    }
    if (!co_await load_children()) co_return kExitOk;
    buffer.emplace(reorg::BufferConfig{config.chain.confirmations, config.chain.start_block}, cursor);
    written = cursor;
    if (sinks.size() == 2 && sinks[0]->name() == "kafka") {
      overlapped = dynamic_cast<sinks::PostgresSink*>(sinks[1]);
      overlapped_kafka = overlapped ? dynamic_cast<sinks::KafkaSink*>(sinks[0]) : nullptr;
    }

    std::vector<ingest::HeadSubscriber::Endpoint> ws_endpoints;
    for (auto& e : config.chain.endpoints) ws_endpoints.push_back({e.ws, e.name});
    ingest::HeadSubscriber::Options options;
    options.stall_timeout = std::chrono::seconds(config.chain.head_stall_timeout_seconds);
    options.handshake_timeout = std::chrono::seconds(config.chain.ws_handshake_timeout_seconds);
    options.ping_interval = std::chrono::seconds(config.chain.ws_ping_interval_seconds);
    options.backoff = backoff;
    options.backoff.full_jitter = true;
    options.on_stall = [this] {
      if (metrics) metrics->ws_stall();
    };
    // The subscriber's endpoints are the pool's, in the same order.
    ingest::HeadSubscriber subscriber(io.get_executor(), ws_endpoints, options, [this](const schema::BlockRef& head) {
      if (head_subscriber)
        if (auto at = head_subscriber->live_endpoint()) on_ws_head(head, *at);
    });
    subscriber.set_on_subscription([this](std::optional<std::size_t> at) { on_subscription(at); });
    head_subscriber = &subscriber;
    struct Forget {
      ingest::HeadSubscriber*& s;
      ~Forget() { s = nullptr; }
    } forget{head_subscriber};
    // The subscriber lives exactly as long as follow(): whichever way follow() ends, it stops
    // the subscriber, and && waits for both.
    auto follow_then_stop = [&]() -> asio::awaitable<void> {
      std::exception_ptr error;
      try {
        co_await follow();
      } catch (...) {
        error = std::current_exception();
      }
      subscriber.stop();
      if (error) std::rethrow_exception(error);
    };
    try {
      co_await (follow_then_stop() && subscriber.run());
    } catch (const ingest::RpcError& e) {
      spdlog::error("event=fatal_rpc_error message=\"{}\"", e.what());
      co_return kExitFatal;
    } catch (const std::logic_error& e) {
      spdlog::critical("event=invariant_broken message=\"{}\"", e.what());
      co_return kExitFatal;
    }
    spdlog::info("event=stopped last_confirmed_block={}", buffer->last_confirmed() ? std::to_string(buffer->last_confirmed()->number) : "none");
    co_return kExitOk;
  }
};

Pipeline::Pipeline(asio::io_context& io, Config config, std::vector<sinks::Sink*> sinks, sinks::CheckpointStore& checkpoints)
    : impl_(std::make_unique<Impl>(io, std::move(config), std::move(sinks), checkpoints)) {
  // The worker threads log for this chain too (each pool has one thread).
  for (auto* pool : {&impl_->workers, &impl_->kafka_worker}) asio::post(*pool, [chain = log_chain()] { set_log_chain(chain); });
}

Pipeline::~Pipeline() {
  impl_->workers.join();
  impl_->kafka_worker.join();
}

Task<int> Pipeline::run() {
  const int code = co_await impl_->run();
  if (impl_->fenced.empty() || code != kExitOk) co_return code;
  spdlog::error("event=halt exit_code={} message=\"{}\"", int(kExitFenced), impl_->fenced);
  if (impl_->status) impl_->status->halted = impl_->fenced;
  co_return kExitFenced;
}

void Pipeline::observe(LiveStatus& status, Metrics& metrics) {
  Impl& m = *impl_;
  m.status = &status;
  m.metrics = &metrics;
  for (const auto& t : m.catalog->tables()) {
    metrics.events_written(t.contract, t.event, 0);
    metrics.undecodable_written(t.contract, 0);
  }
  status.chain = m.config.chain.name;
  status.confirmations = m.config.chain.confirm_tag.empty() ? m.config.chain.confirmations : 0;
  status.confirm_tag = m.config.chain.confirm_tag;
  status.head_stale_after = std::chrono::seconds(m.config.chain.head_stall_timeout_seconds);
  for (std::size_t i = 0; i < m.pool.size(); ++i)
    m.pool.at(i).rpc.observe([&metrics](const ingest::RpcObservation& o) {
      metrics.rpc(o.endpoint, o.method, ingest::outcome_name(o.outcome), o.calls, std::chrono::duration<double>(o.duration).count());
    });
  status.refresh = [&m] {
    m.report_endpoints();
    for (auto* sink : m.sinks)
      if (auto* kafka = dynamic_cast<sinks::KafkaSink*>(sink)) {
        m.status->kafka_acknowledged = kafka->acknowledged();
        m.status->kafka_delivery_failures = kafka->delivery_failures();
        m.status->kafka_queue_messages = kafka->queue_depth();
      }
    if (m.metrics) m.metrics->buffer_blocks(m.buffer ? m.buffer->unconfirmed_size() : 0);
  };
}

Task<int> Pipeline::replay(ReplayRequest request, sinks::PostgresSink& postgres) { return impl_->replay(std::move(request), postgres); }

void Pipeline::fence(const std::string& reason) {
  impl_->fenced = reason;
  request_stop();
}

void Pipeline::request_stop() {
  impl_->stop = true;
  impl_->pool.request_stop();
  impl_->range.request_stop();
  impl_->wake.cancel();
  for (auto* timer : impl_->sleeping) timer->cancel();
}

}  // namespace chainidx::app

#include "app/pipeline.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/thread_pool.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <spdlog/spdlog.h>

#include <random>

#include "ingest/block_fetcher.hpp"
#include "ingest/head_subscriber.hpp"
#include "ingest/http_rpc_client.hpp"
#include "ingest/url.hpp"
#include "reorg/block_buffer.hpp"

namespace chainidx::app {

namespace asio = boost::asio;
using asio::use_awaitable;
using ingest::Task;
using namespace asio::experimental::awaitable_operators;

namespace {
struct Fatal {
  int code;
  std::string message;
};
}  // namespace

struct Pipeline::Impl {
  asio::io_context& io;
  Config config;
  std::vector<sinks::Sink*> sinks;
  sinks::CheckpointStore& checkpoints;
  asio::thread_pool workers{1};
  // One HTTP client per endpoint; requests go to `current` and move on to the next endpoint
  // on trouble. An endpoint's eth_chainId is checked before any of its data is used.
  struct Endpoint {
    Endpoint(asio::any_io_executor ex, const EndpointConfig& c, const Config::Chain& chain)
        : rpc(ex, c.http,
              {c.requests_per_second, static_cast<double>(c.burst), std::chrono::seconds(chain.http_timeout_seconds),
               std::chrono::seconds(chain.retry_after_max_seconds), c.name}),
          fetcher(rpc, chain.verify_block_hash) {}
    ingest::HttpRpcClient rpc;
    ingest::BlockFetcher fetcher;
    bool chain_id_checked = false;
  };
  std::vector<std::unique_ptr<Endpoint>> endpoints;
  std::size_t current = 0;
  std::optional<reorg::BlockBuffer> buffer;
  std::optional<schema::BlockRef> latest_head;  // newest head from the subscriber, not yet given to the buffer
  asio::steady_timer wake;                      // cancelled when a head arrives or a stop is requested
  asio::steady_timer backoff_timer;             // retry waits: cut short by a stop, never by a head
  bool stop = false;
  std::vector<schema::Block> unwritten;  // confirmed, not yet in every sink
  std::chrono::steady_clock::time_point unwritten_since;  // when the oldest of them was confirmed
  std::mt19937 rng{std::random_device{}()};
  ingest::BackoffPolicy backoff{};       // RPC retries
  ingest::BackoffPolicy sink_backoff{};  // sink write retries

  Impl(asio::io_context& io_, Config c, std::vector<sinks::Sink*> s, sinks::CheckpointStore& cp)
      : io(io_), config(std::move(c)), sinks(std::move(s)), checkpoints(cp), wake(io_), backoff_timer(io_) {
    for (const auto& e : config.chain.endpoints) endpoints.push_back(std::make_unique<Endpoint>(io.get_executor(), e, config.chain));
    backoff = {std::chrono::milliseconds(config.chain.backoff_initial_ms), std::chrono::milliseconds(config.chain.backoff_max_ms)};
    sink_backoff = {std::chrono::milliseconds(config.pipeline.sink_retry_initial_ms),
                    std::chrono::milliseconds(config.pipeline.sink_retry_max_ms)};
  }

  ingest::BlockFetcher& fetcher() { return endpoints[current]->fetcher; }

  // Throws Fatal when the endpoint serves another chain: its data must never be mixed in.
  Task<void> check_chain_id(Endpoint& e) {
    if (e.chain_id_checked) co_return;
    std::uint64_t id = co_await e.fetcher.chain_id();
    if (id != config.chain.chain_id)
      throw Fatal{kExitChainIdMismatch, "chain id mismatch: config_chain_id=" + std::to_string(config.chain.chain_id) +
                                            " node_chain_id=" + std::to_string(id) + " endpoint=" + e.rpc.endpoint() +
                                            "; point chain.endpoints at a node of chain " + std::to_string(config.chain.chain_id) +
                                            " or set chain.chain_id = " + std::to_string(id)};
    e.chain_id_checked = true;
  }

  Task<void> sleep(std::chrono::milliseconds d) {
    backoff_timer.expires_after(d);
    boost::system::error_code ec;
    co_await backoff_timer.async_wait(asio::redirect_error(use_awaitable, ec));
  }

  // Runs blocking work on the worker thread; the coroutine resumes on the io thread.
  template <class F>
  Task<void> blocking(F f) {
    co_await asio::co_spawn(workers, [f = std::move(f)]() -> asio::awaitable<void> {
      f();
      co_return;
    }, use_awaitable);
  }

  // Retries outside trouble (transport, 429, 5xx, malformed or hostile answers) until it works
  // or a stop is requested, moving to the next endpoint after each failure and backing off once
  // a whole round of endpoints failed. An answer that will not change on a retry (a refused
  // method or parameters, 401/403) ends only that endpoint's part: the others are asked, and
  // only when every endpoint has refused the same request does the indexer stop, naming each
  // endpoint's answer.
  //
  // An answer that fails validation (malformed, hostile, inconsistent) is retried elsewhere, but
  // when every endpoint has given such an answer chain.undecodable_after_rounds times, the data
  // is not passing trouble: the indexer stops (exit 9) naming `subject` and every answer, rather
  // than retrying in silence forever. Never skipped.
  template <class T, class F>
  Task<std::optional<T>> with_retry(const char* what, F op, std::string subject = {}) {
    std::vector<std::string> refusals(endpoints.size());
    std::size_t refused = 0;
    std::vector<std::string> malformed(endpoints.size());  // this round's invalid answers
    unsigned malformed_rounds = 0;
    if (subject.empty()) subject = what;
    for (unsigned attempt = 0; !stop; ++attempt) {
      std::string problem;
      std::chrono::milliseconds delay{0};
      const std::size_t at = current;
      const std::string endpoint = endpoints[at]->rpc.endpoint();
      try {
        co_await check_chain_id(*endpoints[at]);
        co_return co_await op();
      } catch (const ingest::RpcError& e) {
        problem = e.what();
        if (!e.retryable()) {
          if (refusals[at].empty()) ++refused;
          refusals[at] = problem;
          if (refused == endpoints.size()) {
            std::string answers;
            for (std::size_t i = 0; i < endpoints.size(); ++i)
              answers += (i ? "; " : "") + endpoints[i]->rpc.endpoint() + " answered: " + refusals[i];
            throw Fatal{kExitEndpointsRefused, std::string("every endpoint refused ") + what + ", which no retry changes (" +
                                                   answers + "); add an endpoint that serves it"};
          }
        } else {
          delay = e.retry_after().value_or(backoff.delay(attempt / static_cast<unsigned>(endpoints.size()),
                                                         std::uniform_real_distribution<double>(0, 1)(rng)));
        }
        if (e.kind() == ingest::RpcError::Kind::kMalformed) {
          malformed[at] = problem;
          bool round = true;
          for (std::size_t i = 0; i < endpoints.size(); ++i) round &= !malformed[i].empty() || !refusals[i].empty();
          if (round && ++malformed_rounds >= config.chain.undecodable_after_rounds) {
            std::string answers;
            for (std::size_t i = 0; i < endpoints.size(); ++i)
              if (!malformed[i].empty()) answers += (answers.empty() ? "" : "; ") + malformed[i];
            throw Fatal{kExitUndecodable, subject + " failed validation on every endpoint " + std::to_string(malformed_rounds) +
                                              " times (chain.undecodable_after_rounds), last: " + answers +
                                              ". Not skipped: the cursor stays before it; report the block and these answers"};
          }
          if (round) std::fill(malformed.begin(), malformed.end(), std::string());
        }
      }
      if (endpoints.size() > 1) {
        // Next endpoint, skipping those that refused this request for good.
        do current = (current + 1) % endpoints.size();
        while (!refusals[current].empty());
        // Another endpoint may well answer at once; wait only when the round comes back here.
        if (current > at) delay = std::chrono::milliseconds(0);
      }
      spdlog::warn("event=rpc_retry op={} attempt={} endpoint={} next_endpoint={} backoff_ms={} reason=\"{}\"", what,
                   attempt + 1, endpoint, endpoints[current]->rpc.endpoint(), delay.count(), problem);
      if (delay.count() > 0) co_await sleep(delay);
    }
    co_return std::nullopt;
  }

  // Writes `unwritten` to every sink in order, retrying only the sink that failed, with a
  // growing backoff and a log line per attempt, for as long as it takes: no new batch is taken
  // meanwhile (back-pressure), so memory stays flat however long a sink is away. First the
  // writer claim is checked, so a replaced instance publishes nothing more.
  Task<void> write_unwritten() {
    if (unwritten.empty()) co_return;
    std::size_t i = 0;
    bool writer_checked = false;
    for (unsigned attempt = 0; i < sinks.size(); ++attempt) {
      std::string failed = "postgres";
      std::string problem;
      try {
        if (!writer_checked) {
          co_await blocking([&] { checkpoints.check_writer(); });
          writer_checked = true;
        }
        for (; i < sinks.size(); ++i) {
          sinks::Sink* sink = sinks[i];
          failed = std::string(sink->name());
          co_await blocking([&] { sink->write(unwritten); });
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
      auto delay = sink_backoff.delay(attempt, std::uniform_real_distribution<double>(0, 1)(rng));
      spdlog::warn("event=sink_retry sink={} blocks={}-{} attempt={} backoff_ms={} reason=\"{}\"", failed, unwritten.front().number,
                   unwritten.back().number, attempt + 1, delay.count(), problem);
      co_await sleep(delay);
    }
    spdlog::info("event=confirmed blocks={}-{} count={} last_hash={}", unwritten.front().number, unwritten.back().number,
                 unwritten.size(), schema::to_hex(unwritten.back().hash));
    unwritten.clear();
  }

  Task<std::optional<schema::Block>> fetch(const reorg::FetchRequest& req) {
    if (req.kind == reorg::FetchRequest::Kind::kByNumber) {
      auto r = co_await with_retry<std::optional<schema::Block>>("fetch_by_number", [&] { return fetcher().by_number(req.number); },
                                                                 "block " + std::to_string(req.number));
      co_return r ? std::move(*r) : std::nullopt;
    }
    auto r = co_await with_retry<std::optional<schema::Block>>("fetch_by_hash", [&] { return fetcher().by_hash(req.hash); },
                                                               "block " + schema::to_hex(req.hash));
    co_return r ? std::move(*r) : std::nullopt;
  }

  void give_head_to_buffer() {
    if (!latest_head) return;
    auto r = buffer->on_head(*latest_head);
    if (r.reverted > 0) spdlog::warn("event=rollback to_block={} reverted={}", latest_head->number, r.reverted);
    latest_head.reset();
  }

  Task<void> follow() {
    // Seed from HTTP so that a quiet chain still catches up before its next head.
    if (auto head = co_await with_retry<schema::BlockRef>("latest_head", [&] { return fetcher().latest_head(); }))
      if (!latest_head) latest_head = *head;
    const auto poll = std::chrono::milliseconds(std::max<std::int64_t>(1000, config.chain.confirmations * 1000));
    while (!stop) {
      give_head_to_buffer();
      auto req = buffer->next_fetch();
      if (!req) {
        co_await write_unwritten();
        if (stop || latest_head) continue;
        wake.expires_after(poll);
        boost::system::error_code ec;
        co_await wake.async_wait(asio::redirect_error(use_awaitable, ec));
        if (!ec && !stop) {
          // No head for a while: ask over HTTP too, in case the subscription went quiet.
          if (auto head = co_await with_retry<schema::BlockRef>("latest_head", [&] { return fetcher().latest_head(); }))
            if (!latest_head) latest_head = *head;
        }
        continue;
      }
      auto block = co_await fetch(*req);
      if (stop) break;
      if (!block) {
        buffer->on_fetch_missing(*req);
        continue;
      }
      using Kind = reorg::AddResult::Kind;
      std::uint64_t number = block->number;
      std::string hash = schema::to_hex(block->hash);
      auto r = buffer->add_block(std::move(*block));
      switch (r.kind) {
        case Kind::kReorged:
          spdlog::warn("event=reorg new_block={} new_hash={} reverted={}", number, hash, r.reverted);
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
      for (auto& b : buffer->take_confirmed()) {
        if (unwritten.empty()) unwritten_since = std::chrono::steady_clock::now();
        unwritten.push_back(std::move(b));
      }
      // Full, or waited long enough: a slow catch-up must not hold confirmed blocks back.
      if (unwritten.size() >= config.pipeline.batch_blocks ||
          (!unwritten.empty() &&
           std::chrono::steady_clock::now() - unwritten_since >= std::chrono::milliseconds(config.pipeline.max_batch_delay_ms)))
        co_await write_unwritten();
    }
    co_await write_unwritten();
  }

  Task<int> run() {
    try {
      co_return co_await run_checked();
    } catch (const Fatal& f) {
      spdlog::error("event=halt exit_code={} message=\"{}\"", f.code, f.message);
      co_return f.code;
    }
  }

  Task<int> run_checked() {
    // The first endpoint that answers has its chain id checked here; the others when first used.
    auto checked = co_await with_retry<bool>("eth_chainId", [&]() -> Task<bool> { co_return true; });
    if (!checked) co_return kExitOk;
    std::optional<schema::BlockRef> cursor;
    for (unsigned attempt = 0;; ++attempt) {
      std::string problem;
      try {
        co_await blocking([&] { cursor = checkpoints.load_cursor(); });
        break;
      } catch (const sinks::SinkError& e) {
        if (!e.retryable()) throw Fatal{e.kind() == sinks::SinkError::Kind::kFenced ? kExitFenced : kExitSinkRefused, e.what()};
        problem = e.what();
      }
      if (stop) co_return kExitOk;
      spdlog::warn("event=cursor_retry reason=\"{}\"", problem);
      co_await sleep(backoff.delay(attempt, 0.5));
    }
    if (cursor) {
      spdlog::info("event=resume cursor_block={} cursor_hash={}", cursor->number, schema::to_hex(cursor->hash));
      auto header = co_await with_retry<std::optional<schema::BlockRef>>("cursor_check", [&] { return fetcher().header_by_number(cursor->number); });
      if (header && *header && (*header)->hash != cursor->hash) {
        spdlog::error("event=deep_reorg cursor_block={} cursor_hash={} node_hash={} policy=halt message=\"the block at the cursor is no longer canonical; Postgres is left at the cursor\"",
                      cursor->number, schema::to_hex(cursor->hash), schema::to_hex((*header)->hash));
        co_return kExitDeepReorg;
      }
    } else {
      spdlog::info("event=first_run start_block={}", config.chain.start_block);
    }
    buffer.emplace(reorg::BufferConfig{config.chain.confirmations, config.chain.start_block}, cursor);

    std::vector<ingest::HeadSubscriber::Endpoint> ws_endpoints;
    for (auto& e : config.chain.endpoints) ws_endpoints.push_back({e.ws, e.name});
    ingest::HeadSubscriber::Options options;
    options.stall_timeout = std::chrono::seconds(config.chain.head_stall_timeout_seconds);
    options.handshake_timeout = std::chrono::seconds(config.chain.ws_handshake_timeout_seconds);
    options.ping_interval = std::chrono::seconds(config.chain.ws_ping_interval_seconds);
    options.backoff = backoff;
    ingest::HeadSubscriber subscriber(io.get_executor(), ws_endpoints, options, [this](const schema::BlockRef& head) {
      latest_head = head;
      wake.cancel();
    });
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
    : impl_(std::make_unique<Impl>(io, std::move(config), std::move(sinks), checkpoints)) {}

Pipeline::~Pipeline() { impl_->workers.join(); }

Task<int> Pipeline::run() { return impl_->run(); }

void Pipeline::request_stop() {
  impl_->stop = true;
  impl_->wake.cancel();
  impl_->backoff_timer.cancel();
}

}  // namespace chainidx::app

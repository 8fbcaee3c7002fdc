#include "ingest/range_fetcher.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/thread_pool.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cstdio>
#include <exception>
#include <map>
#include <thread>

#include "ingest/range_decode.hpp"
#include "ingest/range_plan.hpp"
#include "ingest/waker.hpp"

namespace chainidx::ingest {

namespace asio = boost::asio;
using Clock = std::chrono::steady_clock;

namespace {

std::string quoted_number(std::uint64_t n) { return "\"" + schema::to_quantity_hex(n) + "\""; }

// What a decode worker hands back: default-constructible, as co_spawn's completion needs.
struct Decoded {
  std::vector<schema::Block> blocks;
  std::string error;
};

}  // namespace

struct RangeFetcher::Impl {
  asio::any_io_executor executor;
  EndpointPool& pool;
  RangeOptions options;
  asio::thread_pool decoders;
  Waker changed;  // woken whenever the plan, the window or the state moves
  Waker sleeps;   // retry waits: woken only by the end of the run
  Stats stats;

  // Per run.
  std::optional<RangePlanner> planner;
  std::optional<ReorderWindow> window;
  std::uint64_t last = 0;
  std::map<std::uint64_t, FailureTally> tallies;  // by range start: failures of a range being retried
  std::map<std::uint64_t, unsigned> breaks;       // by block: link breaks seen
  std::size_t in_flight_bytes = 0;                // estimated answers of ranges being fetched
  double bytes_per_block = 0;                     // moving average of answer bytes
  bool stopping = false;
  bool progress_drawn = false;  // a terminal progress line is on screen: end it with a newline
  std::exception_ptr error;
  std::size_t alive = 0;

  Impl(asio::any_io_executor ex, EndpointPool& p, RangeOptions o)
      : executor(ex), pool(p), options(o),
        decoders(o.decode_threads ? o.decode_threads : std::max(1u, std::thread::hardware_concurrency())),
        changed(ex), sleeps(ex) {}

  ~Impl() { decoders.join(); }

  void stop() {
    stopping = true;
    changed.wake_all();
    sleeps.wake_all();
  }

  // Runs `f` on a decode worker; the coroutine resumes on the network thread.
  template <class F>
  Task<Decoded> decode(F f) {
    auto job = [f = std::move(f)]() mutable -> asio::awaitable<Decoded> { co_return f(); };
    Decoded d = co_await asio::co_spawn(decoders, std::move(job), asio::use_awaitable);
    co_return d;
  }

  [[noreturn]] static void malformed(const EndpointPool::Member& m, const std::string& what) {
    throw RpcError(RpcError::Kind::kMalformed, m.rpc.endpoint() + ": " + what);
  }

  static RpcError reply_error(const EndpointPool::Member& m, const char* method, std::uint64_t number, const RpcReply& r) {
    return RpcError(RpcError::Kind::kRpc, m.rpc.endpoint() + ": " + method + "(" + std::to_string(number) + "): " + r.error_message,
                    *r.error_code);
  }

  // One range from one endpoint: a batch of bodies and block receipts (or per-transaction
  // receipts where the node lacks eth_getBlockReceipts), decoded and checked off this thread.
  Task<Decoded> fetch(EndpointPool::Member& m, BlockRange range, std::size_t& answer_bytes) {
    bool with_receipts = m.fetcher.uses_block_receipts();
    std::vector<RpcRequest> requests;
    for (std::uint64_t n = range.first; n <= range.last; ++n) {
      requests.push_back({"eth_getBlockByNumber", "[" + quoted_number(n) + ",true]"});
      if (with_receipts) requests.push_back({"eth_getBlockReceipts", "[" + quoted_number(n) + "]"});
    }
    std::vector<RpcReply> replies = co_await m.rpc.batch(std::move(requests));
    const std::size_t step = with_receipts ? 2 : 1;
    std::vector<RpcReply> bodies, receipts;
    for (std::size_t i = 0; i < replies.size(); ++i) {
      RpcReply& r = replies[i];
      answer_bytes += r.result.size();
      const std::uint64_t number = range.first + i / step;
      const bool is_receipts = with_receipts && i % 2 == 1;
      if (r.error_code) {
        RpcError e = reply_error(m, is_receipts ? "eth_getBlockReceipts" : "eth_getBlockByNumber", number, r);
        if (!is_receipts || !says_method_unsupported(e)) throw e;
        m.fetcher.without_block_receipts(e);
      }
      (is_receipts ? receipts : bodies).push_back(std::move(r));
    }
    if (!m.fetcher.uses_block_receipts()) receipts.clear();
    const bool verify = pool.settings().verify_block_hash;
    auto decode_all = [bodies = std::move(bodies), receipts = std::move(receipts), range, verify]() {
      Decoded out;
      auto blocks = decode_range_blocks(bodies, range, verify);
      if (!blocks.ok()) {
        out.error = blocks.error().message;
        return out;
      }
      out.blocks = std::move(*blocks);
      if (!receipts.empty())
        if (auto s = attach_block_receipts(out.blocks, receipts); !s.ok()) out.error = s.error().message;
      return out;
    };
    Decoded d = co_await decode(std::move(decode_all));
    if (!d.error.empty()) malformed(m, d.error);
    if (m.fetcher.uses_block_receipts()) co_return d;

    // Per-transaction receipts.
    std::vector<RpcRequest> tx_requests;
    for (const auto& b : d.blocks)
      for (const auto& h : b.transaction_hashes) tx_requests.push_back({"eth_getTransactionReceipt", "[\"" + schema::to_hex(h) + "\"]"});
    // In batches of at most the endpoint's burst, as every batch: a range of busy blocks holds
    // many more transactions than blocks.
    const std::size_t per_batch = std::max<std::size_t>(1, static_cast<std::size_t>(m.burst));
    std::vector<RpcReply> tx_replies;
    for (std::size_t at = 0; at < tx_requests.size(); at += per_batch) {
      const auto from = tx_requests.begin() + static_cast<std::ptrdiff_t>(at);
      std::vector<RpcRequest> part(from, from + static_cast<std::ptrdiff_t>(std::min(per_batch, tx_requests.size() - at)));
      std::vector<RpcReply> replies = co_await m.rpc.batch(std::move(part));
      for (auto& r : replies) {
        answer_bytes += r.result.size();
        if (r.error_code) throw reply_error(m, "eth_getTransactionReceipt", range.first, r);
        tx_replies.push_back(std::move(r));
      }
    }
    auto attach_all = [blocks = std::move(d.blocks), tx_replies = std::move(tx_replies)]() mutable {
      Decoded out;
      if (auto s = attach_transaction_receipts(blocks, tx_replies); !s.ok()) out.error = s.error().message;
      out.blocks = std::move(blocks);
      return out;
    };
    Decoded full = co_await decode(std::move(attach_all));
    if (!full.error.empty()) malformed(m, full.error);
    co_return full;
  }

  std::size_t estimate(const BlockRange& r) const { return static_cast<std::size_t>(bytes_per_block * static_cast<double>(r.size())); }

  bool buffer_full() const { return window->bytes() + in_flight_bytes >= options.buffer_bytes; }

  // One of an endpoint's max_in_flight fetch loops.
  Task<void> worker(std::size_t at) {
    EndpointPool::Member& m = pool.at(at);
    if (m.batch_blocks == 0) m.batch_blocks = options.batch_blocks;
    while (!stopping) {
      // When the buffer is full, only the range the writer waits for may be fetched.
      const std::uint64_t start_limit = buffer_full() ? window->next() : std::numeric_limits<std::uint64_t>::max();
      // A batch's calls all go at once: never more than the endpoint's burst (two calls a block).
      const std::uint64_t burst_blocks = std::max<std::uint64_t>(1, static_cast<std::uint64_t>(m.burst / 2));
      std::optional<BlockRange> range = planner->next(std::min(m.batch_blocks, burst_blocks), start_limit);
      if (range) {
        auto t = tallies.find(range->first);
        if (t != tallies.end() && t->second.refused(at)) {  // this endpoint refused it: leave it to the others
          planner->give_back(*range);
          range.reset();
        }
      }
      if (!range) {
        co_await changed.wait();
        continue;
      }
      // A range fetched again is a retry: it needs the process-wide retry budget.
      if (tallies.contains(range->first) || breaks.contains(range->first)) {
        co_await pool.retry_allowed();
        if (stopping) {
          planner->give_back(*range);
          break;
        }
      } else {
        pool.first_attempt();
      }
      const std::size_t estimated = estimate(*range);
      in_flight_bytes += estimated;
      std::size_t answer_bytes = 0;
      std::string problem;
      std::chrono::milliseconds delay{0};
      try {
        co_await pool.check_chain_id(at);
        Decoded d = co_await fetch(m, *range, answer_bytes);
        in_flight_bytes -= estimated;
        m.failures = 0;
        adapt(m, *range, answer_bytes);
        ++stats.batches;
        stats.answer_bytes += answer_bytes;
        tallies.erase(range->first);
        if (!stopping) window->put(std::move(d.blocks), answer_bytes);
        changed.wake_all();
        continue;
      } catch (const RpcError& e) {
        in_flight_bytes -= estimated;
        planner->give_back(*range);
        ++stats.refetches;
        changed.wake_all();
        if (says_batch_too_large(e) && range->size() > 1) {
          m.batch_blocks = std::max<std::uint64_t>(1, range->size() / 2);
          spdlog::warn("event=range_batch_smaller endpoint={} batch_blocks={} reason=\"{}\"", m.rpc.endpoint(), m.batch_blocks, e.what());
          continue;
        }
        ++m.failures;
        auto [it, fresh] = tallies.try_emplace(range->first, pool.names(), pool.settings().undecodable_after_rounds);
        const std::string subject = "blocks " + std::to_string(range->first) + "-" + std::to_string(range->last);
        switch (it->second.record(at, e)) {
          case FailureTally::Verdict::kRefusedEverywhere:
            throw PoolError(PoolError::Kind::kRefusedEverywhere, it->second.refused_message("eth_getBlockByNumber/eth_getBlockReceipts for " + subject));
          case FailureTally::Verdict::kUndecodable:
            throw PoolError(PoolError::Kind::kUndecodable, it->second.undecodable_message(subject));
          case FailureTally::Verdict::kRetry:
            break;
        }
        problem = e.what();
        // A 429 has paused the endpoint's token bucket already (for Retry-After, or a second):
        // waiting here as well would only idle this worker once the bucket lets calls go again.
        const bool throttled = e.kind() == RpcError::Kind::kHttpStatus && e.code() == 429;
        if (e.retryable() && !throttled) delay = pool.retry_delay(e, m.failures - 1);
      }
      spdlog::warn("event=rpc_retry op=fetch_range blocks={}-{} attempt={} endpoint={} backoff_ms={} reason=\"{}\"", range->first,
                   range->last, m.failures, m.rpc.endpoint(), delay.count(), problem);
      if (delay.count() > 0 && !stopping) co_await sleeps.wait(delay);
    }
  }

  // Batch size follows the answers: halve when an answer is too big, grow back towards the
  // configured size while answers are small.
  void adapt(EndpointPool::Member& m, const BlockRange& r, std::size_t bytes) {
    const double per_block = static_cast<double>(bytes) / static_cast<double>(r.size());
    bytes_per_block = bytes_per_block == 0 ? per_block : 0.8 * bytes_per_block + 0.2 * per_block;
    if (bytes > options.target_answer_bytes && m.batch_blocks > 1) {
      m.batch_blocks = std::max<std::uint64_t>(1, m.batch_blocks / 2);
      spdlog::info("event=range_batch_smaller endpoint={} batch_blocks={} reason=\"answer of {} bytes\"", m.rpc.endpoint(), m.batch_blocks, bytes);
    } else if (bytes * 4 < options.target_answer_bytes && m.batch_blocks < options.batch_blocks && r.size() >= m.batch_blocks) {
      m.batch_blocks = std::min(options.batch_blocks, m.batch_blocks + std::max<std::uint64_t>(1, m.batch_blocks / 4));
    }
  }

  // A block did not link to the one before it: fetch its range again. When it keeps not
  // linking, ask the node whether the block before it is still canonical: if not, the chain
  // reorganised below what was written (a deep reorg); if it is, the endpoints serve an
  // inconsistent chain, and after enough tries the range engine stops rather than loop.
  Task<void> on_break(const LinkBreak& b) {
    planner->give_back(b.dropped);
    ++stats.refetches;
    changed.wake_all();
    const unsigned seen = ++breaks[b.number];
    spdlog::warn("event=range_link_break block={} parent_hash={} expected_parent={} seen={}", b.number, schema::to_hex(b.parent_hash),
                 schema::to_hex(b.expected_parent), seen);
    if (seen < options.link_retries) co_return;
    const schema::BlockRef ours = *window->parent();
    auto op = [n = ours.number](BlockFetcher& f) { return f.header_by_number(n); };
    std::string subject = "block " + std::to_string(ours.number);
    auto header = co_await pool.run<std::optional<schema::BlockRef>>("link_check", op, std::move(subject));
    if (!header) co_return;  // stopping
    if (*header && (*header)->hash != ours.hash)
      throw RangeDeepReorg(ours, **header,
                           "block " + std::to_string(ours.number) + " (" + schema::to_hex(ours.hash) +
                               ") is no longer the node's: its block there is " + schema::to_hex((*header)->hash));
    if (seen >= options.link_retries * 3)
      throw PoolError(PoolError::Kind::kUndecodable,
                      "block " + std::to_string(b.number) + " names parent " + schema::to_hex(b.parent_hash) + " on every fetch (" +
                          std::to_string(seen) + " times), while the node's block " + std::to_string(ours.number) + " is " +
                          schema::to_hex(ours.hash) + ". Not skipped: the cursor stays before it");
  }

  Task<void> writer(const Write& write) {
    std::optional<Clock::time_point> deadline;
    const auto started = Clock::now();
    // On a terminal the line is drawn after the first batch already, then every second.
    auto reported = options.terminal_progress ? started - std::chrono::seconds(1) : started;
    const std::uint64_t first = window->next();
    const std::uint64_t done_before = stats.blocks, logs_before = stats.logs;
    while (!stopping && window->next() <= last) {
      const std::size_t ready = window->ready();
      const bool rest_ready = ready > 0 && window->next() + ready > last;
      const auto now = Clock::now();
      if (ready >= options.write_blocks || rest_ready || (ready > 0 && deadline && now >= *deadline)) {
        deadline.reset();
        ReorderWindow::Taken taken = window->take(options.write_blocks);
        changed.wake_all();
        if (!taken.blocks.empty()) {
          const std::uint64_t count = taken.blocks.size();
          std::uint64_t logs = 0, txs = 0;
          for (const auto& b : taken.blocks) logs += b.logs.size(), txs += b.transactions.size();
          std::vector<schema::Block> batch = std::move(taken.blocks);
          Task<void> written = write(std::move(batch));
          co_await std::move(written);
          stats.blocks += count;
          stats.logs += logs;
          stats.transactions += txs;
        }
        if (taken.broken) {
          LinkBreak b = *taken.broken;
          co_await on_break(b);
        }
        if (Clock::now() - reported >= std::chrono::seconds(options.terminal_progress ? 1 : 5)) {
          reported = Clock::now();
          const double secs = std::chrono::duration<double>(reported - started).count();
          const double rate = static_cast<double>(stats.blocks - done_before) / std::max(secs, 1e-3);
          const std::uint64_t left = last + 1 - window->next();
          if (options.terminal_progress) {
            const std::uint64_t done = window->next() - first, total = last + 1 - first;
            std::fprintf(stderr, "\r\033[Kblocks %llu-%llu: %llu/%llu (%.0f%%), %.0f blocks/s, %.0f logs/s, ETA %.0f s",
                         static_cast<unsigned long long>(first), static_cast<unsigned long long>(last),
                         static_cast<unsigned long long>(done), static_cast<unsigned long long>(total),
                         100.0 * static_cast<double>(done) / static_cast<double>(total), rate,
                         static_cast<double>(stats.logs - logs_before) / std::max(secs, 1e-3),
                         rate > 0 ? static_cast<double>(left) / rate : 0.0);
            std::fflush(stderr);
            progress_drawn = true;
            continue;
          }
          spdlog::info("event=range_progress done={} total={} next={} blocks_per_s={:.0f} logs_per_s={:.0f} eta_s={:.0f}",
                       window->next() - first, last + 1 - first, window->next(), rate,
                       static_cast<double>(stats.logs - logs_before) / std::max(secs, 1e-3),
                       rate > 0 ? static_cast<double>(left) / rate : 0.0);
        }
        continue;
      }
      if (ready > 0 && !deadline) deadline = now + options.max_write_delay;
      std::optional<Clock::duration> timeout;
      if (deadline) timeout = *deadline - now;
      co_await changed.wait(timeout);
    }
  }

  Task<std::optional<schema::BlockRef>> run(std::uint64_t first, std::uint64_t last_block, std::optional<schema::BlockRef> cursor,
                                            Write write) {
    planner.emplace(first, last_block);
    window.emplace(first, cursor);
    last = last_block;
    tallies.clear();
    breaks.clear();
    in_flight_bytes = 0;
    stopping = false;
    error = nullptr;
    for (std::size_t i = 0; i < pool.size(); ++i) {
      for (std::size_t k = 0; k < pool.at(i).max_in_flight; ++k) {
        ++alive;
        asio::co_spawn(executor, worker(i), [this](std::exception_ptr e) {
          if (e && !error) error = e;
          if (e) stop();
          --alive;
          changed.wake_all();
        });
      }
    }
    try {
      co_await writer(write);
    } catch (...) {
      if (!error) error = std::current_exception();
    }
    stop();
    while (alive > 0) co_await changed.wait();
    if (progress_drawn) {
      std::fputc('\n', stderr);
      progress_drawn = false;
    }
    if (error) std::rethrow_exception(error);
    co_return window->parent();
  }
};

RangeFetcher::RangeFetcher(asio::any_io_executor executor, EndpointPool& pool, RangeOptions options)
    : impl_(std::make_unique<Impl>(executor, pool, options)) {}
RangeFetcher::~RangeFetcher() = default;

Task<std::optional<schema::BlockRef>> RangeFetcher::run(std::uint64_t first, std::uint64_t last, std::optional<schema::BlockRef> cursor,
                                                        Write write) {
  return impl_->run(first, last, std::move(cursor), std::move(write));
}

void RangeFetcher::request_stop() { impl_->stop(); }

void RangeFetcher::set_terminal_progress(bool on) { impl_->options.terminal_progress = on; }

const RangeFetcher::Stats& RangeFetcher::stats() const { return impl_->stats; }

}  // namespace chainidx::ingest

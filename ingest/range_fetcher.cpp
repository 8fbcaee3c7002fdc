#include "ingest/range_fetcher.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/thread_pool.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cstdio>
#include <exception>
#include <deque>
#include <map>
#include <thread>

#include "ingest/decode.hpp"
#include "ingest/log_range.hpp"
#include "ingest/logs_bloom.hpp"
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

  // Per run. The segment being written comes first; at most one more is fetched ahead of it.
  struct Part {
    Segment segment;
    RangePlanner planner;
    ReorderWindow window;
  };
  std::deque<Part> parts;
  bool no_more_parts = false;                  // the job's source said there is no next segment
  std::optional<schema::BlockRef> last_written;  // the last block written, or the first segment's parent
  std::map<std::uint64_t, FailureTally> tallies;  // by range start: failures of a range being retried
  std::map<std::uint64_t, unsigned> breaks;       // by block: link breaks seen
  std::size_t in_flight_bytes = 0;                // estimated answers of ranges being fetched
  double bytes_per_block = 0;                     // moving average of answer bytes
  bool stopping = false;
  bool progress_drawn = false;  // a terminal progress line is on screen: end it with a newline
  std::exception_ptr error;
  std::size_t alive = 0;
  std::vector<LogRangeSizer> log_sizers;  // logs-only history: each endpoint's eth_getLogs width
  std::string log_filter_json;            // logs-only history: "address" and "topics" of the filter

  Impl(asio::any_io_executor ex, EndpointPool& p, RangeOptions o)
      : executor(ex), pool(p), options(o),
        decoders(o.decode_threads ? o.decode_threads : std::max(1u, std::thread::hardware_concurrency())),
        changed(ex), sleeps(ex) {
    if (!options.logs) return;
    for (std::size_t i = 0; i < pool.size(); ++i) log_sizers.emplace_back(options.logs->initial_blocks, options.logs->max_blocks);
    log_filter_json = log_filter_members(options.logs->addresses, options.logs->topic0s);
  }

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

  // Sends `requests` in batches of at most the endpoint's burst, as every batch; the replies in
  // order. A reply with an error throws (named by its method and `subject`, a block number).
  Task<std::vector<RpcReply>> in_bursts(EndpointPool::Member& m, std::vector<RpcRequest> requests, std::size_t& answer_bytes,
                                        std::uint64_t subject) {
    const std::size_t per_batch = std::max<std::size_t>(1, static_cast<std::size_t>(m.burst));
    std::vector<RpcReply> out;
    for (std::size_t at = 0; at < requests.size(); at += per_batch) {
      const auto from = requests.begin() + static_cast<std::ptrdiff_t>(at);
      std::vector<RpcRequest> part(from, from + static_cast<std::ptrdiff_t>(std::min(per_batch, requests.size() - at)));
      const std::vector<std::string> methods = [&] {
        std::vector<std::string> v;
        for (const auto& r : part) v.push_back(r.method);
        return v;
      }();
      std::vector<RpcReply> replies = co_await m.rpc.batch(std::move(part));
      for (std::size_t i = 0; i < replies.size(); ++i) {
        answer_bytes += replies[i].result.size();
        if (replies[i].error_code) throw reply_error(m, methods.at(i).c_str(), subject, replies[i]);
        out.push_back(std::move(replies[i]));
      }
    }
    co_return out;
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
    const bool complete = m.fetcher.uses_block_receipts();  // else the logs come with the receipts below
    auto decode_all = [bodies = std::move(bodies), receipts = std::move(receipts), range, verify, complete, enrich = &options.enrich]() {
      Decoded out;
      auto blocks = decode_range_blocks(bodies, range, verify);
      if (!blocks.ok()) {
        out.error = blocks.error().message;
        return out;
      }
      out.blocks = std::move(*blocks);
      if (!receipts.empty())
        if (auto s = attach_block_receipts(out.blocks, receipts); !s.ok()) out.error = s.error().message;
      if (complete && out.error.empty() && *enrich)
        for (auto& b : out.blocks) (*enrich)(b);
      return out;
    };
    Decoded d = co_await decode(std::move(decode_all));
    if (!d.error.empty()) malformed(m, d.error);
    if (m.fetcher.uses_block_receipts()) co_return d;

    // Per-transaction receipts.
    std::vector<RpcRequest> tx_requests;
    for (const auto& b : d.blocks)
      for (const auto& h : b.transaction_hashes) tx_requests.push_back({"eth_getTransactionReceipt", "[\"" + schema::to_hex(h) + "\"]"});
    // A range of busy blocks holds many more transactions than blocks.
    std::vector<RpcReply> tx_replies = co_await in_bursts(m, std::move(tx_requests), answer_bytes, range.first);
    auto attach_all = [blocks = std::move(d.blocks), tx_replies = std::move(tx_replies), enrich = &options.enrich]() mutable {
      Decoded out;
      if (auto s = attach_transaction_receipts(blocks, tx_replies); !s.ok()) out.error = s.error().message;
      if (out.error.empty() && *enrich)
        for (auto& b : blocks) (*enrich)(b);
      out.blocks = std::move(blocks);
      return out;
    };
    Decoded full = co_await decode(std::move(attach_all));
    if (!full.error.empty()) malformed(m, full.error);
    co_return full;
  }

  // One range of logs-only history from one endpoint: eth_getLogs over the range and its last
  // block's header in one batch; the headers of blocks whose logs came without blockTimestamp
  // in a second. Gives the sparse blocks: those with logs, and the last one.
  Task<Decoded> fetch_logs(EndpointPool::Member& m, BlockRange range, std::size_t& answer_bytes, std::uint64_t& log_count) {
    std::vector<RpcRequest> requests;
    requests.push_back({"eth_getLogs", "[{\"fromBlock\":" + quoted_number(range.first) + ",\"toBlock\":" + quoted_number(range.last) + "," +
                                           log_filter_json + "}]"});
    requests.push_back({"eth_getBlockByNumber", "[" + quoted_number(range.last) + ",false]"});
    std::vector<RpcReply> replies = co_await m.rpc.batch(std::move(requests));
    if (replies.size() != 2) malformed(m, "eth_getLogs batch answered with " + std::to_string(replies.size()) + " replies");
    for (const auto& r : replies) answer_bytes += r.result.size();
    if (replies[0].error_code) throw reply_error(m, "eth_getLogs", range.first, replies[0]);
    if (replies[1].error_code) throw reply_error(m, "eth_getBlockByNumber", range.last, replies[1]);
    const RangeOptions::Logs* filter = &*options.logs;
    auto decode_logs = [logs = std::move(replies[0]), header = std::move(replies[1]), range, filter, enrich = &options.enrich]() {
      Decoded out;
      auto fail = [&](const std::string& why) {
        out.error = why;
        out.blocks.clear();
        return out;
      };
      auto end = decode_block(JsonText(header.result));
      if (!end.ok()) return fail("header of block " + std::to_string(range.last) + ": " + end.error().message);
      if (!*end) return fail("the node does not have block " + std::to_string(range.last));
      if ((*end)->number != range.last) return fail("asked for block " + std::to_string(range.last) + ", got block " + std::to_string((*end)->number));
      auto timed = decode_timed_logs(JsonText(logs.result));
      if (!timed.ok()) return fail("eth_getLogs " + std::to_string(range.first) + "-" + std::to_string(range.last) + ": " + timed.error().message);
      std::vector<std::size_t> order(timed->logs.size());
      for (std::size_t i = 0; i < order.size(); ++i) order[i] = i;
      std::stable_sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) {
        const auto& x = timed->logs[a];
        const auto& y = timed->logs[b];
        return x.block_number != y.block_number ? x.block_number < y.block_number : x.log_index < y.log_index;
      });
      for (std::size_t i : order) {
        schema::Log& log = timed->logs[i];
        if (log.block_number < range.first || log.block_number > range.last)
          return fail("eth_getLogs " + std::to_string(range.first) + "-" + std::to_string(range.last) + " answered a log of block " +
                      std::to_string(log.block_number));
        if ((!filter->addresses.empty() && std::find(filter->addresses.begin(), filter->addresses.end(), log.address) == filter->addresses.end()) ||
            (!filter->topic0s.empty() && (log.topics.empty() || std::find(filter->topic0s.begin(), filter->topic0s.end(), log.topics[0]) ==
                                                                   filter->topic0s.end())))
          return fail("eth_getLogs answered a log the filter does not match (block " + std::to_string(log.block_number) + ", log " +
                      std::to_string(log.log_index) + ")");
        if (out.blocks.empty() || out.blocks.back().number != log.block_number) {
          schema::Block b;
          b.number = log.block_number;
          b.hash = log.block_hash;
          b.sparse = true;
          b.timestamp = timed->block_timestamps[i].value_or(0);
          out.blocks.push_back(std::move(b));
          if (!timed->block_timestamps[i]) out.error = "needs headers";  // marked: timestamps come from headers
        } else {
          schema::Block& b = out.blocks.back();
          if (b.hash != log.block_hash)
            return fail("eth_getLogs named two hashes for block " + std::to_string(b.number) + ": " + schema::to_hex(b.hash) + " and " +
                        schema::to_hex(log.block_hash));
          if (!b.logs.empty() && b.logs.back().log_index == log.log_index)
            return fail("eth_getLogs answered log " + std::to_string(log.log_index) + " of block " + std::to_string(b.number) + " twice");
        }
        out.blocks.back().logs.push_back(std::move(log));
      }
      const schema::Block& h = **end;
      if (out.blocks.empty() || out.blocks.back().number != range.last) {
        schema::Block b;
        b.number = h.number;
        b.hash = h.hash;
        b.timestamp = h.timestamp;
        b.sparse = true;
        out.blocks.push_back(std::move(b));
      } else {
        schema::Block& b = out.blocks.back();
        if (b.hash != h.hash)
          return fail("the logs of block " + std::to_string(b.number) + " name hash " + schema::to_hex(b.hash) + ", its header " +
                      schema::to_hex(h.hash));
        for (const auto& log : b.logs)
          if (!bloom_holds(h.logs_bloom, log))
            return fail("eth_getLogs answered log " + std::to_string(log.log_index) + " of block " + std::to_string(b.number) +
                        ", which the header's logs bloom does not hold");
        b.timestamp = h.timestamp;
      }
      if (out.error.empty() && *enrich)
        for (auto& b : out.blocks) (*enrich)(b);
      return out;
    };
    Decoded d = co_await decode(std::move(decode_logs));
    if (!d.error.empty() && d.error != "needs headers") malformed(m, d.error);
    for (const auto& b : d.blocks) log_count += b.logs.size();
    if (d.error.empty()) co_return d;

    // The node gave no blockTimestamp: the headers of the blocks with logs.
    std::vector<RpcRequest> header_requests;
    for (const auto& b : d.blocks)
      if (b.number != range.last) header_requests.push_back({"eth_getBlockByNumber", "[" + quoted_number(b.number) + ",false]"});
    std::vector<RpcReply> headers = co_await in_bursts(m, std::move(header_requests), answer_bytes, range.first);
    auto attach = [blocks = std::move(d.blocks), headers = std::move(headers), enrich = &options.enrich]() mutable {
      Decoded out;
      std::size_t next = 0;
      for (auto& b : blocks) {
        if (&b == &blocks.back()) break;  // the last block's header came with the logs
        auto h = decode_block(JsonText(headers.at(next++).result));
        if (!h.ok() || !*h || (*h)->number != b.number || (*h)->hash != b.hash) {
          out.error = "the header of block " + std::to_string(b.number) + " does not match its logs' block hash" +
                      (h.ok() ? std::string() : ": " + h.error().message);
          return out;
        }
        b.timestamp = (*h)->timestamp;
      }
      if (*enrich)
        for (auto& b : blocks) (*enrich)(b);
      out.blocks = std::move(blocks);
      return out;
    };
    Decoded full = co_await decode(std::move(attach));
    if (!full.error.empty()) malformed(m, full.error);
    co_return full;
  }

  std::size_t estimate(const BlockRange& r) const { return static_cast<std::size_t>(bytes_per_block * static_cast<double>(r.size())); }

  bool buffer_full() const {
    std::size_t held = in_flight_bytes;
    for (const Part& p : parts) held += p.window.bytes();
    return held >= options.buffer_bytes;
  }

  // The part whose segment holds block n (segments do not overlap).
  Part& part_of(std::uint64_t n) {
    for (Part& p : parts)
      if (n >= p.segment.first && n <= p.segment.last) return p;
    throw std::logic_error("range engine: block " + std::to_string(n) + " is in no segment held");
  }

  // The lowest range to fetch next: from the segment being written first. When the buffer is
  // full, only the range the writer waits for.
  std::optional<BlockRange> next_range(std::uint64_t max_blocks) {
    if (parts.empty()) return std::nullopt;
    if (buffer_full()) return parts.front().planner.next(max_blocks, parts.front().window.next());
    for (Part& p : parts)
      if (auto r = p.planner.next(max_blocks, std::numeric_limits<std::uint64_t>::max())) return r;
    return std::nullopt;
  }

  // One of an endpoint's max_in_flight fetch loops.
  Task<void> worker(std::size_t at) {
    EndpointPool::Member& m = pool.at(at);
    if (m.batch_blocks == 0) m.batch_blocks = options.batch_blocks;
    while (!stopping) {
      // An open circuit: nothing goes to this endpoint until its cool-down ends; then one worker
      // sends the probe and the others wait for its answer.
      if (const auto now = std::chrono::steady_clock::now(); !m.health.available(now)) {
        auto wait = std::chrono::steady_clock::duration(std::chrono::milliseconds(200));
        if (m.health.state(0) == EndpointState::kOpen) wait = std::clamp(m.health.open_until() - now, std::chrono::steady_clock::duration(std::chrono::milliseconds(1)), wait);
        co_await sleeps.wait(std::chrono::duration_cast<std::chrono::milliseconds>(wait));
        continue;
      }
      // A batch's calls all go at once: never more than the endpoint's burst (two calls a block).
      const std::uint64_t burst_blocks = std::max<std::uint64_t>(1, static_cast<std::uint64_t>(m.burst / 2));
      std::optional<BlockRange> range = next_range(options.logs ? log_sizers[at].blocks() : std::min(m.batch_blocks, burst_blocks));
      if (range) {
        auto t = tallies.find(range->first);
        if (t != tallies.end() && t->second.refused(at)) {  // this endpoint refused it: leave it to the others
          part_of(range->first).planner.give_back(*range);
          range.reset();
        }
      }
      if (!range) {
        co_await changed.wait();
        continue;
      }
      // An endpoint known to lag below the range leaves it to one that has it: its answer would
      // only be missing blocks, fetched again elsewhere.
      if (const auto head = m.health.head(); head && *head < range->last && pool.best_head() >= range->last) {
        part_of(range->first).planner.give_back(*range);
        changed.wake_all();
        co_await sleeps.wait(std::chrono::milliseconds(200));
        continue;
      }
      // The last range of the last segment held is out: the job's next segment can be asked for
      // while this one is fetched.
      if (parts.back().planner.exhausted()) changed.wake_all();
      // A range fetched again is a retry: it needs the process-wide retry budget.
      if (tallies.contains(range->first) || breaks.contains(range->first)) {
        co_await pool.retry_allowed();
        if (stopping) {
          part_of(range->first).planner.give_back(*range);
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
      m.health.begin(std::chrono::steady_clock::now());
      try {
        co_await pool.check_chain_id(at);
        const auto began = std::chrono::steady_clock::now();
        std::uint64_t log_count = 0;
        Decoded d;
        // (Not a conditional expression: g++ 12 miscompiles co_await inside one.)
        if (options.logs) {
          d = co_await fetch_logs(m, *range, answer_bytes, log_count);
        } else {
          d = co_await fetch(m, *range, answer_bytes);
        }
        in_flight_bytes -= estimated;
        // Latency per block, so that a batch compares with a single call.
        pool.record_success(at, std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() - began) /
                                    static_cast<std::int64_t>(range->size()));
        adapt(m, *range, answer_bytes);
        if (options.logs) {
          // Answers aimed at the same size as block batches': big ones halve the width, small
          // ones let it grow.
          if (answer_bytes > options.target_answer_bytes && range->size() > 1) {
            log_sizers[at].too_big(*range);
            spdlog::info("event=log_range_narrower endpoint={} blocks={}-{} width={} reason=\"answer of {} bytes ({} logs)\"",
                         m.rpc.endpoint(), range->first, range->last, log_sizers[at].blocks(), answer_bytes, log_count);
          } else {
            log_sizers[at].answered(*range, answer_bytes * 4 < options.target_answer_bytes);
          }
        }
        ++stats.batches;
        stats.answer_bytes += answer_bytes;
        tallies.erase(range->first);
        if (!stopping) {
          if (options.logs)
            part_of(range->first).window.put_sparse(*range, std::move(d.blocks), answer_bytes);
          else
            part_of(range->first).window.put(std::move(d.blocks), answer_bytes);
        }
        changed.wake_all();
        continue;
      } catch (const RpcError& e) {
        in_flight_bytes -= estimated;
        part_of(range->first).planner.give_back(*range);
        ++stats.refetches;
        changed.wake_all();
        if (options.logs) {
          const LogRangeAdvice advice =
              advise_log_range(e.what(), *range, e.kind() == RpcError::Kind::kHttpStatus ? e.code() : 0);
          if (auto width = log_sizers[at].refused(advice, *range)) {
            m.health.on_abandoned();
            spdlog::info("event=log_range_narrower endpoint={} blocks={}-{} width={} reason=\"{}\"", m.rpc.endpoint(), range->first,
                         range->last, *width, e.what());
            continue;
          }
        }
        if (says_batch_too_large(e) && range->size() > 1) {
          m.health.on_abandoned();
          m.batch_blocks = std::max<std::uint64_t>(1, range->size() / 2);
          spdlog::warn("event=range_batch_smaller endpoint={} batch_blocks={} reason=\"{}\"", m.rpc.endpoint(), m.batch_blocks, e.what());
          continue;
        }
        pool.record_failure(at, e);
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
        if (e.retryable() && !throttled) delay = pool.retry_delay(e, m.health.consecutive_failures() - 1);
      }
      spdlog::warn("event=rpc_retry op=fetch_range blocks={}-{} attempt={} endpoint={} backoff_ms={} reason=\"{}\"", range->first,
                   range->last, m.health.consecutive_failures(), m.rpc.endpoint(), delay.count(), problem);
      if (delay.count() > 0 && !stopping) co_await sleeps.wait(delay);
    }
  }

  // Batch size follows the answers: halve when an answer is too big, grow back towards the
  // configured size while answers are small.
  void adapt(EndpointPool::Member& m, const BlockRange& r, std::size_t bytes) {
    const double per_block = static_cast<double>(bytes) / static_cast<double>(r.size());
    bytes_per_block = bytes_per_block == 0 ? per_block : 0.8 * bytes_per_block + 0.2 * per_block;
    if (options.logs) return;  // the eth_getLogs width follows LogRangeSizer
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
    parts.front().planner.give_back(b.dropped);
    ++stats.refetches;
    changed.wake_all();
    const unsigned seen = ++breaks[b.number];
    spdlog::warn("event=range_link_break block={} parent_hash={} expected_parent={} seen={}", b.number, schema::to_hex(b.parent_hash),
                 schema::to_hex(b.expected_parent), seen);
    if (seen < options.link_retries) co_return;
    const schema::BlockRef ours = *parts.front().window.parent();
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

  // Asks the job for its next segment whenever the last one held has been handed out in full
  // (one segment ahead of the one being written at most).
  Task<void> feeder(const NextSegment& next) {
    while (!stopping) {
      if (!parts.empty() && (parts.size() >= 2 || !parts.back().planner.exhausted())) {
        co_await changed.wait();
        continue;
      }
      std::optional<Segment> s = co_await next();
      if (!s || stopping) break;
      if (parts.empty() && !last_written) last_written = s->parent;
      parts.push_back(Part{*s, RangePlanner(s->first, s->last), ReorderWindow(s->first, s->parent)});
      changed.wake_all();
    }
    no_more_parts = true;
    changed.wake_all();
  }

  Task<void> writer(BlockRange overall, const Write& write, const SegmentDone& done) {
    std::optional<Clock::time_point> deadline;
    const auto started = Clock::now();
    // On a terminal the line is drawn after the first batch already, then every second.
    auto reported = options.terminal_progress ? started - std::chrono::seconds(1) : started;
    const std::uint64_t done_before = stats.blocks, logs_before = stats.logs;
    while (!stopping) {
      if (parts.empty()) {
        if (no_more_parts) break;
        co_await changed.wait();
        continue;
      }
      Part& part = parts.front();
      ReorderWindow& window = part.window;
      const std::uint64_t last = part.segment.last;
      if (window.next() > last) {  // the segment is written
        last_written = window.parent();
        const Segment finished = part.segment;
        co_await done(finished);
        parts.pop_front();
        changed.wake_all();
        continue;
      }
      const std::size_t ready = window.ready();
      const bool rest_ready = ready > 0 && window.ready_through() >= last;
      const auto now = Clock::now();
      if (ready >= options.write_blocks || rest_ready || (ready > 0 && deadline && now >= *deadline)) {
        deadline.reset();
        const std::uint64_t next_before = window.next();
        ReorderWindow::Taken taken = window.take(options.write_blocks);
        changed.wake_all();
        if (!taken.blocks.empty()) {
          const std::uint64_t count = window.next() - next_before;  // blocks covered (a sparse batch covers more than it holds)
          std::uint64_t logs = 0, txs = 0;
          for (const auto& b : taken.blocks) logs += b.logs.size(), txs += b.transactions.size();
          std::vector<schema::Block> batch = std::move(taken.blocks);
          Task<void> written = write(std::move(batch));
          co_await std::move(written);
          last_written = window.parent();
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
          const std::uint64_t done_blocks = std::min(stats.blocks - done_before, overall.size());
          const double rate = static_cast<double>(done_blocks) / std::max(secs, 1e-3);
          const std::uint64_t left = overall.size() - done_blocks;
          const double logs_rate = static_cast<double>(stats.logs - logs_before) / std::max(secs, 1e-3);
          if (options.terminal_progress) {
            std::fprintf(stderr, "\r\033[Kblocks %llu-%llu: %llu/%llu (%.0f%%), %.0f blocks/s, %.0f logs/s, ETA %.0f s",
                         static_cast<unsigned long long>(overall.first), static_cast<unsigned long long>(overall.last),
                         static_cast<unsigned long long>(done_blocks), static_cast<unsigned long long>(overall.size()),
                         100.0 * static_cast<double>(done_blocks) / static_cast<double>(overall.size()), rate, logs_rate,
                         rate > 0 ? static_cast<double>(left) / rate : 0.0);
            std::fflush(stderr);
            progress_drawn = true;
            continue;
          }
          spdlog::info("event=range_progress done={} total={} next={} blocks_per_s={:.0f} logs_per_s={:.0f} eta_s={:.0f}", done_blocks,
                       overall.size(), window.next(), rate, logs_rate, rate > 0 ? static_cast<double>(left) / rate : 0.0);
        }
        continue;
      }
      if (ready > 0 && !deadline) deadline = now + options.max_write_delay;
      std::optional<Clock::duration> timeout;
      if (deadline) timeout = *deadline - now;
      co_await changed.wait(timeout);
    }
  }

  // Spawns a coroutine of the run; its failure stops the run and is rethrown by it.
  template <class T>
  void spawn(Task<T> task) {
    ++alive;
    asio::co_spawn(executor, std::move(task), [this](std::exception_ptr e) {
      if (e && !error) error = e;
      if (e) stop();
      --alive;
      changed.wake_all();
    });
  }

  Task<std::optional<schema::BlockRef>> run_segments(BlockRange overall, NextSegment next, Write write, SegmentDone done) {
    parts.clear();
    no_more_parts = false;
    last_written.reset();
    tallies.clear();
    breaks.clear();
    in_flight_bytes = 0;
    stopping = false;
    error = nullptr;
    spawn(feeder(next));
    for (std::size_t i = 0; i < pool.size(); ++i)
      for (std::size_t k = 0; k < pool.at(i).max_in_flight; ++k) spawn(worker(i));
    try {
      co_await writer(overall, write, done);
    } catch (...) {
      if (!error) error = std::current_exception();
    }
    stop();
    while (alive > 0) co_await changed.wait();
    parts.clear();
    if (progress_drawn) {
      std::fputc('\n', stderr);
      progress_drawn = false;
    }
    if (error) std::rethrow_exception(error);
    co_return last_written;
  }
};

RangeFetcher::RangeFetcher(asio::any_io_executor executor, EndpointPool& pool, RangeOptions options)
    : impl_(std::make_unique<Impl>(executor, pool, options)) {}
RangeFetcher::~RangeFetcher() = default;

Task<std::optional<schema::BlockRef>> RangeFetcher::run(std::uint64_t first, std::uint64_t last, std::optional<schema::BlockRef> cursor,
                                                        Write write) {
  bool given = false;
  NextSegment one = [&given, first, last, cursor]() -> Task<std::optional<Segment>> {
    if (given) co_return std::nullopt;
    given = true;
    co_return Segment{first, last, cursor};
  };
  SegmentDone nothing = [](const Segment&) -> Task<void> { co_return; };
  const BlockRange overall{first, std::max(first, last)};
  auto written = co_await impl_->run_segments(overall, std::move(one), std::move(write), std::move(nothing));
  co_return written ? written : cursor;
}

Task<std::optional<schema::BlockRef>> RangeFetcher::run_segments(BlockRange overall, NextSegment next, Write write, SegmentDone done) {
  return impl_->run_segments(overall, std::move(next), std::move(write), std::move(done));
}

void RangeFetcher::request_stop() { impl_->stop(); }

bool RangeFetcher::stop_requested() const { return impl_->stopping; }

void RangeFetcher::set_terminal_progress(bool on) { impl_->options.terminal_progress = on; }

const RangeFetcher::Stats& RangeFetcher::stats() const { return impl_->stats; }

}  // namespace chainidx::ingest

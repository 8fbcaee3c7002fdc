// The range engine in-process against a real anvil, without Postgres or Kafka: its io thread,
// decode pool and writer coroutine are all that run, so this is also the test that
// ThreadSanitizer (tests/sanitize.sh --thread) checks the engine's threading with.

#include <gtest/gtest.h>

#include <cstdint>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>

#include <algorithm>
#include <exception>
#include <random>
#include <set>
#include <atomic>

#include "harness.hpp"
#include "ingest/endpoint_pool.hpp"
#include "ingest/range_fetcher.hpp"
#include "schema/types.hpp"

namespace chainidx::testing {
namespace {

std::size_t occurrences(const std::string& text, const std::string& what) {
  std::size_t n = 0;
  for (auto at = text.find(what); at != std::string::npos; at = text.find(what, at + what.size())) ++n;
  return n;
}

// A chain of `rounds` x 4 blocks, a random few transfers in every fourth.
void mine_rounds(Anvil& anvil, int rounds, unsigned seed) {
  anvil.deploy_emitter();
  std::mt19937 rng(seed);
  for (int r = 0; r < rounds; ++r) {
    for (int i = 0, n = static_cast<int>(rng() % 4); i < n; ++i) anvil.send_transfer(static_cast<int>(rng() % 10), 1 + rng() % 1000);
    anvil.mine();
    anvil.rpc("anvil_mine", "[\"0x3\"]");
  }
}

// The node twice, as two providers would be, without rate limits, 3 batches in flight each.
ingest::PoolSettings two_endpoints(const Anvil& anvil) {
  ingest::PoolSettings settings;
  settings.chain_id = 31337;
  for (const char* name : {"first", "second"}) settings.endpoints.push_back({anvil.http_url(), name, 1e6, 1e6, 3});
  return settings;
}

// Small batches and a small buffer, so that many ranges are in flight and decoded at once.
ingest::RangeOptions small_batches(std::uint64_t batch_blocks, std::size_t write_blocks) {
  ingest::RangeOptions options;
  options.batch_blocks = batch_blocks;
  options.write_blocks = write_blocks;
  options.buffer_bytes = 64 * 1024;
  options.decode_threads = 3;
  return options;
}

// Runs a range engine job on `io` until it ends; what it returned, or its failure rethrown.
std::optional<schema::BlockRef> run_to_end(boost::asio::io_context& io, ingest::Task<std::optional<schema::BlockRef>> job) {
  std::optional<schema::BlockRef> result;
  std::exception_ptr failure;
  boost::asio::co_spawn(io, std::move(job), [&](std::exception_ptr e, std::optional<schema::BlockRef> r) {
    failure = e;
    result = r;
  });
  io.run();
  if (failure) std::rethrow_exception(failure);
  return result;
}

// A writer that keeps every block of every batch in `written`, each batch at most `max_batch`
// blocks, counting the batches in `writes` when given.
ingest::RangeFetcher::Write collect_into(std::vector<schema::Block>& written, std::size_t max_batch = SIZE_MAX,
                                         std::size_t* writes = nullptr) {
  return [&written, max_batch, writes](std::vector<schema::Block> batch) -> ingest::Task<void> {
    if (writes) ++*writes;
    EXPECT_LE(batch.size(), max_batch);
    for (auto& b : batch) written.push_back(std::move(b));
    co_return;
  };
}

// Two endpoints (the same node twice, as two providers would be), small batches and a small
// buffer so that many ranges are in flight and decoded at once and put back in order.
TEST(RangeEngine, InProcessWritesEveryBlockOnceInOrderLinkedAndAsTheNodeHasIt) {
  TempDir dir;
  Anvil anvil(dir.path());
  mine_rounds(anvil, 40, 41);
  const std::uint64_t last = anvil.block_number();

  boost::asio::io_context io;
  ingest::EndpointPool pool(io.get_executor(), two_endpoints(anvil));
  const ingest::RangeOptions options = small_batches(4, 7);
  ingest::RangeFetcher range(io.get_executor(), pool, options);

  std::vector<schema::Block> written;
  std::size_t writes = 0;
  ingest::RangeFetcher::Write write = collect_into(written, options.write_blocks, &writes);
  const std::optional<schema::BlockRef> result = run_to_end(io, range.run(0, last, std::nullopt, std::move(write)));
  ASSERT_TRUE(result);
  EXPECT_EQ(result->number, last);

  ASSERT_EQ(written.size(), last + 1);
  EXPECT_GT(writes, (last + 1) / options.write_blocks);
  std::size_t logs = 0;
  for (std::uint64_t n = 0; n <= last; ++n) {
    const schema::Block& b = written[n];
    ASSERT_EQ(b.number, n);
    EXPECT_EQ(schema::to_hex(b.hash), anvil.block_hash(n)) << "block " << n;
    if (n > 0) {
      EXPECT_EQ(b.parent_hash, written[n - 1].hash) << "block " << n;
    }
    logs += b.logs.size();
  }
  const std::string node_logs = anvil.rpc("eth_getLogs", "[{\"fromBlock\":\"0x0\",\"toBlock\":\"latest\"}]");
  EXPECT_EQ(logs, occurrences(node_logs, "\"logIndex\""));
  EXPECT_GT(logs, 20u);
  EXPECT_EQ(range.stats().blocks, last + 1);
  EXPECT_EQ(range.stats().logs, logs);
}

// Logs-only history in-process (chain.index = "events"): eth_getLogs ranges from two endpoints
// at once, decoded on the pool with an enrich step, put back in order as sparse blocks: every
// block with a matching log once, with the node's hash and time, and each range's end. Under
// ThreadSanitizer this is the logs mode's threading check.
TEST(RangeEngine, LogsModeWritesEachBlockWithLogsOnceInOrderAndEndsAtTheRangesEnd) {
  TempDir dir;
  Anvil anvil(dir.path());
  mine_rounds(anvil, 40, 43);
  const std::uint64_t last = anvil.block_number();
  const std::string transfer = "0xddf252ad1be2c89b69c2b068fc378daa952ba7f163c4a11628f55a4df523b3ef";
  const std::string node_logs = anvil.rpc("eth_getLogs", "[{\"fromBlock\":\"0x0\",\"toBlock\":\"latest\",\"topics\":[\"" + transfer + "\"]}]");
  const auto at = node_logs.find("\"address\":\"");
  ASSERT_NE(at, std::string::npos);
  const std::string emitter = node_logs.substr(at + 11, 42);

  boost::asio::io_context io;
  ingest::EndpointPool pool(io.get_executor(), two_endpoints(anvil));
  ingest::RangeOptions options = small_batches(4, 5);
  options.logs = ingest::RangeOptions::Logs{{schema::address_from_hex(emitter)}, {schema::hash_from_hex(transfer)}, 7, 50};
  std::atomic<int> enriched{0};
  options.enrich = [&](schema::Block& b) {
    EXPECT_TRUE(b.sparse);
    ++enriched;
  };
  ingest::RangeFetcher range(io.get_executor(), pool, options);

  std::vector<schema::Block> written;
  ingest::RangeFetcher::Write write = collect_into(written, options.write_blocks);
  const std::optional<schema::BlockRef> result = run_to_end(io, range.run(0, last, std::nullopt, std::move(write)));
  ASSERT_TRUE(result);
  EXPECT_EQ(result->number, last);
  EXPECT_EQ(schema::to_hex(result->hash), anvil.block_hash(last));
  ASSERT_FALSE(written.empty());
  EXPECT_EQ(written.back().number, last);
  EXPECT_EQ(enriched.load(), static_cast<int>(written.size()));

  std::size_t logs = 0;
  std::set<std::uint64_t> with_logs;
  for (std::size_t i = 0; i < written.size(); ++i) {
    const schema::Block& b = written[i];
    EXPECT_TRUE(b.sparse);
    if (i > 0) EXPECT_GT(b.number, written[i - 1].number) << "in order, each once";
    EXPECT_EQ(schema::to_hex(b.hash), anvil.block_hash(b.number)) << "block " << b.number;
    for (const auto& l : b.logs) {
      EXPECT_EQ(l.block_number, b.number);
      EXPECT_EQ(schema::to_hex(l.topics.at(0)), transfer);
    }
    if (!b.logs.empty()) with_logs.insert(b.number);
    logs += b.logs.size();
  }
  EXPECT_EQ(logs, occurrences(node_logs, "\"logIndex\""));
  EXPECT_GT(with_logs.size(), 10u);
  // Blocks without a log are not fetched: far fewer blocks than the chain has.
  EXPECT_LT(written.size(), (last + 1) / 2);
  EXPECT_EQ(range.stats().blocks, last + 1) << "the blocks covered";
  EXPECT_EQ(range.stats().logs, logs);
}

// A job of segments that are not adjacent (as a replay worker's chunks are when others hold the
// ones between): one engine writes them in the order given, each block once, each segment's first
// block linked to that segment's own parent; each segment is reported done after its last write,
// and the second segment is asked for before the first is done.
TEST(RangeEngine, SegmentsThatAreNotAdjacentAreWrittenInTheirOrderEachLinkedToItsOwnParent) {
  TempDir dir;
  Anvil anvil(dir.path());
  mine_rounds(anvil, 30, 42);
  ASSERT_GT(anvil.block_number(), 100u);

  boost::asio::io_context io;
  ingest::EndpointPool pool(io.get_executor(), two_endpoints(anvil));
  ingest::RangeFetcher range(io.get_executor(), pool, small_batches(3, 5));

  auto ref = [&](std::uint64_t n) {
    schema::BlockRef r;
    r.number = n;
    EXPECT_TRUE(schema::parse_fixed(anvil.block_hash(n), r.hash));
    return r;
  };
  using Segment = ingest::RangeFetcher::Segment;
  // Out of order and with gaps: 60-79, then 20-39, then 90-100, then 0-9.
  std::vector<Segment> job = {{60, 79, ref(59)}, {20, 39, ref(19)}, {90, 100, ref(89)}, {0, 9, std::nullopt}};
  std::size_t asked = 0;
  std::vector<std::string> events;  // "ask N" / "done N", in the order they happened
  ingest::RangeFetcher::NextSegment next = [&]() -> ingest::Task<std::optional<Segment>> {
    if (asked == job.size()) co_return std::nullopt;
    events.push_back("ask " + std::to_string(asked));
    co_return job[asked++];
  };
  ingest::RangeFetcher::SegmentDone done = [&](const Segment& s) -> ingest::Task<void> {
    for (std::size_t i = 0; i < job.size(); ++i)
      if (job[i].first == s.first) events.push_back("done " + std::to_string(i));
    co_return;
  };
  std::vector<schema::Block> written;
  ingest::RangeFetcher::Write write = collect_into(written);
  const std::optional<schema::BlockRef> result =
      run_to_end(io, range.run_segments({0, 100}, std::move(next), std::move(write), std::move(done)));
  ASSERT_TRUE(result);
  EXPECT_EQ(result->number, 9u) << "the last block of the last segment";

  std::vector<std::uint64_t> expected;
  for (const auto& s : job)
    for (std::uint64_t n = s.first; n <= s.last; ++n) expected.push_back(n);
  ASSERT_EQ(written.size(), expected.size());
  for (std::size_t i = 0; i < written.size(); ++i) {
    ASSERT_EQ(written[i].number, expected[i]) << "write " << i;
    EXPECT_EQ(schema::to_hex(written[i].hash), anvil.block_hash(expected[i]));
  }
  // Every segment done, in order.
  std::vector<std::string> dones;
  for (const auto& e : events)
    if (e.starts_with("done")) dones.push_back(e);
  EXPECT_EQ(dones, (std::vector<std::string>{"done 0", "done 1", "done 2", "done 3"}));
  // The second segment is asked for as soon as the first is handed out, while the first is still
  // being fetched. (Later ones may wait: at most two segments are held, and writes here take no
  // time, so the writer may finish one before the next is asked for.)
  auto at = [&](const std::string& e) { return std::find(events.begin(), events.end(), e) - events.begin(); };
  EXPECT_LT(at("ask 1"), at("done 0")) << "the second segment was asked for only after the first was done";
  for (std::size_t i = 0; i < job.size(); ++i) EXPECT_LT(at("ask " + std::to_string(i)), at("done " + std::to_string(i)));
}

}  // namespace
}  // namespace chainidx::testing

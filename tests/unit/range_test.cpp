// The pure parts of the range engine, step by step: the planner, the reorder window with its
// parent-link checks, and what a request's failures across endpoints add up to.

#include <gtest/gtest.h>

#include "ingest/failure_tally.hpp"
#include "ingest/range_plan.hpp"
#include "ingest/rpc_error.hpp"
#include "test_blocks.hpp"

namespace chainidx::ingest {
namespace {

using schema::Block;
using schema::Hash32;

using test_blocks::hash_of;
using test_blocks::make_block;

// Blocks first..last of one branch.
std::vector<Block> chain(std::uint64_t first, std::uint64_t last, std::uint32_t branch = 0) {
  std::vector<Block> out;
  for (std::uint64_t n = first; n <= last; ++n) out.push_back(make_block(n, branch, n == first ? 0 : branch));
  return out;
}

std::vector<std::uint64_t> numbers(const std::vector<Block>& blocks) {
  std::vector<std::uint64_t> out;
  for (const auto& b : blocks) out.push_back(b.number);
  return out;
}

constexpr std::uint64_t kNoLimit = ~std::uint64_t{0};

TEST(RangePlanner, CutsTheRangeLowestFirstInTheAskersBatchSize) {
  RangePlanner p(10, 34);
  EXPECT_EQ(p.next(10, kNoLimit), (BlockRange{10, 19}));
  EXPECT_EQ(p.next(5, kNoLimit), (BlockRange{20, 24}));
  EXPECT_EQ(p.next(50, kNoLimit), (BlockRange{25, 34}));
  EXPECT_FALSE(p.next(10, kNoLimit));
  EXPECT_TRUE(p.exhausted());
}

TEST(RangePlanner, AGivenBackRangeGoesOutFirstSplitForASmallerBatch) {
  RangePlanner p(0, 99);
  auto a = *p.next(20, kNoLimit);
  auto b = *p.next(20, kNoLimit);
  EXPECT_EQ(b, (BlockRange{20, 39}));
  p.give_back(a);
  EXPECT_FALSE(p.exhausted());
  EXPECT_EQ(p.lowest_open(), 0u);
  EXPECT_EQ(p.next(8, kNoLimit), (BlockRange{0, 7}));
  EXPECT_EQ(p.next(50, kNoLimit), (BlockRange{8, 19}));  // the rest of it, not beyond
  EXPECT_EQ(p.next(10, kNoLimit), (BlockRange{40, 49}));
}

TEST(RangePlanner, NeighbouringGivenBackRangesMerge) {
  RangePlanner p(0, 29);
  auto a = *p.next(10, kNoLimit), b = *p.next(10, kNoLimit), c = *p.next(10, kNoLimit);
  p.give_back(c);
  p.give_back(a);
  p.give_back(b);
  EXPECT_EQ(p.next(100, kNoLimit), (BlockRange{0, 29}));
  EXPECT_TRUE(p.exhausted());
}

TEST(RangePlanner, StartLimitHoldsBackRangesTooFarAhead) {
  RangePlanner p(0, 99);
  auto a = *p.next(10, kNoLimit);
  EXPECT_FALSE(p.next(10, 5));  // next would start at 10
  p.give_back(a);
  EXPECT_EQ(p.next(10, 0), (BlockRange{0, 9}));  // the range at the limit itself may go
}

TEST(RangePlanner, AnEmptyRangePlansNothing) {
  RangePlanner p(5, 4);
  EXPECT_TRUE(p.exhausted());
  EXPECT_FALSE(p.next(10, kNoLimit));
  EXPECT_FALSE(p.lowest_open());
}

TEST(ReorderWindow, GivesBlocksOutInOrderWhateverOrderRangesArrive) {
  ReorderWindow w(10, make_block(9).ref());
  w.put(chain(20, 29), 1000);
  EXPECT_EQ(w.ready(), 0u);
  EXPECT_TRUE(w.take(100).blocks.empty());
  w.put(chain(10, 19), 1000);
  EXPECT_EQ(w.ready(), 20u);
  EXPECT_EQ(w.bytes(), 2000u);
  auto t = w.take(15);
  EXPECT_FALSE(t.broken);
  EXPECT_EQ(numbers(t.blocks).front(), 10u);
  EXPECT_EQ(numbers(t.blocks).back(), 24u);
  EXPECT_EQ(w.next(), 25u);
  EXPECT_EQ(w.ready(), 5u);
  EXPECT_EQ(w.bytes(), 500u);  // five blocks of the second range left, at 100 each
  t = w.take(100);
  EXPECT_EQ(t.blocks.size(), 5u);
  EXPECT_EQ(w.bytes(), 0u);
  EXPECT_TRUE(w.empty());
  EXPECT_EQ(w.parent()->number, 29u);
}

// Logs-only history: a range holds only its blocks with logs and its last block, unlinked.
std::vector<schema::Block> sparse(std::initializer_list<std::uint64_t> numbers) {
  std::vector<schema::Block> out;
  for (auto n : numbers) {
    schema::Block b = make_block(n);
    b.parent_hash = {};
    b.sparse = true;
    out.push_back(b);
  }
  return out;
}

TEST(ReorderWindow, SparseRangesGoOutInOrderAndCoverTheirWholeRange) {
  ReorderWindow w(100, make_block(99, /*branch=*/3).ref());  // no link is asked of sparse blocks
  w.put_sparse({200, 299}, sparse({250, 299}), 200);
  EXPECT_EQ(w.ready(), 0u);
  EXPECT_EQ(w.ready_through(), 99u);
  w.put_sparse({100, 199}, sparse({105, 150, 151, 199}), 400);
  EXPECT_EQ(w.ready(), 6u);
  EXPECT_EQ(w.ready_through(), 299u);
  auto t = w.take(3);
  EXPECT_FALSE(t.broken);
  EXPECT_EQ(numbers(t.blocks), (std::vector<std::uint64_t>{105, 150, 151}));
  EXPECT_EQ(w.next(), 152u);
  EXPECT_EQ(w.ready_through(), 299u);
  t = w.take(100);
  EXPECT_EQ(numbers(t.blocks), (std::vector<std::uint64_t>{199, 250, 299}));
  EXPECT_EQ(w.next(), 300u);
  EXPECT_EQ(w.parent()->number, 299u);
  EXPECT_EQ(w.bytes(), 0u);
  EXPECT_TRUE(w.empty());
  // A dense range after a sparse one links to the sparse range's last block.
  auto dense = chain(300, 302);
  w.put(dense, 30);
  EXPECT_EQ(w.take(100).blocks.size(), 3u);
}

TEST(ReorderWindow, ASparseRangeNeedsItsLastBlockAndAscendingBlocks) {
  ReorderWindow w(0, std::nullopt);
  EXPECT_THROW(w.put_sparse({0, 9}, sparse({3, 5}), 10), std::logic_error);
  EXPECT_THROW(w.put_sparse({0, 9}, sparse({5, 3, 9}), 10), std::logic_error);
  w.put_sparse({10, 19}, sparse({19}), 10);
  EXPECT_THROW(w.put_sparse({15, 25}, sparse({25}), 10), std::logic_error) << "overlaps";
  w.put_sparse({0, 9}, sparse({9}), 10);
  EXPECT_EQ(w.ready_through(), 19u);
}

TEST(ReorderWindow, StopsAtAGap) {
  ReorderWindow w(0, std::nullopt);
  w.put(chain(0, 4), 50);
  w.put(chain(10, 14), 50);
  auto t = w.take(100);
  EXPECT_EQ(numbers(t.blocks), (std::vector<std::uint64_t>{0, 1, 2, 3, 4}));
  EXPECT_FALSE(t.broken);
  EXPECT_EQ(w.ready(), 0u);
  w.put(chain(5, 9), 50);
  EXPECT_EQ(w.take(100).blocks.size(), 10u);
}

TEST(ReorderWindow, FirstBlockMustLinkToTheCursor) {
  ReorderWindow w(10, make_block(9, /*branch=*/7).ref());  // the cursor is of branch 7
  w.put(chain(10, 14), 500);                                  // these descend from branch 0
  auto t = w.take(100);
  EXPECT_TRUE(t.blocks.empty());
  ASSERT_TRUE(t.broken);
  EXPECT_EQ(t.broken->number, 10u);
  EXPECT_EQ(t.broken->expected_parent, hash_of(9, 7));
  EXPECT_EQ(t.broken->parent_hash, hash_of(9, 0));
  EXPECT_EQ(t.broken->dropped, (BlockRange{10, 14}));
  EXPECT_EQ(w.bytes(), 0u);  // dropped blocks cost nothing any more
  EXPECT_EQ(w.next(), 10u);
}

TEST(ReorderWindow, ABreakBetweenRangesDropsOnlyTheLaterRange) {
  ReorderWindow w(0, std::nullopt);
  w.put(chain(0, 9), 100);
  w.put(chain(10, 19, /*branch=*/3), 100);  // block 10's parent is block 9 of branch 0: links
  auto bad = chain(20, 29);  // block 20 names a parent that is not block 19's hash
  bad.front().parent_hash = hash_of(19, 99);
  w.put(std::move(bad), 100);
  auto t = w.take(100);
  EXPECT_EQ(t.blocks.size(), 20u);  // 0..9, then 10..19 (which link: 10's parent is 9 of branch 0)
  ASSERT_TRUE(t.broken);
  EXPECT_EQ(t.broken->dropped, (BlockRange{20, 29}));
  // The refetched range links and goes out.
  auto good = chain(20, 29, 3);
  good.front().parent_hash = hash_of(19, 3);
  w.put(std::move(good), 100);
  auto again = w.take(100);
  EXPECT_FALSE(again.broken);
  EXPECT_EQ(again.blocks.size(), 10u);
}

TEST(ReorderWindow, RefusesRangesThatBreakItsRules) {
  ReorderWindow w(10, std::nullopt);
  EXPECT_THROW(w.put(chain(5, 12), 1), std::logic_error);  // before next
  w.put(chain(20, 29), 1);
  EXPECT_THROW(w.put(chain(25, 30), 1), std::logic_error);  // overlaps
  EXPECT_THROW(w.put(chain(15, 20), 1), std::logic_error);  // overlaps
  auto unlinked = chain(40, 45);
  unlinked[2].parent_hash = hash_of(41, 5);
  EXPECT_THROW(w.put(std::move(unlinked), 1), std::logic_error);
}

RpcError malformed(const std::string& m) { return RpcError(RpcError::Kind::kMalformed, m); }
RpcError refused(const std::string& m) { return RpcError(RpcError::Kind::kRpc, m, RpcError::kMethodNotFound); }
RpcError transport(const std::string& m) { return RpcError(RpcError::Kind::kTransport, m); }

TEST(FailureTally, TransportTroubleIsRetriedForever) {
  FailureTally t({"a", "b"}, 2);
  for (int i = 0; i < 100; ++i) EXPECT_EQ(t.record(i % 2, transport("reset")), FailureTally::Verdict::kRetry);
}

TEST(FailureTally, RefusedEverywhereOnlyWhenEveryEndpointRefused) {
  FailureTally t({"a", "b", "c"}, 5);
  EXPECT_EQ(t.record(0, refused("a: no such method")), FailureTally::Verdict::kRetry);
  EXPECT_TRUE(t.refused(0));
  EXPECT_EQ(t.record(0, refused("a: no such method")), FailureTally::Verdict::kRetry);  // counted once
  EXPECT_EQ(t.record(1, transport("b: reset")), FailureTally::Verdict::kRetry);
  EXPECT_EQ(t.record(1, refused("b: no such method")), FailureTally::Verdict::kRetry);
  EXPECT_EQ(t.record(2, refused("c: not whitelisted")), FailureTally::Verdict::kRefusedEverywhere);
  const std::string m = t.refused_message("eth_getBlockReceipts");
  EXPECT_NE(m.find("every endpoint refused eth_getBlockReceipts"), std::string::npos) << m;
  EXPECT_NE(m.find("c answered: c: not whitelisted"), std::string::npos) << m;
}

TEST(FailureTally, UndecodableAfterTheGivenRoundsOfBadAnswersFromEveryEndpoint) {
  FailureTally t({"a", "b"}, 2);
  EXPECT_EQ(t.record(0, malformed("a: bad bloom")), FailureTally::Verdict::kRetry);
  EXPECT_EQ(t.record(0, malformed("a: bad bloom")), FailureTally::Verdict::kRetry);  // b has not answered yet
  EXPECT_EQ(t.record(1, malformed("b: bad bloom")), FailureTally::Verdict::kRetry);  // round 1 of 2
  EXPECT_EQ(t.record(1, transport("b: reset")), FailureTally::Verdict::kRetry);
  EXPECT_EQ(t.record(0, malformed("a: bad hash")), FailureTally::Verdict::kRetry);
  EXPECT_EQ(t.record(1, malformed("b: bad hash")), FailureTally::Verdict::kUndecodable);
  const std::string m = t.undecodable_message("block 7");
  EXPECT_NE(m.find("block 7 failed validation on every endpoint 2 times"), std::string::npos) << m;
  EXPECT_NE(m.find("a: bad hash; b: bad hash"), std::string::npos) << m;
}

TEST(FailureTally, AnEndpointThatRefusedCountsAsPartOfABadRound) {
  FailureTally t({"a", "b"}, 1);
  EXPECT_EQ(t.record(0, refused("a: method not found")), FailureTally::Verdict::kRetry);
  EXPECT_EQ(t.record(1, malformed("b: bad")), FailureTally::Verdict::kUndecodable);
}

TEST(RpcErrorText, BatchTooLargeIsRecognisedAndNotMistakenForRateLimits) {
  auto rpc = [](const std::string& m) { return RpcError(RpcError::Kind::kRpc, m, -32000); };
  EXPECT_TRUE(says_batch_too_large(RpcError(RpcError::Kind::kHttpStatus, "HTTP 413", 413)));
  EXPECT_TRUE(says_batch_too_large(rpc("batch too large")));
  EXPECT_TRUE(says_batch_too_large(rpc("batch response exceeded limit")));
  EXPECT_TRUE(says_batch_too_large(rpc("Batch size limit exceeded")));
  EXPECT_TRUE(says_batch_too_large(rpc("response size exceeded")));
  EXPECT_FALSE(says_batch_too_large(rpc("limit exceeded")));  // Infura's rate limit
  EXPECT_FALSE(says_batch_too_large(rpc("header not found")));
  EXPECT_FALSE(says_batch_too_large(RpcError(RpcError::Kind::kHttpStatus, "HTTP 429", 429)));
}

}  // namespace
}  // namespace chainidx::ingest

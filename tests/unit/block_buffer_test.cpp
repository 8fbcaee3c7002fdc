#include "reorg/block_buffer.hpp"
#include "test_blocks.hpp"

#include <gtest/gtest.h>

#include <map>
#include <random>

namespace chainidx::reorg {
namespace {

using schema::Block;
using schema::BlockRef;
using schema::Hash32;
using Kind = AddResult::Kind;

using test_blocks::hash_of;
using test_blocks::make_block;

FetchRequest by_number(std::uint64_t n) { return {FetchRequest::Kind::kByNumber, n, {}}; }
FetchRequest by_hash(std::uint64_t n, std::uint32_t branch) { return {FetchRequest::Kind::kByHash, n, hash_of(n, branch)}; }

std::vector<std::uint64_t> numbers(const std::vector<Block>& blocks) {
  std::vector<std::uint64_t> out;
  for (auto& b : blocks) out.push_back(b.number);
  return out;
}

TEST(BlockBuffer, FirstRunFetchesFromStartBlockByNumberUpToTheHead) {
  BlockBuffer buf({.confirmations = 2, .start_block = 5}, std::nullopt);
  EXPECT_EQ(buf.next_fetch(), std::nullopt);
  ASSERT_TRUE(buf.on_head(make_block(8, 0, 0).ref()).accepted);
  EXPECT_EQ(buf.next_fetch(), by_number(5));
  EXPECT_EQ(buf.add_block(make_block(5, 0, 0)).kind, Kind::kLinked);
  EXPECT_EQ(buf.next_fetch(), by_number(6));
  EXPECT_EQ(buf.add_block(make_block(6, 0, 0)).kind, Kind::kLinked);
  EXPECT_EQ(buf.next_fetch(), by_number(7));
  EXPECT_EQ(buf.add_block(make_block(7, 0, 0)).kind, Kind::kLinked);
  EXPECT_EQ(numbers(buf.take_confirmed()), (std::vector<std::uint64_t>{5}));
  // The head itself is fetched by hash, so the buffer ends exactly on the announced block.
  EXPECT_EQ(buf.next_fetch(), by_hash(8, 0));
  EXPECT_EQ(buf.add_block(make_block(8, 0, 0)).kind, Kind::kLinked);
  EXPECT_EQ(buf.next_fetch(), std::nullopt);
  EXPECT_EQ(numbers(buf.take_confirmed()), (std::vector<std::uint64_t>{6}));
  EXPECT_EQ(buf.last_confirmed()->hash, hash_of(6, 0));
  EXPECT_EQ(buf.unconfirmed_size(), 2u);
}

TEST(BlockBuffer, ConfirmsWhenHeadReachesNumberPlusConfirmations) {
  BlockBuffer buf({.confirmations = 3, .start_block = 0}, BlockRef{9, hash_of(9, 0), hash_of(8, 0)});
  for (std::uint64_t n = 10; n <= 12; ++n) {
    buf.on_head(make_block(n, 0, 0).ref());
    buf.add_block(make_block(n, 0, 0));
    EXPECT_TRUE(buf.take_confirmed().empty()) << "block 10 is not confirmed at head " << n;
  }
  buf.on_head(make_block(13, 0, 0).ref());
  buf.add_block(make_block(13, 0, 0));
  EXPECT_EQ(numbers(buf.take_confirmed()), (std::vector<std::uint64_t>{10}));
}

// Confirmation by the node's tag: the buffer's depth is only a ceiling, and the tag's block
// confirms itself and everything below it, once it is a block of the chain.
TEST(BlockBuffer, AHeadThatExtendsTheTipConfirmsBeforeItsBodyIsFetched) {
  BlockBuffer buf({.confirmations = 3, .start_block = 0}, BlockRef{9, hash_of(9, 0), hash_of(8, 0)});
  for (std::uint64_t n = 10; n <= 12; ++n) {
    buf.on_head(make_block(n, 0, 0).ref());
    buf.add_block(make_block(n, 0, 0));
  }
  EXPECT_TRUE(buf.take_confirmed().empty());
  buf.on_head(make_block(13, 0, 0).ref());
  EXPECT_EQ(numbers(buf.take_confirmed()), (std::vector<std::uint64_t>{10}));
  EXPECT_EQ(buf.last_confirmed()->number, 10u);
  // The head's body is still fetched, by hash, and confirms nothing more.
  EXPECT_EQ(buf.next_fetch(), by_hash(13, 0));
  EXPECT_EQ(buf.add_block(make_block(13, 0, 0)).kind, Kind::kLinked);
  EXPECT_TRUE(buf.take_confirmed().empty());
  EXPECT_EQ(buf.unconfirmed_size(), 3u);
}

TEST(BlockBuffer, AHeadThatDoesNotLinkToTheTipConfirmsNothingUntilItsChainIsFetched) {
  BlockBuffer buf({.confirmations = 3, .start_block = 0}, BlockRef{9, hash_of(9, 0), hash_of(8, 0)});
  for (std::uint64_t n = 10; n <= 12; ++n) {
    buf.on_head(make_block(n, 0, 0).ref());
    buf.add_block(make_block(n, 0, 0));
  }
  // Block 13 of another branch (its parent is not our 12), and a head two blocks ahead.
  buf.on_head(make_block(13, 1, 1).ref());
  EXPECT_TRUE(buf.take_confirmed().empty());
  buf.on_head(make_block(14, 0, 0).ref());
  EXPECT_TRUE(buf.take_confirmed().empty());
}

TEST(BlockBuffer, NextToConfirmIsTheOldestBlockOnceTheChainIsConfirmationsDeep) {
  BlockBuffer buf({.confirmations = 2, .start_block = 0}, BlockRef{9, hash_of(9, 0), hash_of(8, 0)});
  EXPECT_EQ(buf.next_to_confirm(), nullptr);
  buf.on_head(make_block(10, 0, 0).ref());
  buf.add_block(make_block(10, 0, 0));
  EXPECT_EQ(buf.next_to_confirm(), nullptr) << "one block: the next head confirms nothing";
  buf.on_head(make_block(11, 0, 0).ref());
  buf.add_block(make_block(11, 0, 0));
  ASSERT_NE(buf.next_to_confirm(), nullptr);
  EXPECT_EQ(buf.next_to_confirm()->hash, hash_of(10, 0));
  // A walk back in progress: nothing is sure to be confirmed next.
  buf.on_head(make_block(13, 1, 1).ref());
  buf.add_block(make_block(13, 1, 1));
  EXPECT_EQ(buf.next_to_confirm(), nullptr);
}

TEST(BlockBuffer, TheNodesSafeBlockConfirmsItAndEverythingBelowIt) {
  BlockBuffer buf({.confirmations = 10000, .start_block = 0}, BlockRef{9, hash_of(9, 0), hash_of(8, 0)});
  for (std::uint64_t n = 10; n <= 20; ++n) {
    buf.on_head(make_block(n, 0, 0).ref());
    buf.add_block(make_block(n, 0, 0));
  }
  EXPECT_TRUE(buf.take_confirmed().empty());
  EXPECT_FALSE(buf.on_final(make_block(14, 1, 0).ref())) << "a safe block of another branch confirms nothing";
  EXPECT_TRUE(buf.take_confirmed().empty());
  EXPECT_FALSE(buf.on_final(make_block(25, 0, 0).ref())) << "a safe block not fetched yet confirms nothing";
  EXPECT_TRUE(buf.on_final(make_block(14, 0, 0).ref()));
  EXPECT_EQ(numbers(buf.take_confirmed()), (std::vector<std::uint64_t>{10, 11, 12, 13, 14}));
  EXPECT_TRUE(buf.on_final(make_block(12, 0, 0).ref())) << "an older safe block: confirmed already";
  EXPECT_TRUE(buf.take_confirmed().empty());
  EXPECT_EQ(buf.last_confirmed()->number, 14u);
  EXPECT_EQ(buf.unconfirmed_size(), 6u);
  // A reorg above the safe block is an ordinary reorg.
  buf.on_head(make_block(17, 2, 0).ref());
  EXPECT_EQ(buf.add_block(make_block(17, 2, 0)).kind, Kind::kReorged);
  EXPECT_TRUE(buf.on_final(make_block(17, 2, 0).ref()));
  EXPECT_EQ(numbers(buf.take_confirmed()), (std::vector<std::uint64_t>{15, 16, 17}));
}

TEST(BlockBuffer, DuplicateHeadIsIgnored) {
  BlockBuffer buf({.confirmations = 3}, BlockRef{9, hash_of(9, 0), hash_of(8, 0)});
  buf.on_head(make_block(10, 0, 0).ref());
  ASSERT_EQ(buf.add_block(make_block(10, 0, 0)).kind, Kind::kLinked);
  EXPECT_FALSE(buf.on_head(make_block(10, 0, 0).ref()).accepted);
  EXPECT_EQ(buf.next_fetch(), std::nullopt);
  EXPECT_EQ(buf.add_block(make_block(10, 0, 0)).kind, Kind::kDuplicate);
  EXPECT_EQ(buf.unconfirmed_size(), 1u);
}

TEST(BlockBuffer, StaleHeadAtOrBelowCursorIsIgnored) {
  BlockBuffer buf({.confirmations = 3}, BlockRef{9, hash_of(9, 0), hash_of(8, 0)});
  EXPECT_FALSE(buf.on_head(make_block(9, 7, 7).ref()).accepted);
  EXPECT_FALSE(buf.on_head(make_block(4, 0, 0).ref()).accepted);
  EXPECT_EQ(buf.next_fetch(), std::nullopt);
}

TEST(BlockBuffer, ReorgOfDepthTwoRevertsTwoBlocks) {
  BlockBuffer buf({.confirmations = 5}, BlockRef{9, hash_of(9, 0), hash_of(8, 0)});
  for (std::uint64_t n = 10; n <= 13; ++n) {
    buf.on_head(make_block(n, 0, 0).ref());
    buf.add_block(make_block(n, 0, 0));
  }
  // anvil_reorg of depth 2 replaces 12 and 13 with a new branch of the same length.
  ASSERT_TRUE(buf.on_head(make_block(13, 1, 1).ref()).accepted);
  EXPECT_EQ(buf.next_fetch(), by_hash(13, 1));
  EXPECT_EQ(buf.add_block(make_block(13, 1, 1)).kind, Kind::kNeedsAncestor);
  EXPECT_EQ(buf.next_fetch(), by_hash(12, 1));
  AddResult r = buf.add_block(make_block(12, 1, 0));
  EXPECT_EQ(r.kind, Kind::kReorged);
  EXPECT_EQ(r.reverted, 2u);
  EXPECT_EQ(buf.tip()->hash, hash_of(13, 1));
  EXPECT_EQ(buf.unconfirmed_size(), 4u);
  EXPECT_EQ(buf.next_fetch(), std::nullopt);
}

TEST(BlockBuffer, NewHeadBelowTipWithOtherHashBecomesTheTip) {
  BlockBuffer buf({.confirmations = 5}, BlockRef{9, hash_of(9, 0), hash_of(8, 0)});
  for (std::uint64_t n = 10; n <= 13; ++n) {
    buf.on_head(make_block(n, 0, 0).ref());
    buf.add_block(make_block(n, 0, 0));
  }
  // The node's latest head is canonical even when it is shorter than what we hold.
  ASSERT_TRUE(buf.on_head(make_block(11, 1, 0).ref()).accepted);
  EXPECT_EQ(buf.next_fetch(), by_hash(11, 1));
  AddResult r = buf.add_block(make_block(11, 1, 0));
  EXPECT_EQ(r.kind, Kind::kReorged);
  EXPECT_EQ(r.reverted, 3u);
  EXPECT_EQ(buf.tip()->hash, hash_of(11, 1));
}

TEST(BlockBuffer, HeadThatIsAnOlderBlockOfTheChainRollsBackToIt) {
  BlockBuffer buf({.confirmations = 5}, BlockRef{9, hash_of(9, 0), hash_of(8, 0)});
  for (std::uint64_t n = 10; n <= 13; ++n) {
    buf.on_head(make_block(n, 0, 0).ref());
    buf.add_block(make_block(n, 0, 0));
  }
  auto r = buf.on_head(make_block(11, 0, 0).ref());
  EXPECT_TRUE(r.accepted);
  EXPECT_EQ(r.reverted, 2u);
  EXPECT_EQ(buf.tip()->hash, hash_of(11, 0));
  EXPECT_EQ(buf.next_fetch(), std::nullopt);
}

TEST(BlockBuffer, SwitchToCompetingBranchAndBack) {
  BlockBuffer buf({.confirmations = 10}, BlockRef{9, hash_of(9, 0), hash_of(8, 0)});
  for (std::uint64_t n = 10; n <= 12; ++n) {
    buf.on_head(make_block(n, 0, 0).ref());
    buf.add_block(make_block(n, 0, 0));
  }
  buf.on_head(make_block(12, 1, 0).ref());
  EXPECT_EQ(buf.add_block(make_block(12, 1, 0)).reverted, 1u);
  buf.on_head(make_block(13, 0, 0).ref());  // branch 0 wins after all
  EXPECT_EQ(buf.next_fetch(), by_hash(13, 0));
  EXPECT_EQ(buf.add_block(make_block(13, 0, 0)).kind, Kind::kNeedsAncestor);
  EXPECT_EQ(buf.next_fetch(), by_hash(12, 0));
  AddResult r = buf.add_block(make_block(12, 0, 0));
  EXPECT_EQ(r.kind, Kind::kReorged);
  EXPECT_EQ(r.reverted, 1u);
  EXPECT_EQ(buf.tip()->hash, hash_of(13, 0));
}

TEST(BlockBuffer, GapAfterTipIsFetchedByNumberThenHeadByHash) {
  BlockBuffer buf({.confirmations = 10}, BlockRef{9, hash_of(9, 0), hash_of(8, 0)});
  buf.on_head(make_block(12, 0, 0).ref());
  EXPECT_EQ(buf.next_fetch(), by_number(10));
  buf.add_block(make_block(10, 0, 0));
  EXPECT_EQ(buf.next_fetch(), by_number(11));
  buf.add_block(make_block(11, 0, 0));
  EXPECT_EQ(buf.next_fetch(), by_hash(12, 0));
}

TEST(BlockBuffer, GapFillThatMeetsAReorgWalksBackByHash) {
  BlockBuffer buf({.confirmations = 10}, BlockRef{9, hash_of(9, 0), hash_of(8, 0)});
  buf.on_head(make_block(10, 0, 0).ref());
  buf.add_block(make_block(10, 0, 0));
  buf.on_head(make_block(13, 1, 1).ref());
  EXPECT_EQ(buf.next_fetch(), by_number(11));
  // Meanwhile the node reorganised 10: block 11 by number is on branch 1.
  EXPECT_EQ(buf.add_block(make_block(11, 1, 1)).kind, Kind::kNeedsAncestor);
  EXPECT_EQ(buf.next_fetch(), by_hash(10, 1));
  AddResult r = buf.add_block(make_block(10, 1, 0));
  EXPECT_EQ(r.kind, Kind::kReorged);
  EXPECT_EQ(r.reverted, 1u);
  EXPECT_EQ(buf.next_fetch(), by_number(12));
}

TEST(BlockBuffer, NeverEmitsABlockThatAKnownReorgOrphaned) {
  BlockBuffer buf({.confirmations = 2}, BlockRef{9, hash_of(9, 0), hash_of(8, 0)});
  buf.on_head(make_block(10, 0, 0).ref());
  buf.add_block(make_block(10, 0, 0));
  buf.on_head(make_block(11, 0, 0).ref());
  buf.add_block(make_block(11, 0, 0));
  buf.on_head(make_block(11, 1, 1).ref());
  buf.add_block(make_block(11, 1, 1));
  buf.add_block(make_block(10, 1, 0));  // 10 and 11 of branch 0 are orphaned
  buf.on_head(make_block(12, 1, 1).ref());
  buf.add_block(make_block(12, 1, 1));
  auto out = buf.take_confirmed();
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].hash, hash_of(10, 1));
}

TEST(BlockBuffer, ReorgReplacingAConfirmedBlockIsADeepReorgAndHalts) {
  BlockBuffer buf({.confirmations = 2}, BlockRef{9, hash_of(9, 0), hash_of(8, 0)});
  for (std::uint64_t n = 10; n <= 12; ++n) {
    buf.on_head(make_block(n, 0, 0).ref());
    buf.add_block(make_block(n, 0, 0));
  }
  ASSERT_EQ(numbers(buf.take_confirmed()), (std::vector<std::uint64_t>{10}));
  // A branch that forks below 10 (the confirmed block).
  buf.on_head(make_block(12, 1, 1).ref());
  EXPECT_EQ(buf.add_block(make_block(12, 1, 1)).kind, Kind::kNeedsAncestor);
  EXPECT_EQ(buf.add_block(make_block(11, 1, 1)).kind, Kind::kVerifyingCursor);
  // Before halting, the buffer asks the node whether the cursor is still canonical.
  EXPECT_EQ(buf.next_fetch(), by_number(10));
  EXPECT_FALSE(buf.halted());
  EXPECT_EQ(buf.add_block(make_block(10, 1, 1)).kind, Kind::kDeepReorg);
  ASSERT_TRUE(buf.halted());
  EXPECT_EQ(buf.deep_reorg()->last_confirmed.number, 10u);
  EXPECT_EQ(buf.deep_reorg()->branch_block.hash, hash_of(11, 1));
  EXPECT_EQ(buf.next_fetch(), std::nullopt);
  EXPECT_EQ(buf.add_block(make_block(13, 0, 0)).kind, Kind::kHalted);
  EXPECT_TRUE(buf.take_confirmed().empty());
}

TEST(BlockBuffer, CursorNoLongerCanonicalOnRestartIsADeepReorg) {
  BlockBuffer buf({.confirmations = 2}, BlockRef{9, hash_of(9, 0), hash_of(8, 0)});
  buf.on_head(make_block(12, 1, 1).ref());
  EXPECT_EQ(buf.next_fetch(), by_number(10));
  EXPECT_EQ(buf.add_block(make_block(10, 1, 1)).kind, Kind::kVerifyingCursor);
  EXPECT_EQ(buf.next_fetch(), by_number(9));
  EXPECT_EQ(buf.add_block(make_block(9, 1, 1)).kind, Kind::kDeepReorg);
  EXPECT_TRUE(buf.halted());
}

TEST(BlockBuffer, StaleBranchForkingBelowCursorIsDroppedWhenCursorIsStillCanonical) {
  BlockBuffer buf({.confirmations = 2}, BlockRef{9, hash_of(9, 0), hash_of(8, 0)});
  for (std::uint64_t n = 10; n <= 12; ++n) {
    buf.on_head(make_block(n, 0, 0).ref());
    buf.add_block(make_block(n, 0, 0));
  }
  ASSERT_EQ(numbers(buf.take_confirmed()), (std::vector<std::uint64_t>{10}));
  // A lagging provider announces an old head of a branch the chain abandoned long ago.
  buf.on_head(make_block(11, 5, 5).ref());
  EXPECT_EQ(buf.add_block(make_block(11, 5, 5)).kind, Kind::kVerifyingCursor);
  EXPECT_EQ(buf.next_fetch(), by_number(10));
  EXPECT_EQ(buf.add_block(make_block(10, 0, 0)).kind, Kind::kStaleBranch);
  EXPECT_FALSE(buf.halted());
  EXPECT_EQ(buf.next_fetch(), std::nullopt);
  EXPECT_EQ(buf.tip()->hash, hash_of(12, 0));
}

TEST(BlockBuffer, ParentWithWrongNumberIsRejected) {
  BlockBuffer buf({.confirmations = 5}, BlockRef{9, hash_of(9, 0), hash_of(8, 0)});
  buf.on_head(make_block(10, 0, 0).ref());
  buf.add_block(make_block(10, 0, 0));
  Block liar = make_block(11, 0, 0);
  liar.number = 15;  // claims a parent it cannot follow
  EXPECT_EQ(buf.add_block(liar).kind, Kind::kUnexpected);
  EXPECT_EQ(buf.unconfirmed_size(), 1u);
}

TEST(BlockBuffer, MissingHeadIsDroppedUntilTheNextHead) {
  BlockBuffer buf({.confirmations = 5}, BlockRef{9, hash_of(9, 0), hash_of(8, 0)});
  buf.on_head(make_block(10, 3, 0).ref());
  auto req = buf.next_fetch();
  ASSERT_TRUE(req);
  buf.on_fetch_missing(*req);
  EXPECT_EQ(buf.next_fetch(), std::nullopt);
  buf.on_head(make_block(10, 0, 0).ref());
  EXPECT_EQ(buf.next_fetch(), by_hash(10, 0));
}

// ---------------------------------------------------------------------------------------------
// Randomised: a simulated node grows a chain and reorganises it at random depths below the
// confirmation depth; heads reach the buffer late, twice, out of order or not at all; fetches
// are answered from the node's state at the time of the fetch. The reference model is the node's
// final canonical chain: the buffer's confirmed output must be a gap-free prefix of it, linked
// by parent hash, each block once, and must reach final_tip - confirmations.

struct SimNode {
  std::map<Hash32, Block> all;      // every block ever mined, by hash
  std::vector<Block> canonical;     // canonical[i].number == i
  std::uint32_t next_branch = 1;

  void mine(std::uint32_t branch) {
    Block b;
    b.number = canonical.size();
    b.parent_hash = canonical.empty() ? Hash32{} : canonical.back().hash;
    b.hash = hash_of(b.number, branch);
    all[b.hash] = b;
    canonical.push_back(b);
  }
};

// One randomised scenario. `deep_percent` is the chance per step of a reorg deeper than the
// confirmation depth below the highest head; at 0 every reorg is shallow, as the node promises.
struct Scenario {
  std::uint32_t seed;
  std::uint64_t conf = 0;
  SimNode node;
  std::vector<Block> emitted;
  std::uint64_t high_water = 0;
  bool halted = false;
  std::size_t unconfirmed = 0;
  std::optional<BlockRef> tip, last_confirmed;
  bool settled = true;
};

Scenario simulate(std::uint32_t seed, int deep_percent) {
  Scenario sc{seed};
  std::mt19937 rng(seed);
  auto chance = [&](int percent) { return static_cast<int>(rng() % 100) < percent; };
  const std::uint64_t conf = sc.conf = 1 + rng() % 6;
  SimNode& node = sc.node;
  std::uint32_t branch = 0;
  node.mine(branch);
  BlockBuffer buf({.confirmations = conf, .start_block = 0}, std::nullopt);
  std::vector<BlockRef> in_flight;  // heads announced but not yet delivered

  auto pump = [&] {
    for (auto& b : buf.take_confirmed()) sc.emitted.push_back(std::move(b));  // a head may confirm
    for (int guard = 0; guard < 10000; ++guard) {
      auto req = buf.next_fetch();
      if (!req) return;
      std::optional<Block> answer;
      if (req->kind == FetchRequest::Kind::kByNumber) {
        if (req->number < node.canonical.size()) answer = node.canonical[req->number];
      } else if (auto it = node.all.find(req->hash); it != node.all.end()) {
        const Block& b = it->second;
        bool canonical = b.number < node.canonical.size() && node.canonical[b.number].hash == b.hash;
        if (canonical || !chance(10)) answer = b;  // nodes sometimes forget orphaned blocks
      }
      if (!answer) {
        buf.on_fetch_missing(*req);
        continue;
      }
      buf.add_block(*answer);
      for (auto& b : buf.take_confirmed()) sc.emitted.push_back(std::move(b));
    }
    sc.settled = false;
  };
  auto reorg = [&](std::uint64_t depth) {
    node.canonical.resize(node.canonical.size() - depth);
    branch = node.next_branch++;
    std::uint64_t rebuild = rng() % (depth + 3);
    for (std::uint64_t i = 0; i < rebuild; ++i) node.mine(branch);
  };

  const int steps = 20 + rng() % 60;
  for (int step = 0; step < steps; ++step) {
    // Shallow reorgs stay strictly shallower than the confirmation depth below the highest head
    // the node ever had (several in a row could otherwise add up to a deep one).
    const std::uint64_t min_keep = sc.high_water + 1 > conf ? sc.high_water + 1 - conf : 1;
    if (chance(deep_percent) && node.canonical.size() > 1) {
      reorg(1 + rng() % (node.canonical.size() - 1));  // any depth, down to just above genesis
    } else if (chance(25) && node.canonical.size() > min_keep) {
      reorg(1 + rng() % (node.canonical.size() - min_keep));
    } else {
      node.mine(branch);
    }
    sc.high_water = std::max(sc.high_water, node.canonical.back().number);
    if (!chance(20)) in_flight.push_back(node.canonical.back().ref());  // 20% of heads missed
    // Deliver some of the in-flight heads, in random order, sometimes twice.
    while (!in_flight.empty() && chance(60)) {
      std::size_t i = rng() % in_flight.size();
      buf.on_head(in_flight[i]);
      if (!chance(15)) in_flight.erase(in_flight.begin() + static_cast<long>(i));
      pump();
    }
  }
  // The chain grows past everything seen (so that no final head reads as a lagging node), then
  // the node's current head arrives and everything settles.
  while (node.canonical.back().number <= sc.high_water + conf) node.mine(branch);
  in_flight.clear();
  for (int i = 0; i < 3 && buf.tip() != node.canonical.back().ref(); ++i) {
    buf.on_head(node.canonical.back().ref());
    pump();
  }
  sc.halted = buf.halted();
  sc.unconfirmed = buf.unconfirmed_size();
  sc.tip = buf.tip();
  sc.last_confirmed = buf.last_confirmed();
  return sc;
}

// The output is always one gap-free, duplicate-free, linked sequence from block 0.
void expect_linked_sequence(const Scenario& sc) {
  for (std::size_t i = 0; i < sc.emitted.size(); ++i) {
    ASSERT_EQ(sc.emitted[i].number, i) << "gap or duplicate; seed " << sc.seed;
    if (i > 0) {
      ASSERT_EQ(sc.emitted[i].parent_hash, sc.emitted[i - 1].hash) << "seed " << sc.seed;
    }
  }
}

bool is_prefix_of_canonical(const Scenario& sc) {
  if (sc.emitted.size() > sc.node.canonical.size()) return false;
  for (std::size_t i = 0; i < sc.emitted.size(); ++i)
    if (sc.emitted[i].hash != sc.node.canonical[i].hash) return false;
  return true;
}

TEST(BlockBuffer, RandomisedForksAndDeliveryOrdersMatchReferenceModel) {
  for (std::uint32_t run = 0; run < 2000; ++run) {
    Scenario sc = simulate(0xC0FFEE + run, /*deep_percent=*/0);
    const auto seed = sc.seed;
    ASSERT_TRUE(sc.settled) << "buffer did not settle; seed " << seed;
    ASSERT_FALSE(sc.halted) << "no deep reorg was generated; seed " << seed;
    ASSERT_NO_FATAL_FAILURE(expect_linked_sequence(sc));
    ASSERT_TRUE(is_prefix_of_canonical(sc)) << "orphan emitted; seed " << seed;
    ASSERT_EQ(sc.tip->hash, sc.node.canonical.back().hash) << "seed " << seed;
    // Everything the final head buries is out.
    ASSERT_EQ(sc.emitted.size(), sc.node.canonical.back().number - sc.conf + 1) << "seed " << seed << " conf " << sc.conf;
    ASSERT_LE(sc.unconfirmed, sc.conf) << "memory bound; seed " << seed;
  }
}

// Invariant 5: a reorg deeper than the confirmation depth is never ignored, and the buffer
// never cries wolf: it halts exactly when what it emitted is no longer the node's chain.
TEST(BlockBuffer, RandomisedDeepReorgsAreAlwaysReportedAndNeverInvented) {
  int halted_runs = 0;
  for (std::uint32_t run = 0; run < 2000; ++run) {
    Scenario sc = simulate(0xDEE9 + run, /*deep_percent=*/3);
    const auto seed = sc.seed;
    ASSERT_TRUE(sc.settled) << "buffer did not settle; seed " << seed;
    ASSERT_NO_FATAL_FAILURE(expect_linked_sequence(sc));
    const bool diverged = !is_prefix_of_canonical(sc);
    ASSERT_EQ(sc.halted, diverged) << (diverged ? "confirmed blocks were orphaned and nothing was reported"
                                                : "deep reorg reported where there was none")
                                   << "; seed " << seed << " conf " << sc.conf;
    if (!sc.halted) {
      ASSERT_EQ(sc.emitted.size(), sc.node.canonical.back().number - sc.conf + 1) << "seed " << seed;
    }
    ASSERT_LE(sc.unconfirmed, sc.conf) << "memory bound; seed " << seed;
    halted_runs += sc.halted;
  }
  EXPECT_GT(halted_runs, 100) << "the generator made too few deep reorgs to mean anything";
}

}  // namespace
}  // namespace chainidx::reorg

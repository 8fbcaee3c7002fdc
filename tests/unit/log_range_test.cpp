// eth_getLogs refusals of the major providers and node clients, as they word them, read into
// the width to ask for next; and one endpoint's width cut on refusals and grown after answers.

#include <gtest/gtest.h>

#include "ingest/log_range.hpp"

namespace chainidx::ingest {
namespace {

using K = LogRangeAdvice::Kind;

struct Refusal {
  const char* who;
  const char* message;
  K kind;
  std::uint64_t max_blocks;
};

TEST(LogRange, EachProvidersRefusalGivesTheWidthToAskForNext) {
  const BlockRange asked{0x1000000, 0x1000000 + 99'999};  // 100,000 blocks
  const Refusal cases[] = {
      {"Alchemy", "Log response size exceeded. You can make eth_getLogs requests with up to a 2K block range and no limit on the "
                  "response size, or you can request any block range with a cap of 10K logs in the response. Based on your "
                  "parameters, this block range should work: [0x1000000, 0x10007cf]",
       K::kSuggested, 2000},
      {"Alchemy (free tier)", "You can make eth_getLogs requests with up to a 500 block range. Based on your parameters, this block "
                              "range should work: [0x1000000, 0x10001f3]",
       K::kSuggested, 500},
      {"Alchemy (no suggestion)", "You can make eth_getLogs requests with up to a 500 block range.", K::kLimit, 500},
      {"Infura (results)", "query returned more than 10000 results. Try with this block range [0x1000000, 0x1000fff].", K::kSuggested,
       4096},
      {"Infura (range)", "range 100000 exceeds limit of 10000", K::kLimit, 10000},
      {"QuickNode", "eth_getLogs is limited to a 10,000 range", K::kLimit, 10000},
      {"Ankr", "block range is too wide", K::kNarrower, 0},
      {"Ankr (distance)", "maximum [from, to] blocks distance: 1000", K::kLimit, 1000},
      {"reth (range)", "query exceeds max block range 5000", K::kLimit, 5000},
      {"reth (results, with a range)", "query exceeds max results 20000, retry with the range 16777216-16779999", K::kSuggested, 2784},
      {"reth (results, the same range again)", "query exceeds max results 20000, retry with the range 16777216-16877215", K::kNarrower, 0},
      {"geth-style results", "query returned more than 10000 results", K::kNarrower, 0},
      {"erigon (range)", "query block range exceeds server limit, narrow your filter: 1000", K::kLimit, 1000},
      {"erigon (results)", "query returns too many logs, narrow your filter: 20000", K::kNarrower, 0},
      {"a node's max block range", "block range is larger than max block range, block range = 100000, max block range = 5000", K::kLimit,
       5000},
      {"PublicNode", "exceed maximum block range: 50000", K::kLimit, 50000},
      {"Tenderly", "range 100000 is bigger than range limit 2000", K::kLimit, 2000},
      {"Coinbase", "please limit the query to at most 1,000 blocks", K::kLimit, 1000},
      {"Moonbeam", "block range is too wide (maximum 1024)", K::kLimit, 1024},
      {"Avalanche", "requested too many blocks from 16777216 to 16877215, maximum is set to 2048", K::kLimit, 2048},
      {"thirdweb", "Maximum allowed number of requested blocks is 1000", K::kLimit, 1000},
      {"Cloudflare", "Invalid eth_getLogs request. 'fromBlock'-'toBlock' range too large. Max range: 800", K::kLimit, 800},
      {"Arbitrum", "logs matched by query exceeds limit of 10000", K::kNarrower, 0},
      {"OP Stack", "backend response too large", K::kNarrower, 0},
      {"Chainstack", "Block range limit exceeded.", K::kNarrower, 0},
      {"Infura (time)", "query timeout exceeded", K::kNarrower, 0},
  };
  for (const auto& c : cases) {
    const LogRangeAdvice a = advise_log_range(c.message, asked);
    EXPECT_EQ(a.kind, c.kind) << c.who << ": " << c.message;
    EXPECT_EQ(a.max_blocks, c.max_blocks) << c.who << ": " << c.message;
  }
}

TEST(LogRange, OtherErrorsAreNotAboutTheRange) {
  const BlockRange asked{100, 199};
  for (const char* m : {"header not found", "execution reverted", "rate limit exceeded", "method not found", "invalid argument 0"})
    EXPECT_EQ(advise_log_range(m, asked).kind, K::kNotAboutRange) << m;
  EXPECT_EQ(advise_log_range("", asked, 413).kind, K::kNarrower) << "an HTTP 413 says the answer was too big";
  EXPECT_EQ(advise_log_range("", asked, 503).kind, K::kNotAboutRange);
}

TEST(LogRange, ALimitNoSmallerThanWhatWasRefusedHalvesInstead) {
  // A provider that says 10,000 while refusing 5,000 blocks: its number cannot be trusted.
  const LogRangeAdvice a = advise_log_range("eth_getLogs is limited to a 10,000 range", {1, 5000});
  EXPECT_EQ(a.kind, K::kNarrower);
}

TEST(LogRange, TheWidthFollowsRefusalsAndGrowsBackAfterSmallAnswers) {
  LogRangeSizer s(2000, 10000);
  EXPECT_EQ(s.blocks(), 2000u);
  // Halved on a refusal without numbers.
  EXPECT_EQ(s.refused({K::kNarrower, 0}, {1, 2000}), 1000u);
  // Grows by a quarter after full-width answers with few logs, not after big or short ones.
  s.answered({1, 1000}, true);
  EXPECT_EQ(s.blocks(), 1250u);
  s.answered({1, 1250}, false);
  EXPECT_EQ(s.blocks(), 1250u) << "an answer that is not small keeps the width";
  s.answered({1, 10}, true);
  EXPECT_EQ(s.blocks(), 1250u) << "a short range (the end of a segment) says nothing about the width";
  s.too_big({1, 1250});
  EXPECT_EQ(s.blocks(), 625u) << "too big an answer halves it";
  s.answered({1, 625}, true);
  EXPECT_EQ(s.blocks(), 781u);
  s.answered({1, 781}, true);
  EXPECT_EQ(s.blocks(), 976u);
  s.answered({1, 976}, true);
  EXPECT_EQ(s.blocks(), 1220u);
  // A named limit caps growth for good.
  EXPECT_EQ(s.refused({K::kLimit, 500}, {1, 1220}), 500u);
  EXPECT_EQ(s.limit(), 500u);
  for (int i = 0; i < 20; ++i) s.answered({1, s.blocks()}, true);
  EXPECT_EQ(s.blocks(), 500u);
  // A suggestion sets the width but is no limit: it grows back.
  LogRangeSizer t(2000, 4000);
  EXPECT_EQ(t.refused({K::kSuggested, 300}, {1, 2000}), 300u);
  EXPECT_FALSE(t.limit());
  for (int i = 0; i < 40; ++i) t.answered({1, t.blocks()}, true);
  EXPECT_EQ(t.blocks(), 4000u) << "never past the ceiling";
  // One block cannot be narrowed.
  EXPECT_FALSE(t.refused({K::kNarrower, 0}, {7, 7}));
  EXPECT_FALSE(t.refused({K::kNotAboutRange, 0}, {1, 100}));
}

TEST(LogRange, FilterMembersNameTheAddressesAndTopic0sAndLeaveOutWhatIsNotNarrowed) {
  const auto a = schema::address_from_hex("0x00000000000000000000000000000000000000aa");
  const auto b = schema::address_from_hex("0x00000000000000000000000000000000000000bb");
  const auto t = schema::hash_from_hex("0x0000000000000000000000000000000000000000000000000000000000000001");
  const std::string ha = "\"0x00000000000000000000000000000000000000aa\"", hb = "\"0x00000000000000000000000000000000000000bb\"";
  const std::string ht = "\"0x0000000000000000000000000000000000000000000000000000000000000001\"";
  EXPECT_EQ(log_filter_members({a, b}, {t}), "\"address\":[" + ha + "," + hb + "],\"topics\":[[" + ht + "]]");
  EXPECT_EQ(log_filter_members({a}, {}), "\"address\":[" + ha + "]");
  EXPECT_EQ(log_filter_members({}, {t, t}), "\"topics\":[[" + ht + "," + ht + "]]") << "any address (factory-made contracts)";
  EXPECT_EQ(log_filter_members({}, {}), "\"topics\":[]") << "never an empty member list after the caller's comma";
}

}  // namespace
}  // namespace chainidx::ingest

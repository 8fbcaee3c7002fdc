// The JSON log format: the same key=value pairs the text format prints, as one JSON object per
// line; and the admin token comparison.

#include "app/admin.hpp"
#include "app/logging.hpp"

#include <gtest/gtest.h>

namespace chainidx::app {
namespace {

TEST(JsonLog, KeyValuePairsBecomeFieldsNumbersStayNumbers) {
  EXPECT_EQ(json_log_line("2026-12-05T09:00:00.000Z", "info", "event=start chain=anvil chain_id=31337 confirmations=12"),
            R"({"time":"2026-12-05T09:00:00.000Z","level":"info","event":"start","chain":"anvil","chain_id":31337,"confirmations":12})"
            "\n");
}

TEST(JsonLog, QuotedValuesKeepTheirSpacesAndInnerQuotes) {
  EXPECT_EQ(json_log_line("t", "warn", R"(event=sink_retry sink=postgres reason="relation "x" does not exist" attempt=2)"),
            R"({"time":"t","level":"warn","event":"sink_retry","sink":"postgres","reason":"relation \"x\" does not exist","attempt":2})"
            "\n");
  // Hex and zero-led values are text, not numbers.
  EXPECT_EQ(json_log_line("t", "info", "event=x hash=0x00ab n=007"), R"({"time":"t","level":"info","event":"x","hash":"0x00ab","n":"007"})" "\n");
}

TEST(JsonLog, AChainsThreadAddsItsChainUnlessTheLineNamesOne) {
  EXPECT_EQ(json_log_line("t", "info", "event=sink_retry attempt=2", "base"),
            R"({"time":"t","level":"info","event":"sink_retry","attempt":2,"chain":"base"})" "\n");
  EXPECT_EQ(json_log_line("t", "info", "event=leader chain=mainnet epoch=3", "base"),
            R"({"time":"t","level":"info","event":"leader","chain":"mainnet","epoch":3})" "\n");
  EXPECT_EQ(json_log_line("t", "info", "event=x", ""), R"({"time":"t","level":"info","event":"x"})" "\n");
}

TEST(JsonLog, AMessageThatIsNotPairsGoesWholeIntoMessage) {
  EXPECT_EQ(json_log_line("t", "error", "librdkafka: broker down\nsecond line"),
            R"({"time":"t","level":"error","message":"librdkafka: broker down\nsecond line"})" "\n");
  EXPECT_EQ(json_log_line("t", "info", R"(event=x reason="never closed)"), R"({"time":"t","level":"info","message":"event=x reason=\"never closed"})" "\n");
}

TEST(AdminToken, OnlyTheExactTokenMatches) {
  const std::string token = "0123456789abcdef0123456789abcdef";
  EXPECT_TRUE(token_matches(token, token));
  EXPECT_FALSE(token_matches(token.substr(0, 31), token));
  EXPECT_FALSE(token_matches(token + "0", token));
  EXPECT_FALSE(token_matches("", token));
  EXPECT_FALSE(token_matches("0123456789abcdef0123456789abcdeF", token));
}

}  // namespace
}  // namespace chainidx::app

// The chainidx binary's command line as an operator meets it: bad config files are refused by
// both check-config and run, with the key and the fix in the message and exit code 2.

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <regex>
#include <sstream>

#include "harness.hpp"

namespace chainidx::testing {
namespace {

const std::string kGood = R"([chain]
name = "anvil"
chain_id = 31337
confirmations = 12

[[chain.endpoints]]
ws = "ws://127.0.0.1:8545"
http = "http://127.0.0.1:8545/${CHAINIDX_TEST_KEY}"

[postgres]
url = "postgresql://indexer:${CHAINIDX_TEST_PGPASSWORD}@127.0.0.1:5432/chainidx"

[kafka]
brokers = "127.0.0.1:9092"
)";

std::string with(const std::string& from, const std::string& to) {
  std::string s = kGood;
  s.replace(s.find(from), from.size(), to);
  return s;
}

struct Case {
  std::string name, text, expect;
};

// kGood written into `dir`, with the secrets it substitutes set in the environment; its path.
std::string write_good_config(const TempDir& dir, const char* key, const char* password) {
  std::string path = dir.path() + "/good.toml";
  std::ofstream(path) << kGood;
  setenv("CHAINIDX_TEST_KEY", key, 1);
  setenv("CHAINIDX_TEST_PGPASSWORD", password, 1);
  return path;
}

TEST(Cli, CheckConfigAcceptsAGoodFileAndPrintsNoSecret) {
  TempDir dir;
  std::string path = write_good_config(dir, "0123456789abcdef0123456789abcdef", "hunter2hunter2");
  int code = -1;
  std::string out = run_capture({chainidx_binary(), "check-config", "--config", path}, &code);
  EXPECT_EQ(code, 0) << out;
  EXPECT_NE(out.find("config ok: chain anvil"), std::string::npos) << out;
  EXPECT_EQ(out.find("0123456789abcdef0123456789abcdef"), std::string::npos) << "API key printed: " << out;
  EXPECT_EQ(out.find("hunter2"), std::string::npos) << "password printed: " << out;
}

TEST(Cli, BadConfigFilesEachGetTheirClearErrorFromCheckConfigAndRun) {
  setenv("CHAINIDX_TEST_KEY", "k", 1);
  setenv("CHAINIDX_TEST_PGPASSWORD", "p", 1);
  std::vector<Case> cases = {
      {"missing key", with("chain_id = 31337\n", ""), "chain.chain_id: missing"},
      {"unknown key", with("confirmations = 12", "confirmations = 12\nconfimations = 4"), "chain.confimations: unknown key"},
      {"wrong type", with("confirmations = 12", "confirmations = 12.5"), "chain.confirmations: expected an integer"},
      {"unknown tag", with("confirmations = 12", "confirmations = \"twelve\""), "chain.confirmations: unknown block tag \"twelve\"; use a depth such as 12, or \"safe\" / \"finalized\""},
      {"bad url", with("ws = \"ws://127.0.0.1:8545\"", "ws = \"127.0.0.1:8545\""), "chain.endpoints[0].ws: not a valid URL"},
      {"confirmations out of range", with("confirmations = 12", "confirmations = 0"), "chain.confirmations: must be between 1 and 10000"},
      {"unset variable", with("${CHAINIDX_TEST_KEY}", "${CHAINIDX_UNSET_VARIABLE}"), "CHAINIDX_UNSET_VARIABLE is not set"},
  };
  TempDir dir;
  for (const auto& c : cases) {
    std::string path = dir.path() + "/bad.toml";
    std::ofstream(path) << c.text;
    for (const char* command : {"check-config", "run"}) {
      int code = -1;
      std::string out = run_capture({chainidx_binary(), command, "--config", path}, &code, std::chrono::seconds(20));
      EXPECT_EQ(code, 2) << c.name << " (" << command << "): " << out;
      EXPECT_NE(out.find(c.expect), std::string::npos) << c.name << " (" << command << "): " << out;
    }
  }
  int code = -1;
  std::string out = run_capture({chainidx_binary(), "check-config", "--config", dir.path() + "/nope.toml"}, &code);
  EXPECT_EQ(code, 2);
  EXPECT_NE(out.find("cannot read the config file"), std::string::npos) << out;
}

// The README's configuration example is valid as printed: a new user who copies it gets
// "config ok", not an error about a key the README itself shows.
TEST(Cli, ReadmeConfigExamplePassesCheckConfig) {
  std::string readme = read_text_file(std::string(CHAINIDX_SOURCE_DIR) + "/README.md");
  auto start = readme.find("```toml\n");
  ASSERT_NE(start, std::string::npos);
  start += 8;
  std::string toml = readme.substr(start, readme.find("```", start) - start);
  TempDir dir;
  std::string path = dir.path() + "/readme.toml";
  std::ofstream(path) << toml;
  // Its [[contracts]] names an ABI of the repository, relative to the config (a clone's root).
  std::filesystem::create_directories(dir.path() + "/deploy/abis");
  std::filesystem::copy_file(std::string(CHAINIDX_SOURCE_DIR) + "/deploy/abis/erc20.json", dir.path() + "/deploy/abis/erc20.json");
  int code = -1;
  std::string out = run_capture({chainidx_binary(), "check-config", "--config", path}, &code);
  EXPECT_EQ(code, 0) << out;
  EXPECT_NE(out.find("config ok"), std::string::npos) << out;
}

// A typo in CHAINIDX_LOG_LEVEL is refused (spdlog alone would read it as "off" and the indexer
// would run without a word).
TEST(Cli, UnknownLogLevelIsRefusedNotTurnedIntoSilence) {
  TempDir dir;
  std::string path = write_good_config(dir, "k", "p");
  int code = -1;
  std::string out = run_capture({"env", "CHAINIDX_LOG_LEVEL=inf0", chainidx_binary(), "run", "--config", path}, &code, 20s);
  EXPECT_EQ(code, 2) << out;
  EXPECT_NE(out.find("CHAINIDX_LOG_LEVEL=\"inf0\" is not a log level"), std::string::npos) << out;
}

// The command line as a user meets it: --help on the program and on every subcommand (each
// naming its own options), --version with the build's revision, and errors that name the
// argument at fault with exit code 2.
TEST(Cli, EverySubcommandAnswersHelpAndErrorsNameTheArgument) {
  int code = -1;
  std::string out = run_capture({chainidx_binary(), "--help"}, &code);
  EXPECT_EQ(code, 0) << out;
  for (const char* command : {"run", "replay", "check-config", "devbroker"}) EXPECT_NE(out.find(command), std::string::npos) << out;
  const std::vector<std::pair<std::string, std::vector<std::string>>> options{
      {"run", {"--config"}},
      {"replay", {"--config", "--from", "--to", "--sinks", "--worker", "--chunk-blocks", "--lease-seconds", "--topic-prefix"}},
      {"check-config", {"--config"}},
      {"devbroker", {"--bootstrap-file", "--brokers", "--topics", "--partitions"}}};
  for (const auto& [command, names] : options) {
    out = run_capture({chainidx_binary(), command, "--help"}, &code);
    EXPECT_EQ(code, 0) << command << ": " << out;
    for (const auto& name : names) EXPECT_NE(out.find(name), std::string::npos) << command << " --help lacks " << name << ": " << out;
  }
  out = run_capture({chainidx_binary(), "--version"}, &code);
  EXPECT_EQ(code, 0) << out;
  EXPECT_TRUE(std::regex_search(out, std::regex(R"(^chainidx \d+\.\d+\.\d+ \([0-9a-f]{7,}|unknown\))"))) << out;

  const std::vector<std::pair<std::vector<std::string>, std::string>> bad{
      {{"run"}, "--config is required"},
      {{"replay", "--config", "x.toml", "--from", "ten", "--to", "20"}, "--from"},
      {{"replay", "--config", "x.toml", "--from", "1", "--to", "2", "--chunk-blocks", "0"}, "--chunk-blocks"},
      {{"replay", "--config", "x.toml", "--from", "1", "--to", "2", "--worker", "a b"}, "--worker"},
      {{"run", "--config", "x.toml", "--colour"}, "--colour"},
      {{"devbroker", "--partitions", "0"}, "--partitions"},
      {{"serve"}, "unknown command \"serve\""},
      {{}, "A subcommand is required"}};
  for (const auto& [argv, expect] : bad) {
    std::vector<std::string> full{chainidx_binary()};
    full.insert(full.end(), argv.begin(), argv.end());
    out = run_capture(full, &code);
    EXPECT_EQ(code, 2) << expect << ": " << out;
    EXPECT_NE(out.find(expect), std::string::npos) << out;
  }
}

}  // namespace
}  // namespace chainidx::testing

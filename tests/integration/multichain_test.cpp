// Several chains in one `chainidx run` ([[chains]]): each with its own endpoints, cursor, schema
// and topics, isolated so that one chain whose provider is dead never stalls another; the
// operations server judges and shows each. Real anvil (two nodes), Postgres and the dev broker.

#include <gtest/gtest.h>
#include <pqxx/pqxx>

#include <csignal>
#include <fstream>
#include <regex>
#include <sstream>

#include "chain_checks.hpp"
#include "harness.hpp"
#include "tcp_relay.hpp"

namespace chainidx::testing {
namespace {

// Every block of `schema` up to its cursor, with anvil's hash.
void expect_schema_equals_node(const std::string& db, const std::string& schema, const Anvil& node) {
  pqxx::connection c(db);
  pqxx::read_transaction tx(c);
  auto rows = tx.exec("SELECT number, '0x' || encode(hash, 'hex') FROM " + schema + ".blocks ORDER BY number");
  ASSERT_EQ(rows.size(), cursor_of(db, schema) + 1) << schema;
  for (const auto& r : rows) EXPECT_EQ(r[1].as<std::string>(), node.block_hash(r[0].as<std::uint64_t>())) << schema;
}

std::string chain_table(const std::string& name, const std::string& ws, const std::string& http) {
  return "[[chains]]\nname = \"" + name + "\"\nchain_id = 31337\nconfirmations = 3\nstart_block = 0\n"
         "head_stall_timeout_seconds = 5\nbackoff_max_ms = 1000\n\n"
         "[[chains.endpoints]]\nws = \"" + ws + "\"\nhttp = \"" + http + "\"\nrequests_per_second = 1000\nburst = 1000\n\n";
}


TEST(MultiChain, OneChainsDeadProviderNeverStallsTheOther) {
  TempDir dir, dir_beta;
  Anvil alpha(dir.path()), beta(dir_beta.path());
  alpha.deploy_emitter();
  beta.deploy_emitter();
  // beta's only provider is dead: every connection to it is refused until the relay passes.
  TcpRelay relay(beta.port());
  relay.set_mode(TcpRelay::Mode::kDown);
  const std::string relayed = "127.0.0.1:" + std::to_string(relay.port());
  DevBroker broker(dir.path(), "anvil,beta");
  const std::string db = Postgres::instance().create_database("multichain");
  Indexer indexer(dir.path(), alpha, db, broker.bootstrap(),
                  {.batch_blocks = 3,
                   .chains = chain_table("anvil", alpha.ws_url(), alpha.http_url()) + chain_table("beta", "ws://" + relayed, "http://" + relayed)});
  indexer.start();

  // anvil indexes as if alone, block after block, while beta cannot reach its provider.
  for (int round = 0; round < 3; ++round) {
    mine_transfers(alpha, 3, 20 + round);
    ASSERT_TRUE(wait_until([&] { return cursor_of(db, "anvil") >= alpha.block_number() - 3; }, 60s)) << indexer.log();
  }
  EXPECT_EQ(cursor_of(db, "beta"), 0u);
  ASSERT_TRUE(wait_until([&] { return http_request(indexer.ops_port(), "GET", "/readyz/anvil").status == 200; }, 10s)) << indexer.log();
  EXPECT_EQ(http_request(indexer.ops_port(), "GET", "/healthz/anvil").status, 200);
  const HttpAnswer beta_ready = http_request(indexer.ops_port(), "GET", "/readyz/beta");
  EXPECT_EQ(beta_ready.status, 503) << beta_ready.body;
  // Together: not ready, a line per chain saying why.
  const HttpAnswer ready = http_request(indexer.ops_port(), "GET", "/readyz");
  EXPECT_EQ(ready.status, 503);
  EXPECT_NE(ready.body.find("anvil: ready\n"), std::string::npos) << ready.body;
  EXPECT_NE(ready.body.find("beta: "), std::string::npos) << ready.body;
  EXPECT_EQ(http_request(indexer.ops_port(), "GET", "/readyz/gamma").status, 404);

  const HttpAnswer status = http_request(indexer.ops_port(), "GET", "/status");
  ASSERT_EQ(status.status, 200);
  EXPECT_EQ(status.body.rfind("{\"chains\":[{\"chain\":\"anvil\"", 0), 0u) << status.body;
  EXPECT_NE(status.body.find("\"chain\":\"beta\""), std::string::npos) << status.body;

  // One exposition, every series labelled with its chain, accepted by promtool.
  const HttpAnswer scrape = http_request(indexer.ops_port(), "GET", "/metrics");
  ASSERT_EQ(scrape.status, 200);
  const std::string path = dir.path() + "/scrape.txt";
  std::ofstream(path) << scrape.body;
  int code = -1;
  const std::string promtool = run_capture({"sh", "-c", "promtool check metrics < " + path}, &code);
  EXPECT_EQ(code, 0) << promtool << "\n" << scrape.body;
  EXPECT_EQ(metric_sample(scrape.body, "chainidx_confirmed_block{chain=\"anvil\"}"), static_cast<double>(cursor_of(db, "anvil"))) << scrape.body;
  EXPECT_EQ(metric_sample(scrape.body, "chainidx_leader{chain=\"anvil\"}"), 1) << scrape.body;
  EXPECT_EQ(metric_sample(scrape.body, "chainidx_leader{chain=\"beta\"}"), 1) << scrape.body;
  EXPECT_EQ(metric_sample(scrape.body, "chainidx_confirmed_block{chain=\"beta\"}"), -1) << scrape.body;  // nothing written yet
  EXPECT_TRUE(std::regex_search(scrape.body, std::regex(R"(chainidx_rpc_requests_total\{chain="beta",[^}]*outcome="transport"\} [1-9])")))
      << scrape.body;
  std::size_t help_lines = 0;
  for (std::size_t at = 0; (at = scrape.body.find("# HELP chainidx_confirmed_block ", at)) != std::string::npos; ++at) ++help_lines;
  EXPECT_EQ(help_lines, 1u) << "one family per name";

  // beta's provider comes back: beta catches up, and anvil never stopped.
  relay.set_mode(TcpRelay::Mode::kPass);
  mine_transfers(beta, 6, 7);
  ASSERT_TRUE(wait_until([&] { return cursor_of(db, "beta") >= beta.block_number() - 3; }, 90s)) << indexer.log();
  mine_transfers(alpha, 2, 40);
  ASSERT_TRUE(wait_until([&] { return cursor_of(db, "anvil") >= alpha.block_number() - 3; }, 60s)) << indexer.log();
  ASSERT_TRUE(wait_until([&] { return http_request(indexer.ops_port(), "GET", "/readyz").status == 200; }, 30s))
      << http_request(indexer.ops_port(), "GET", "/readyz").body << indexer.log();

  EXPECT_EQ(indexer.stop(SIGTERM), 0) << indexer.log();
  // Every line logged on a chain's threads names its chain.
  EXPECT_TRUE(std::regex_search(indexer.log(), std::regex("level=[a-z]+ chain=beta event=[a-z_]+ "))) << indexer.log();
  EXPECT_TRUE(std::regex_search(indexer.log(), std::regex("level=[a-z]+ chain=anvil event=[a-z_]+ "))) << indexer.log();
  expect_schema_equals_node(db, "anvil", alpha);
  expect_schema_equals_node(db, "beta", beta);
  // Each chain's blocks in its own topic, each once.
  EXPECT_EQ(broker.consume("anvil.blocks").size(), cursor_of(db, "anvil") + 1);
  EXPECT_EQ(broker.consume("beta.blocks").size(), cursor_of(db, "beta") + 1);
}

}  // namespace
}  // namespace chainidx::testing

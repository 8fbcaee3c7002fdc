// The operations server of `chainidx run` ([server] listen), as an operator's tools see it: a live
// scrape of /metrics that Prometheus' own promtool accepts and whose values match what was
// written; /healthz, /readyz and /status while indexing and through a Postgres outage; answers
// to what the server does not serve. Real anvil, Postgres and the dev broker.

#include <gtest/gtest.h>
#include <pqxx/pqxx>

#include <csignal>
#include <fstream>
#include <regex>
#include <sstream>

#include "chain_checks.hpp"
#include "harness.hpp"

namespace chainidx::testing {
namespace {

using Chain = TestChain;

// The value of one series (its name with its labels, as exposed), or -1 when absent.
double sample(const std::string& exposition, const std::string& series) {
  std::istringstream lines(exposition);
  for (std::string line; std::getline(lines, line);)
    if (line.rfind(series + " ", 0) == 0) return std::stod(line.substr(series.size() + 1));
  return -1;
}

std::uint64_t count_rows(const std::string& db, const std::string& table) {
  pqxx::connection c(db);
  pqxx::nontransaction tx(c);
  return tx.exec1("SELECT count(*) FROM anvil." + table)[0].as<std::uint64_t>();
}

TEST(Ops, ALiveScrapePassesPromtoolAndCountsWhatWasWritten) {
  Chain run;
  std::string db = Postgres::instance().create_database("ops_metrics");
  Indexer indexer(run.dir.path(), run.anvil, db, run.broker.bootstrap(), {.batch_blocks = 3});
  indexer.start();
  mine_transfers(run.anvil, 8);
  ASSERT_TRUE(wait_until([&] { return cursor_of(db) >= run.anvil.block_number() - 3; }, 60s)) << indexer.log();
  // Then blocks one at a time, so that some are confirmed by a live head (the first ones may all
  // have been written by a catch-up).
  for (int i = 0; i < 4; ++i) {
    mine_transfers(run.anvil, 1, 90 + i);
    ASSERT_TRUE(wait_until([&] { return cursor_of(db) >= run.anvil.block_number() - 3; }, 60s)) << indexer.log();
  }
  // Quiet now: what Postgres holds is what the counters counted.
  ASSERT_TRUE(wait_until([&] { return http_request(indexer.ops_port(), "GET", "/readyz").status == 200; }, 10s)) << indexer.log();
  const HttpAnswer scrape = http_request(indexer.ops_port(), "GET", "/metrics");
  ASSERT_EQ(scrape.status, 200) << indexer.log();
  EXPECT_EQ(scrape.content_type.rfind("text/plain; version=0.0.4", 0), 0u) << scrape.content_type;

  const std::string path = run.dir.path() + "/scrape.txt";
  std::ofstream(path) << scrape.body;
  int code = -1;
  const std::string promtool = run_capture({"sh", "-c", "promtool check metrics < " + path}, &code);
  EXPECT_EQ(code, 0) << promtool << "\n" << scrape.body;

  const std::uint64_t cursor = cursor_of(db);
  EXPECT_EQ(sample(scrape.body, "chainidx_confirmed_block{chain=\"anvil\"}"), static_cast<double>(cursor)) << scrape.body;
  EXPECT_GE(sample(scrape.body, "chainidx_head_block{chain=\"anvil\"}"), static_cast<double>(cursor + 3)) << scrape.body;
  EXPECT_EQ(sample(scrape.body, "chainidx_lag_blocks{chain=\"anvil\"}"), 0) << scrape.body;
  EXPECT_EQ(sample(scrape.body, "chainidx_halted{chain=\"anvil\"}"), 0) << scrape.body;
  for (const char* sink : {"postgres", "kafka"}) {
    const std::string l = std::string("{chain=\"anvil\",sink=\"") + sink + "\"}";
    EXPECT_EQ(sample(scrape.body, "chainidx_written_blocks_total" + l), static_cast<double>(count_rows(db, "blocks"))) << scrape.body;
    EXPECT_EQ(sample(scrape.body, "chainidx_written_transactions_total" + l), static_cast<double>(count_rows(db, "transactions")))
        << scrape.body;
    EXPECT_EQ(sample(scrape.body, "chainidx_written_logs_total" + l), static_cast<double>(count_rows(db, "logs"))) << scrape.body;
  }
  EXPECT_GT(sample(scrape.body, "chainidx_head_to_write_seconds_count{chain=\"anvil\"}"), 0) << scrape.body;
  // Every message in the topics was acknowledged once, none failed (nothing was staged in Kafka).
  std::size_t messages = 0;
  for (const char* topic : {"anvil.blocks", "anvil.transactions", "anvil.logs"}) messages += run.broker.consume(topic).size();
  EXPECT_EQ(sample(scrape.body, "chainidx_kafka_messages_acknowledged_total{chain=\"anvil\"}"), static_cast<double>(messages)) << scrape.body;
  EXPECT_EQ(sample(scrape.body, "chainidx_kafka_delivery_failures_total{chain=\"anvil\"}"), 0) << scrape.body;
  // The endpoint's requests, by method and outcome: the blocks were fetched, and all went well.
  const std::regex fetched(R"(chainidx_rpc_requests_total\{chain="anvil",endpoint="[^"]+",method="[a-zA-Z_]+",outcome="ok"\} [1-9])");
  EXPECT_TRUE(std::regex_search(scrape.body, fetched)) << scrape.body;
  EXPECT_EQ(scrape.body.find("outcome=\"transport\""), std::string::npos) << scrape.body;
  EXPECT_GE(sample(scrape.body, "chainidx_confirmed_age_seconds{chain=\"anvil\"}"), 0) << scrape.body;
  EXPECT_NE(scrape.body.find("chainidx_build_info{"), std::string::npos) << scrape.body;
  // The one endpoint is healthy, and said so once.
  const std::regex healthy_endpoint(R"(chainidx_endpoint_state\{chain="anvil",endpoint="[^"]+",state="healthy"\} 1\n)");
  EXPECT_TRUE(std::regex_search(scrape.body, healthy_endpoint)) << scrape.body;

  const HttpAnswer health = http_request(indexer.ops_port(), "GET", "/healthz");
  EXPECT_EQ(health.status, 200);
  EXPECT_EQ(health.body, "ok\n");
  const HttpAnswer status = http_request(indexer.ops_port(), "GET", "/status");
  EXPECT_EQ(status.status, 200);
  EXPECT_EQ(status.content_type, "application/json");
  EXPECT_NE(status.body.find("\"cursor\":" + std::to_string(cursor) + ","), std::string::npos) << status.body;
  EXPECT_NE(status.body.find("\"chain\":\"anvil\""), std::string::npos) << status.body;
  EXPECT_NE(status.body.find("\"state\":\"healthy\""), std::string::npos) << status.body;

  EXPECT_EQ(http_request(indexer.ops_port(), "GET", "/nothing").status, 404);
  EXPECT_EQ(http_request(indexer.ops_port(), "POST", "/metrics", "x").status, 405);
  EXPECT_EQ(indexer.stop(SIGTERM), 0) << indexer.log();
}

// Postgres goes away while blocks keep coming: /readyz says a sink write is failing at once,
// /healthz turns 503 after server.unhealthy_after_seconds, the retries are counted; and once
// Postgres is back, both answer 200 again.
TEST(Ops, ProbesFollowAPostgresOutage) {
  Chain run;
  std::string db = Postgres::instance().create_database("ops_outage");
  Indexer indexer(run.dir.path(), run.anvil, db, run.broker.bootstrap(),
                  {.batch_blocks = 2, .server_extra = "unhealthy_after_seconds = 10\n"});
  indexer.start();
  mine_transfers(run.anvil, 5);
  ASSERT_TRUE(wait_until([&] { return cursor_of(db) >= run.anvil.block_number() - 3; }, 60s)) << indexer.log();
  ASSERT_TRUE(wait_until([&] { return http_request(indexer.ops_port(), "GET", "/readyz").status == 200; }, 10s)) << indexer.log();
  Postgres::instance().stop();
  mine_transfers(run.anvil, 3, 41);
  HttpAnswer ready;
  ASSERT_TRUE(wait_until([&] { return (ready = http_request(indexer.ops_port(), "GET", "/readyz")).status == 503; }, 30s)) << indexer.log();
  EXPECT_NE(ready.body.find("a sink write is failing"), std::string::npos) << ready.body;
  EXPECT_NE(ready.body.find("postgres"), std::string::npos) << ready.body;
  EXPECT_EQ(http_request(indexer.ops_port(), "GET", "/healthz").status, 200) << "unhealthy before server.unhealthy_after_seconds";
  HttpAnswer health;
  ASSERT_TRUE(wait_until([&] { return (health = http_request(indexer.ops_port(), "GET", "/healthz")).status == 503; }, 30s)) << indexer.log();
  EXPECT_NE(health.body.find("no sink write succeeded for"), std::string::npos) << health.body;
  const HttpAnswer scrape = http_request(indexer.ops_port(), "GET", "/metrics");
  EXPECT_GT(sample(scrape.body, "chainidx_sink_retries_total{chain=\"anvil\",sink=\"postgres\"}"), 0) << scrape.body;
  EXPECT_GE(sample(scrape.body, "chainidx_sink_waiting_seconds{chain=\"anvil\"}"), 10) << scrape.body;
  Postgres::instance().start();
  ASSERT_TRUE(wait_until([&] { return http_request(indexer.ops_port(), "GET", "/healthz").status == 200; }, 60s)) << indexer.log();
  ASSERT_TRUE(wait_until([&] { return http_request(indexer.ops_port(), "GET", "/readyz").status == 200; }, 60s)) << indexer.log();
  EXPECT_EQ(indexer.stop(SIGTERM), 0) << indexer.log();
  expect_postgres_hashes_equal_anvil(db, run.anvil);
}

}  // namespace
}  // namespace chainidx::testing

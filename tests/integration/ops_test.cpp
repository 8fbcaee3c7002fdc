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
#include "fault_proxy.hpp"
#include "harness.hpp"

namespace chainidx::testing {
namespace {

using Chain = TestChain;


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
  EXPECT_EQ(metric_sample(scrape.body, "chainidx_confirmed_block{chain=\"anvil\"}"), static_cast<double>(cursor)) << scrape.body;
  EXPECT_GE(metric_sample(scrape.body, "chainidx_head_block{chain=\"anvil\"}"), static_cast<double>(cursor + 3)) << scrape.body;
  EXPECT_EQ(metric_sample(scrape.body, "chainidx_lag_blocks{chain=\"anvil\"}"), 0) << scrape.body;
  EXPECT_EQ(metric_sample(scrape.body, "chainidx_halted{chain=\"anvil\"}"), 0) << scrape.body;
  for (const char* sink : {"postgres", "kafka"}) {
    const std::string l = std::string("{chain=\"anvil\",sink=\"") + sink + "\"}";
    EXPECT_EQ(metric_sample(scrape.body, "chainidx_written_blocks_total" + l), static_cast<double>(count_rows(db, "blocks"))) << scrape.body;
    EXPECT_EQ(metric_sample(scrape.body, "chainidx_written_transactions_total" + l), static_cast<double>(count_rows(db, "transactions")))
        << scrape.body;
    EXPECT_EQ(metric_sample(scrape.body, "chainidx_written_logs_total" + l), static_cast<double>(count_rows(db, "logs"))) << scrape.body;
  }
  EXPECT_GT(metric_sample(scrape.body, "chainidx_head_to_write_seconds_count{chain=\"anvil\"}"), 0) << scrape.body;
  // Every message in the topics was acknowledged once, none failed (nothing was staged in Kafka).
  std::size_t messages = 0;
  for (const char* topic : {"anvil.blocks", "anvil.transactions", "anvil.logs"}) messages += run.broker.consume(topic).size();
  EXPECT_EQ(metric_sample(scrape.body, "chainidx_kafka_messages_acknowledged_total{chain=\"anvil\"}"), static_cast<double>(messages)) << scrape.body;
  EXPECT_EQ(metric_sample(scrape.body, "chainidx_kafka_delivery_failures_total{chain=\"anvil\"}"), 0) << scrape.body;
  // Quiet, every message acknowledged: nothing waits in the producer's queue; no socket stalled.
  EXPECT_EQ(metric_sample(scrape.body, "chainidx_kafka_queue_messages{chain=\"anvil\"}"), 0) << scrape.body;
  EXPECT_EQ(metric_sample(scrape.body, "chainidx_ws_stalls_total{chain=\"anvil\"}"), 0) << scrape.body;
  // The endpoint's requests, by method and outcome: the blocks were fetched, and all went well.
  const std::regex fetched(R"(chainidx_rpc_requests_total\{chain="anvil",endpoint="[^"]+",method="[a-zA-Z_]+",outcome="ok"\} [1-9])");
  EXPECT_TRUE(std::regex_search(scrape.body, fetched)) << scrape.body;
  EXPECT_EQ(scrape.body.find("outcome=\"transport\""), std::string::npos) << scrape.body;
  EXPECT_GE(metric_sample(scrape.body, "chainidx_confirmed_age_seconds{chain=\"anvil\"}"), 0) << scrape.body;
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
  // No server.admin_token: the admin API is off, whatever is sent.
  const HttpAnswer admin_off = http_request(indexer.ops_port(), "GET", "/admin/replays", "", {{"Authorization", "Bearer anything"}});
  EXPECT_EQ(admin_off.status, 404);
  EXPECT_NE(admin_off.body.find("the admin API is off"), std::string::npos) << admin_off.body;
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
  EXPECT_GT(metric_sample(scrape.body, "chainidx_sink_retries_total{chain=\"anvil\",sink=\"postgres\"}"), 0) << scrape.body;
  EXPECT_GE(metric_sample(scrape.body, "chainidx_sink_waiting_seconds{chain=\"anvil\"}"), 10) << scrape.body;
  Postgres::instance().start();
  ASSERT_TRUE(wait_until([&] { return http_request(indexer.ops_port(), "GET", "/healthz").status == 200; }, 60s)) << indexer.log();
  ASSERT_TRUE(wait_until([&] { return http_request(indexer.ops_port(), "GET", "/readyz").status == 200; }, 60s)) << indexer.log();
  EXPECT_EQ(indexer.stop(SIGTERM), 0) << indexer.log();
  expect_postgres_hashes_equal_anvil(db, run.anvil);
}

std::uint64_t replay_chunk_rows(const std::string& db) {
  pqxx::connection c(db);
  pqxx::nontransaction tx(c);
  return tx.exec1("SELECT count(*) FROM anvil.replay_chunks")[0].as<std::uint64_t>();
}

// The admin API as an operator uses it: without the token, with a wrong one or another scheme,
// 401 and nothing started; with it, malformed or out-of-range requests get 400 (413 when too
// large) with the reason; a good one starts a replay that fills a hole in Postgres, listed by
// GET /admin/replays until done and counted in the replay metrics.
TEST(Ops, AdminApiNeedsTheTokenValidatesRequestsAndRunsAReplay) {
  Chain run;
  std::string db = Postgres::instance().create_database("ops_admin");
  const std::string token = "c0ffee00c0ffee00c0ffee00c0ffee00";
  setenv("CHAINIDX_TEST_ADMIN_TOKEN", token.c_str(), 1);
  Indexer indexer(run.dir.path(), run.anvil, db, run.broker.bootstrap(),
                  {.batch_blocks = 3, .server_extra = "admin_token = \"${CHAINIDX_TEST_ADMIN_TOKEN}\"\n"});
  indexer.start();
  mine_transfers(run.anvil, 12);
  ASSERT_TRUE(wait_until([&] { return cursor_of(db) >= run.anvil.block_number() - 3; }, 60s)) << indexer.log();
  const int port = indexer.ops_port();
  const std::vector<std::pair<std::string, std::string>> good = {{"Authorization", "Bearer " + token}};
  const std::string body = R"({"from": 2, "to": 6, "sinks": ["postgres"], "chunk_blocks": 2})";

  // Refused without the right token, and nothing done.
  for (const auto& [what, headers] : std::vector<std::pair<std::string, std::vector<std::pair<std::string, std::string>>>>{
           {"no token", {}},
           {"wrong token", {{"Authorization", "Bearer " + token.substr(0, 31) + "1"}}},
           {"token as basic", {{"Authorization", "Basic " + token}}},
           {"token with a prefix", {{"Authorization", "Bearer x" + token}}}}) {
    const HttpAnswer a = http_request(port, "POST", "/admin/replay", body, headers);
    EXPECT_EQ(a.status, 401) << what << ": " << a.body;
    EXPECT_EQ(a.www_authenticate, "Bearer realm=\"chainidx\"") << what;
    EXPECT_EQ(http_request(port, "GET", "/admin/replays", "", headers).status, 401) << what;
    EXPECT_EQ(http_request(port, "GET", "/admin/elsewhere", "", headers).status, 401) << what << ": paths are not told";
  }
  EXPECT_EQ(replay_chunk_rows(db), 0u) << "a refused request planned a replay";
  EXPECT_EQ(indexer.log().find(token), std::string::npos) << "the token reached the log";
  EXPECT_NE(indexer.log().find("event=admin_unauthorized method=POST path=/admin/replay reason=wrong_token"), std::string::npos)
      << indexer.log();

  // Malformed requests: 400 with the reason (or 413, 405, 404), nothing started.
  const std::uint64_t cursor = cursor_of(db);
  struct Bad {
    std::string method, target, body;
    int status;
    std::string reason;
  };
  for (const auto& b : std::vector<Bad>{
           {"POST", "/admin/replay", "not json", 400, "not JSON"},
           {"POST", "/admin/replay", "[1, 2]", 400, "must be a JSON object"},
           {"POST", "/admin/replay", R"({"from": 2})", 400, "\"to\" is missing"},
           {"POST", "/admin/replay", R"({"from": 7, "to": 2})", 400, "\"from\" (7) is above \"to\" (2)"},
           {"POST", "/admin/replay", R"({"from": -1, "to": 2})", 400, "\"from\" must be a block number"},
           {"POST", "/admin/replay", R"({"from": 1, "to": 2, "force": true})", 400, "unknown field \"force\""},
           {"POST", "/admin/replay", R"({"from": 1, "to": 2, "sinks": ["s3"]})", 400, "\"sinks\" holds \"s3\""},
           {"POST", "/admin/replay", R"({"from": 1, "to": 2, "topic_prefix": "a b"})", 400, "\"topic_prefix\" must be"},
           {"POST", "/admin/replay", R"({"from": 1, "to": )" + std::to_string(cursor + 5) + "}", 400,
            "is above the live cursor (" + std::to_string(cursor) + ")"},
           {"POST", "/admin/replay", std::string(5000, ' ') + "{}", 413, "larger than 4096 bytes"},
           {"GET", "/admin/replay", "", 405, "POST /admin/replay"},
           {"DELETE", "/admin/replays", "", 405, "GET /admin/replays"},
           {"GET", "/admin/nothing", "", 404, "POST /admin/replay and GET /admin/replays"}}) {
    const HttpAnswer a = http_request(port, b.method, b.target, b.body, good);
    EXPECT_EQ(a.status, b.status) << b.method << " " << b.target << " " << b.body.substr(0, 80) << ": " << a.body;
    // The JSON answer's quotes unescaped, to compare with the reason as a user reads it.
    const std::string said = std::regex_replace(a.body, std::regex(R"(\\")"), "\"");
    EXPECT_NE(said.find(b.reason), std::string::npos) << b.body.substr(0, 80) << ": " << a.body;
  }
  EXPECT_EQ(replay_chunk_rows(db), 0u) << "a malformed request planned a replay";

  // A hole in history, then the replay that fills it.
  {
    pqxx::connection c(db);
    pqxx::work tx(c);
    tx.exec0("DELETE FROM anvil.blocks WHERE number BETWEEN 3 AND 5");
    tx.commit();
  }
  const HttpAnswer started = http_request(port, "POST", "/admin/replay", body, good);
  ASSERT_EQ(started.status, 202) << started.body << indexer.log();
  EXPECT_EQ(started.content_type, "application/json");
  EXPECT_NE(started.body.find("\"job\":\"2-6\""), std::string::npos) << started.body;
  EXPECT_NE(started.body.find("\"state\":\"running\""), std::string::npos) << started.body;
  HttpAnswer listed;
  ASSERT_TRUE(wait_until(
      [&] {
        listed = http_request(port, "GET", "/admin/replays", "", good);
        return listed.body.find("\"state\":\"done\"") != std::string::npos;
      },
      60s))
      << listed.body << indexer.log();
  EXPECT_NE(listed.body.find("\"job\":\"2-6\""), std::string::npos) << listed.body;
  EXPECT_NE(listed.body.find("\"blocks\":5,\"blocks_done\":5,\"chunks\":3,\"chunks_done\":3"), std::string::npos) << listed.body;
  // The process it started exits 0 once its last chunk is done.
  ASSERT_TRUE(wait_until(
      [&] {
        listed = http_request(port, "GET", "/admin/replays", "", good);
        return listed.body.find("\"exit_code\":0") != std::string::npos;
      },
      30s))
      << listed.body;
  expect_postgres_hashes_equal_anvil(db, run.anvil);
  HttpAnswer scrape;
  ASSERT_TRUE(wait_until(
      [&] {
        scrape = http_request(port, "GET", "/metrics");
        return metric_sample(scrape.body, "chainidx_replay_blocks_done{chain=\"anvil\",job=\"2-6\"}") == 5;
      },
      20s))
      << scrape.body;
  EXPECT_EQ(metric_sample(scrape.body, "chainidx_replay_blocks{chain=\"anvil\",job=\"2-6\"}"), 5) << scrape.body;
  EXPECT_EQ(metric_sample(scrape.body, "chainidx_replay_running{chain=\"anvil\",job=\"2-6\"}"), 0) << scrape.body;
  EXPECT_NE(indexer.log().find("event=admin_replay_started job=2-6"), std::string::npos) << indexer.log();
  EXPECT_NE(indexer.log().find("event=admin_replay_finished job=2-6"), std::string::npos) << indexer.log();
  EXPECT_EQ(indexer.stop(SIGTERM), 0) << indexer.log();
}

// Every secret in the config (the provider key in the endpoint URL's user-info, path and query;
// the Postgres password; the admin token) stays out of a whole run's JSON log, its metrics, its
// status and its admin answers, and the log is one JSON object per line.
TEST(Ops, NoSecretReachesTheJsonLogMetricsStatusOrAdminAnswers) {
  Chain run;
  FaultProxy proxy(run.anvil.port(), nullptr);
  const std::string key = "5ec2e7d0a1b2c3d4e5f60718293a4b5c";
  const std::string password = "pw-7f3a9c1e5b";
  const std::string token = "adm-4d6f8a0c2e4a6c8e0a2c4e6a8c0e2a4c";
  setenv("CHAINIDX_TEST_SECRET_KEY", key.c_str(), 1);
  setenv("CHAINIDX_TEST_ADMIN_TOKEN", token.c_str(), 1);
  std::string db = Postgres::instance().create_database("ops_secrets");
  // Trust authentication ignores the password, so it can be in the URL without being checked.
  std::string with_password = db;
  with_password.replace(with_password.find("postgres@"), 9, "postgres:" + password + "@");
  Indexer indexer(run.dir.path(), run.anvil, with_password, run.broker.bootstrap(),
                  {.batch_blocks = 3,
                   .http_url = "http://user:${CHAINIDX_TEST_SECRET_KEY}@" + proxy.url().substr(7) +
                               "/v2/${CHAINIDX_TEST_SECRET_KEY}?key=${CHAINIDX_TEST_SECRET_KEY}",
                   .server_extra = "admin_token = \"${CHAINIDX_TEST_ADMIN_TOKEN}\"\n\n[log]\nformat = \"json\"\nlevel = \"debug\""});
  indexer.start();
  mine_transfers(run.anvil, 6);
  ASSERT_TRUE(wait_until([&] { return cursor_of(db) >= run.anvil.block_number() - 3; }, 60s)) << indexer.log();
  const int port = indexer.ops_port();
  const std::vector<std::pair<std::string, std::string>> auth = {{"Authorization", "Bearer " + token}};
  std::vector<std::pair<std::string, std::string>> answers = {
      {"/metrics", http_request(port, "GET", "/metrics").body},
      {"/status", http_request(port, "GET", "/status").body},
      {"/healthz", http_request(port, "GET", "/healthz").body},
      {"/readyz", http_request(port, "GET", "/readyz").body},
      {"/admin/replays", http_request(port, "GET", "/admin/replays", "", auth).body},
      {"401", http_request(port, "GET", "/admin/replays", "", {{"Authorization", "Bearer " + key}}).body}};
  ASSERT_EQ(indexer.stop(SIGTERM), 0) << indexer.log();
  answers.emplace_back("log", indexer.log());
  for (const auto& [what, text] : answers) {
    EXPECT_FALSE(text.empty()) << what;
    for (const std::string& secret : {key, password, token})
      EXPECT_EQ(text.find(secret), std::string::npos) << what << " holds a secret:\n" << text;
  }
  // One JSON object per line, each with its time, level and event (or message).
  std::istringstream lines(indexer.log());
  int objects = 0;
  for (std::string line; std::getline(lines, line);) {
    if (line.empty()) continue;
    EXPECT_EQ(line.front(), '{') << line;
    EXPECT_EQ(line.back(), '}') << line;
    EXPECT_EQ(line.rfind("{\"time\":\"", 0), 0u) << line;
    EXPECT_TRUE(line.find("\"event\":\"") != std::string::npos || line.find("\"message\":\"") != std::string::npos) << line;
    ++objects;
  }
  EXPECT_GT(objects, 5);
  EXPECT_NE(indexer.log().find(R"("event":"start","chain":"anvil","chain_id":31337)"), std::string::npos) << indexer.log();
  EXPECT_NE(indexer.log().find(R"("level":"debug")"), std::string::npos) << "log.level = debug was not applied";
}

// A real Prometheus (Debian's) scrapes a running chainidx with the shipped alert rules loaded: the
// target is up, the series hold what Postgres holds, every rule evaluates without error, and no
// alert fires on a healthy indexer.
TEST(Ops, RealPrometheusScrapesItWithTheShippedAlertRules) {
  Chain run;
  std::string db = Postgres::instance().create_database("ops_prometheus");
  Indexer indexer(run.dir.path(), run.anvil, db, run.broker.bootstrap(), {.batch_blocks = 3});
  indexer.start();
  mine_transfers(run.anvil, 6);
  ASSERT_TRUE(wait_until([&] { return cursor_of(db) >= run.anvil.block_number() - 3; }, 60s)) << indexer.log();
  const int web = free_port();
  const std::string config = run.dir.path() + "/prometheus.yml";
  std::ofstream(config) << "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files:\n  - " << CHAINIDX_SOURCE_DIR
                        << "/deploy/prometheus/alerts.yml\nscrape_configs:\n  - job_name: chainidx\n    static_configs:\n"
                        << "      - targets: [\"127.0.0.1:" << indexer.ops_port() << "\"]\n";
  Process prometheus({"prometheus", "--config.file=" + config, "--storage.tsdb.path=" + run.dir.path() + "/tsdb",
                      "--web.listen-address=127.0.0.1:" + std::to_string(web)},
                     run.dir.path() + "/prometheus.log");
  const std::string cursor = std::to_string(cursor_of(db));
  HttpAnswer confirmed;
  ASSERT_TRUE(wait_until(
      [&] {
        confirmed = http_request(web, "GET", "/api/v1/query?query=chainidx_confirmed_block");
        return confirmed.body.find("\"" + cursor + "\"]") != std::string::npos;
      },
      60s))
      << confirmed.body << prometheus.log();
  EXPECT_NE(confirmed.body.find("\"chain\":\"anvil\""), std::string::npos) << confirmed.body;
  const HttpAnswer targets = http_request(web, "GET", "/api/v1/targets");
  EXPECT_NE(targets.body.find("\"health\":\"up\""), std::string::npos) << targets.body;
  HttpAnswer rules;
  ASSERT_TRUE(wait_until(
      [&] {
        rules = http_request(web, "GET", "/api/v1/rules");
        return rules.body.find("\"lastEvaluation\":\"0001-01-01") == std::string::npos && rules.body.find("ChainidxRpcThrottled") != std::string::npos;
      },
      30s))
      << rules.body;
  for (const char* alert : {"ChainidxDown", "ChainidxHaltedByDeepReorg", "ChainidxBehind", "ChainidxNoWrite", "ChainidxHeadStale",
                            "ChainidxRpcThrottled", "ChainidxEndpointDown"})
    EXPECT_NE(rules.body.find(std::string("\"name\":\"") + alert + "\""), std::string::npos) << alert << "\n" << rules.body;
  EXPECT_EQ(rules.body.find("\"health\":\"err\""), std::string::npos) << rules.body;
  const HttpAnswer alerts = http_request(web, "GET", "/api/v1/alerts");
  EXPECT_NE(alerts.body.find("\"alerts\":[]"), std::string::npos) << "an alert fires on a healthy indexer: " << alerts.body;
  // The rate of writes Prometheus computes is there too (a counter it scraped more than once).
  const HttpAnswer rate = http_request(web, "GET", "/api/v1/query?query=chainidx_written_blocks_total%7Bsink%3D%22postgres%22%7D");
  EXPECT_NE(rate.body.find("\"sink\":\"postgres\""), std::string::npos) << rate.body;
  prometheus.signal(SIGTERM);
  prometheus.wait(20s);
  EXPECT_EQ(indexer.stop(SIGTERM), 0) << indexer.log();
}

// Started while Postgres is down: the probes answer at once (healthy, not ready, saying what
// start-up waits for), and once Postgres is back the indexer starts and turns ready.
TEST(Ops, ProbesAnswerWhileStartUpWaitsForPostgres) {
  Chain run;
  std::string db = Postgres::instance().create_database("ops_startup");
  Indexer indexer(run.dir.path(), run.anvil, db, run.broker.bootstrap(), {.batch_blocks = 3});
  mine_transfers(run.anvil, 4);
  Postgres::instance().stop();
  indexer.start();
  HttpAnswer ready;
  ASSERT_TRUE(wait_until(
      [&] {
        ready = http_request(indexer.ops_port(), "GET", "/readyz");
        return ready.body.find("starting: waiting for postgres") != std::string::npos;
      },
      30s))
      << ready.status << " " << ready.body << indexer.log();
  EXPECT_EQ(ready.status, 503);
  const HttpAnswer health = http_request(indexer.ops_port(), "GET", "/healthz");
  EXPECT_EQ(health.status, 200) << health.body;
  EXPECT_EQ(health.body.rfind("starting: waiting for postgres", 0), 0u) << health.body;
  EXPECT_EQ(http_request(indexer.ops_port(), "GET", "/metrics").status, 200);
  const HttpAnswer status = http_request(indexer.ops_port(), "GET", "/status");
  EXPECT_NE(status.body.find("\"starting\":\"waiting for postgres"), std::string::npos) << status.body;
  Postgres::instance().start();
  ASSERT_TRUE(wait_until([&] { return http_request(indexer.ops_port(), "GET", "/readyz").status == 200; }, 60s)) << indexer.log();
  EXPECT_EQ(http_request(indexer.ops_port(), "GET", "/status").body.find("\"starting\""), std::string::npos);
  // Ready means within server.ready_max_lag_blocks, not written: wait for the confirmed blocks.
  ASSERT_TRUE(wait_until([&] { return cursor_of(db) + 3 >= run.anvil.block_number(); }, 60s)) << indexer.log();
  EXPECT_EQ(indexer.stop(SIGTERM), 0) << indexer.log();
  expect_postgres_hashes_equal_anvil(db, run.anvil);
}

}  // namespace
}  // namespace chainidx::testing

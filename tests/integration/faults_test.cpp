// Providers misbehaving in ways a real node will not on demand: a missing RPC method, 429
// storms, tampered answers. Each time the indexer must end with exactly the canonical chain.

#include <gtest/gtest.h>
#include <pqxx/pqxx>
#include <simdjson.h>

#include <csignal>
#include <map>
#include <mutex>
#include <random>
#include <set>
#include <sstream>
#include <thread>

#include "fault_proxy.hpp"
#include "chain_checks.hpp"
#include "harness.hpp"

namespace chainidx::testing {
namespace {

struct Chain {
  TempDir dir;
  Anvil anvil{dir.path()};
  DevBroker broker{dir.path(), "anvil"};
  std::string emitter = anvil.deploy_emitter();

  void mine(int rounds) { mine_transfers(anvil, rounds); }
};

// Runs the indexer over `rounds` mined blocks until it confirmed head - 3, then stops it with
// SIGTERM and expects a clean exit.
void index_rounds(Chain& run, Indexer& indexer, const std::string& db, int rounds, std::chrono::seconds timeout = 60s) {
  indexer.start();
  run.mine(rounds);
  std::uint64_t head = run.anvil.block_number();
  ASSERT_TRUE(wait_until([&] { return cursor_of(db) >= head - 3; }, timeout)) << indexer.log();
  EXPECT_EQ(indexer.stop(SIGTERM), 0);
}

// A request that hangs costs one timeout, and that timeout is logged as what it is: only a
// kept-alive connection that the server closed before answering is retried silently, so the
// hung request reaches the node once and the retry is the pipeline's, with a new request id.
TEST(Faults, HungRequestCostsOneLoggedTimeoutNotTwo) {
  Chain run;
  std::mutex mu;
  std::map<std::string, int> seen;  // request body -> times received
  std::string hung;
  FaultProxy proxy(run.anvil.port(), [&](const std::string& body, std::uint64_t n) -> std::optional<FaultProxy::Canned> {
    std::lock_guard lock(mu);
    seen[body]++;
    // The first block fetch after start-up (chain id, head, genesis), whether it is a single call
    // of the live path or a batch of the range engine: how many calls the indexer makes before it
    // depends on how the heads arrive.
    if (hung.empty() && n > 3 && body.find("eth_getBlockByNumber") != std::string::npos) {
      hung = body;
      return FaultProxy::Canned{200, "{}", "", 3000ms};
    }
    if (body == hung) return FaultProxy::Canned{200, "{}", "", 3000ms};  // hangs again if repeated
    return std::nullopt;
  });
  std::string db = Postgres::instance().create_database("hung_request");
  Indexer indexer(run.dir.path(), run.anvil, db, run.broker.bootstrap(),
                  {.http_url = proxy.url(), .chain_extra = "http_timeout_seconds = 1\n"});
  ASSERT_NO_FATAL_FAILURE(index_rounds(run, indexer, db, 10, 90s));
  std::lock_guard lock(mu);
  ASSERT_FALSE(hung.empty()) << "no request was held";
  EXPECT_EQ(seen[hung], 1) << "the hung request was sent again silently";
  EXPECT_NE(indexer.log().find("no answer within 1 s (chain.http_timeout_seconds)"), std::string::npos) << indexer.log();
  expect_postgres_hashes_equal_anvil(db, run.anvil);
}

struct UnsupportedAnswer {
  const char* family;
  int code;
  const char* message;
};

class ReceiptsFallback : public ::testing::TestWithParam<UnsupportedAnswer> {};

// A node or provider that does not serve eth_getBlockReceipts, as each family words it: the
// blocks are completed with per-transaction receipts, and the method is asked for only once in
// each form.
TEST_P(ReceiptsFallback, NodeWithoutGetBlockReceiptsIsServedPerTransactionReceipts) {
  const auto& answer = GetParam();
  Chain run;
  std::atomic<int> refused{0};   // calls refused (a range batch holds one per block)
  std::atomic<int> requests{0};  // HTTP requests that held at least one such call
  FaultProxy proxy(run.anvil.port(), [&](const std::string& body, std::uint64_t) -> std::optional<FaultProxy::Canned> {
    if (body.find("eth_getBlockReceipts") == std::string::npos) return std::nullopt;
    ++requests;
    return FaultProxy::Canned{200, answer_without_method(run.anvil, body, "eth_getBlockReceipts", answer.code, answer.message, refused)};
  });
  std::string db = Postgres::instance().create_database(std::string("fallback_") + answer.family);
  Indexer indexer(run.dir.path(), run.anvil, db, run.broker.bootstrap(), {.http_url = proxy.url()});
  ASSERT_NO_FATAL_FAILURE(index_rounds(run, indexer, db, 12));
  // Asked in at most two requests: batched with the block by its number, then alone by the
  // block's hash (a node may take only one of the forms); then remembered. When the indexer starts
  // behind (a slow run), the first ask is a range batch, whose one request holds a call per block
  // and whose refusal is remembered at once.
  EXPECT_GE(refused.load(), 1);
  EXPECT_GE(requests.load(), 1);
  EXPECT_LE(requests.load(), 2) << "asked again after the node said it lacks the method (" << refused.load() << " calls refused)";
  EXPECT_NE(indexer.log().find("event=rpc_fallback"), std::string::npos) << indexer.log();
  expect_postgres_hashes_equal_anvil(db, run.anvil);
}

INSTANTIATE_TEST_SUITE_P(
    Faults, ReceiptsFallback,
    ::testing::Values(UnsupportedAnswer{"geth", -32601, "the method eth_getBlockReceipts does not exist/is not available"},
                      UnsupportedAnswer{"by_number_only", -32602, "invalid argument 0: hex string has length 64, want 16 for uint64"},
                      UnsupportedAnswer{"provider_text", -32600, "Unsupported method: eth_getBlockReceipts. See available methods"}),
    [](const auto& info) { return std::string(info.param.family); });

// Answers a full-block request with "invalid params", as a provider that refuses a method's
// form does; everything else passes through.
FaultProxy::Intercept refuse_full_blocks(const Anvil& anvil, std::atomic<int>& refused) {
  return [&anvil, &refused](const std::string& body, std::uint64_t) -> std::optional<FaultProxy::Canned> {
    if (body.find("eth_getBlockByNumber") == std::string::npos || body.find(",true]") == std::string::npos) return std::nullopt;
    auto full_block = [](const std::string& method, const std::string& params) {
      return method == "eth_getBlockByNumber" && params.find(",true]") != std::string::npos;
    };
    return FaultProxy::Canned{200, answer_refusing(anvil, body, full_block, -32602, "invalid params for this plan", refused)};
  };
}

// An answer that no retry changes ends that endpoint's part in the request, not the indexer:
// the other endpoint serves it.
TEST(Faults, NonRetryableAnswerFromOneEndpointFailsOverToTheOther) {
  Chain run;
  std::atomic<int> refused{0};
  FaultProxy refusing(run.anvil.port(), refuse_full_blocks(run.anvil, refused));
  std::string db = Postgres::instance().create_database("refusing_one");
  Indexer indexer(run.dir.path(), run.anvil, db, run.broker.bootstrap(),
                  {.extra_endpoints_first = {{run.anvil.ws_url(), refusing.url()}}});
  ASSERT_NO_FATAL_FAILURE(index_rounds(run, indexer, db, 8));
  EXPECT_GE(refused.load(), 1) << "the refusing endpoint was never asked";
  EXPECT_NE(indexer.log().find("event=rpc_retry op=fetch_by_number attempt=1 endpoint=" + refusing.url()), std::string::npos)
      << indexer.log();
  expect_postgres_hashes_equal_anvil(db, run.anvil);
}

// Only when every endpoint refuses the same request the same way does the indexer stop, with
// its exit code and each endpoint's answer.
TEST(Faults, EveryEndpointRefusingTheSameRequestStopsNamingEachAnswer) {
  Chain run;
  std::atomic<int> refused{0};
  FaultProxy first(run.anvil.port(), refuse_full_blocks(run.anvil, refused));
  FaultProxy second(run.anvil.port(), refuse_full_blocks(run.anvil, refused));
  std::string db = Postgres::instance().create_database("refusing_all");
  Indexer indexer(run.dir.path(), run.anvil, db, run.broker.bootstrap(),
                  {.http_url = second.url(), .extra_endpoints_first = {{run.anvil.ws_url(), first.url()}}});
  indexer.start();
  run.mine(5);
  auto code = indexer.wait(60s);
  ASSERT_TRUE(code) << "the indexer kept retrying a request every endpoint refuses:\n" << indexer.log();
  EXPECT_EQ(*code, 8) << indexer.log();
  std::string log = indexer.log();
  EXPECT_NE(log.find("every endpoint refused fetch_by_number"), std::string::npos) << log;
  EXPECT_NE(log.find(first.url() + " answered: "), std::string::npos) << log;
  EXPECT_NE(log.find(second.url() + " answered: "), std::string::npos) << log;
  EXPECT_NE(log.find("invalid params for this plan"), std::string::npos) << log;
}

// Retry-After values a provider should not send: 2^62 seconds is capped (here at 2 s) and an
// HTTP date is honoured; both are logged, and nothing is lost.
TEST(Faults, RetryAfterBeyondTheCapOrAsADateIsBoundedAndLogged) {
  Chain run;
  std::atomic<int> throttled{0};
  FaultProxy proxy(run.anvil.port(), [&](const std::string&, std::uint64_t n) -> std::optional<FaultProxy::Canned> {
    // Two of the first block fetches after start-up (chain id, head, genesis): early enough that
    // they come however few batches the heads lead to.
    if (n != 4 && n != 6) return std::nullopt;
    ++throttled;
    return FaultProxy::Canned{429, "rate limited", n == 4 ? "4611686018427387904" : "Fri, 31 Dec 2100 23:59:59 GMT"};
  });
  std::string db = Postgres::instance().create_database("retry_after_cap");
  Indexer indexer(run.dir.path(), run.anvil, db, run.broker.bootstrap(),
                  {.http_url = proxy.url(), .chain_extra = "retry_after_max_seconds = 2\n"});
  ASSERT_NO_FATAL_FAILURE(index_rounds(run, indexer, db, 10, 90s));
  EXPECT_EQ(throttled.load(), 2);
  std::string log = indexer.log();
  EXPECT_NE(log.find("Retry-After '4611686018427387904' is longer than the cap of 2 s"), std::string::npos) << log;
  EXPECT_NE(log.find("Retry-After 'Fri, 31 Dec 2100 23:59:59 GMT' is longer than the cap"), std::string::npos) << log;
  EXPECT_NE(log.find("backoff_ms=2000"), std::string::npos) << log;
  expect_postgres_hashes_equal_anvil(db, run.anvil);
}

TEST(Faults, StormOf429WithRetryAfterIsWaitedOutLosesNothingAndLogsNoApiKey) {
  Chain run;
  std::atomic<int> throttled{0};
  FaultProxy proxy(run.anvil.port(), [&](const std::string&, std::uint64_t n) -> std::optional<FaultProxy::Canned> {
    // Two of every three of the first 30 requests: the catch-up's range batches and the live
    // fetches after them both meet the storm.
    if (n % 3 == 0 || n > 30) return std::nullopt;
    ++throttled;
    return FaultProxy::Canned{429, "rate limited", "1"};
  });
  std::string db = Postgres::instance().create_database("storm");
  // The provider URL carries an API key in its user-info, path and query, as hosted providers' do; it comes
  // from the environment and must appear in no log line, however many errors name the endpoint.
  const std::string key = "9aa3d95b3bc440fa88ea12eaa4456161";
  setenv("CHAINIDX_TEST_API_KEY", key.c_str(), 1);
  Indexer indexer(run.dir.path(), run.anvil, db, run.broker.bootstrap(),
                  {.http_url = "http://indexer:${CHAINIDX_TEST_API_KEY}@" + proxy.url().substr(7) +
                               "/v3/${CHAINIDX_TEST_API_KEY}?apikey=${CHAINIDX_TEST_API_KEY}"});
  ASSERT_NO_FATAL_FAILURE(index_rounds(run, indexer, db, 12, 120s));
  EXPECT_GE(throttled.load(), 5);
  EXPECT_NE(indexer.log().find("HTTP 429"), std::string::npos) << indexer.log();
  EXPECT_NE(indexer.log().find("backoff_ms=1000"), std::string::npos) << "Retry-After: 1 was not honoured\n" << indexer.log();
  // And the endpoint's rate was cut (1000/s configured), logged with its name.
  EXPECT_NE(indexer.log().find("event=rate_adjusted endpoint=" + proxy.url() + " rate=500.00 was=1000.00"), std::string::npos)
      << indexer.log();
  EXPECT_EQ(indexer.log().find(key), std::string::npos) << "the API key reached the log";
  // Named by its label (scheme, host, port): no path, no query.
  EXPECT_NE(indexer.log().find("endpoint=" + proxy.url() + " "), std::string::npos) << indexer.log();
  EXPECT_EQ(indexer.log().find("/v3/"), std::string::npos) << indexer.log();
  expect_postgres_hashes_equal_anvil(db, run.anvil);
}

TEST(Faults, ReceiptsWithTamperedLogsAreRejectedRetriedAndNeverWritten) {
  Chain run;
  std::atomic<int> tampered{0};
  const std::string fake = "0x000000000000000000000000000000000000dead";
  FaultProxy proxy(run.anvil.port(), nullptr, [&](const std::string& request, std::string& response, std::uint64_t) {
    // The first few receipt answers that carry the emitter's logs claim another address.
    if (request.find("eth_getBlockReceipts") == std::string::npos || tampered >= 4) return;
    bool changed = false;
    for (auto at = response.find(run.emitter); at != std::string::npos; at = response.find(run.emitter, at)) {
      response.replace(at, run.emitter.size(), fake);
      changed = true;
    }
    if (changed) ++tampered;
  });
  std::string db = Postgres::instance().create_database("tampered");
  Indexer indexer(run.dir.path(), run.anvil, db, run.broker.bootstrap(), {.http_url = proxy.url()});
  ASSERT_NO_FATAL_FAILURE(index_rounds(run, indexer, db, 12));
  EXPECT_EQ(tampered.load(), 4);
  EXPECT_NE(indexer.log().find("logsBloom"), std::string::npos) << indexer.log();
  pqxx::connection c(db);
  pqxx::read_transaction tx(c);
  EXPECT_EQ(tx.exec("SELECT count(*) FROM anvil.logs WHERE address = '\\x000000000000000000000000000000000000dead'")[0][0].as<int>(), 0);
  expect_postgres_hashes_equal_anvil(db, run.anvil);
}

// The live path asks for a block and its receipts by number in one batch, so the chain may move
// between the two answers. Here every such batch answers the receipts of the block before: they
// are recognised as another block's (not counted as a hostile answer), asked for again by the
// block's hash, and the chain is indexed as the node has it.
TEST(Faults, ReceiptsOfAnotherBlockInTheSameBatchAreAskedForAgainByHash) {
  Chain run;
  std::atomic<int> moved{0}, by_hash{0};
  FaultProxy proxy(run.anvil.port(), [&](const std::string& body, std::uint64_t) -> std::optional<FaultProxy::Canned> {
    if (body.find("eth_getBlockReceipts") == std::string::npos) return std::nullopt;
    simdjson::dom::parser parser;
    simdjson::dom::element request = parser.parse(body);
    if (!request.is_array()) {  // alone: by hash
      ++by_hash;
      return std::nullopt;
    }
    std::string answer = "[";
    for (simdjson::dom::element call : request.get_array()) {
      const std::string id = simdjson::minify(call["id"]);
      const std::string method(call["method"].get_string().value());
      std::string params = simdjson::minify(call["params"]);
      if (method == "eth_getBlockReceipts" && params.find("\"0x") == 1 && params.size() < 24) {
        const std::uint64_t n = std::stoull(params.substr(4), nullptr, 16);
        if (n > 1) {
          params = "[\"0x" + (std::stringstream() << std::hex << n - 1).str() + "\"]";
          ++moved;
        }
      }
      answer += (answer.size() > 1 ? "," : "") + std::string("{\"jsonrpc\":\"2.0\",\"id\":") + id + ",\"result\":" + run.anvil.rpc(method, params) + "}";
    }
    return FaultProxy::Canned{200, answer + "]"};
  });
  std::string db = Postgres::instance().create_database("moved_receipts");
  Indexer indexer(run.dir.path(), run.anvil, db, run.broker.bootstrap(), {.http_url = proxy.url()});
  // Fewer blocks than a write batch: the live path fetches them all (the range engine, whose
  // batches have the same form, would take the shifted receipts for a fault, rightly).
  ASSERT_NO_FATAL_FAILURE(index_rounds(run, indexer, db, 6));
  EXPECT_GT(moved.load(), 2) << "no batch of the live path was answered with another block's receipts";
  EXPECT_GT(by_hash.load(), 2) << "the receipts were not asked for again by hash";
  EXPECT_EQ(indexer.log().find("level=warn"), std::string::npos) << "another block's receipts were taken for a fault:\n" << indexer.log();
  expect_postgres_hashes_equal_anvil(db, run.anvil);
}

TEST(Faults, BlocksWhoseHeaderDoesNotHashToTheirHashAreRejected) {
  Chain run;
  std::atomic<int> forged{0};
  FaultProxy proxy(run.anvil.port(), nullptr, [&](const std::string& request, std::string& response, std::uint64_t) {
    // A provider that edits a header field but keeps the hash: the first few full blocks.
    if (request.find(",true]") == std::string::npos || forged >= 3) return;
    auto at = response.find("\"stateRoot\":\"0x");
    if (at == std::string::npos) return;
    char& c = response[at + 15];
    c = c == '0' ? '1' : '0';
    ++forged;
  });
  std::string db = Postgres::instance().create_database("forged");
  Indexer indexer(run.dir.path(), run.anvil, db, run.broker.bootstrap(), {.http_url = proxy.url()});
  ASSERT_NO_FATAL_FAILURE(index_rounds(run, indexer, db, 8));
  EXPECT_EQ(forged.load(), 3);
  EXPECT_NE(indexer.log().find("header fields do not hash to the block hash"), std::string::npos) << indexer.log();
  // What was written is what anvil has, state roots included.
  pqxx::connection c(db);
  pqxx::read_transaction tx(c);
  simdjson::dom::parser parser;
  for (const auto& r : tx.exec("SELECT number, '0x' || encode(state_root, 'hex') FROM anvil.blocks")) {
    char number[32];
    std::snprintf(number, sizeof number, "\"0x%llx\"", static_cast<unsigned long long>(r[0].as<std::uint64_t>()));
    std::string block = run.anvil.rpc("eth_getBlockByNumber", std::string("[") + number + ",false]");
    EXPECT_EQ(r[1].as<std::string>(), std::string(parser.parse(block)["stateRoot"].get_string().value())) << number;
  }
  expect_postgres_hashes_equal_anvil(db, run.anvil);
}

// A block that no endpoint serves in a valid form stops the indexer after a bounded number of
// rounds, with its exit code, the block, the field and the answer: never an endless silent
// retry, never a skipped block.
TEST(Faults, BlockThatFailsValidationEverywhereStopsNamingTheBlockAndTheField) {
  Chain run;
  FaultProxy forging(run.anvil.port(), nullptr, [&](const std::string& request, std::string& response, std::uint64_t) {
    if (request.find(",true]") == std::string::npos) return;  // every full block, every time
    auto at = response.find("\"stateRoot\":\"0x");
    if (at == std::string::npos) return;
    char& c = response[at + 15];
    c = c == '0' ? '1' : '0';
  });
  std::string db = Postgres::instance().create_database("undecodable");
  Indexer indexer(run.dir.path(), run.anvil, db, run.broker.bootstrap(),
                  {.http_url = forging.url(), .chain_extra = "backoff_max_ms = 200\nundecodable_after_rounds = 3\n"});
  indexer.start();
  run.mine(5);
  auto code = indexer.wait(60s);
  ASSERT_TRUE(code) << "the indexer retried an undecodable block forever:\n" << indexer.log();
  EXPECT_EQ(*code, 9) << indexer.log();
  std::string log = indexer.log();
  EXPECT_NE(log.find("block 0 failed validation on every endpoint 3 times"), std::string::npos) << log;
  EXPECT_NE(log.find("header fields do not hash to the block hash"), std::string::npos) << log;
  EXPECT_EQ(cursor_of(db), 0u) << "nothing was written past the block";
}

TEST(Faults, DeadAndHostileFirstEndpointFailsOverToTheNext) {
  Chain run;
  // Endpoint 0: its WebSocket port is closed, and its HTTP side answers block requests with
  // corrupt hashes (eth_chainId and the rest pass through, so it looks healthy at first).
  std::atomic<int> corrupted{0};
  FaultProxy hostile(run.anvil.port(), nullptr, [&](const std::string& request, std::string& response, std::uint64_t) {
    if (request.find(",true]") == std::string::npos) return;  // full-block requests only
    for (auto at = response.find("\"hash\":\"0x"); at != std::string::npos; at = response.find("\"hash\":\"0x", at + 1))
      response.replace(at + 10, 2, "zz");
    ++corrupted;
  });
  const std::string dead_ws = "ws://127.0.0.1:" + std::to_string(free_port());
  std::string db = Postgres::instance().create_database("failover");
  Indexer indexer(run.dir.path(), run.anvil, db, run.broker.bootstrap(),
                  {.extra_endpoints_first = {{dead_ws, hostile.url()}}});
  ASSERT_NO_FATAL_FAILURE(index_rounds(run, indexer, db, 10));
  std::string log = indexer.log();
  EXPECT_GE(corrupted.load(), 1) << "the hostile endpoint was never asked for a block";
  EXPECT_NE(log.find("event=rpc_retry"), std::string::npos) << log;
  EXPECT_NE(log.find("block.hash: expected 32 bytes of hex"), std::string::npos) << log;
  EXPECT_NE(log.find("event=ws_reconnect endpoint=" + dead_ws), std::string::npos) << log;
  EXPECT_NE(log.find("event=ws_subscribed endpoint=" + run.anvil.ws_url()), std::string::npos) << log;
  expect_postgres_hashes_equal_anvil(db, run.anvil);
}

TEST(Faults, PostgresRestartMidStreamLosesAndDuplicatesNothing) {
  Chain run;
  std::string db = Postgres::instance().create_database("pgrestart");
  Indexer indexer(run.dir.path(), run.anvil, db, run.broker.bootstrap(), {.batch_blocks = 2});
  indexer.start();
  run.mine(8);
  ASSERT_TRUE(wait_until([&] { return cursor_of(db) >= 4; }, 60s)) << indexer.log();
  Postgres::instance().stop();
  run.mine(8);  // blocks confirm while the database is down
  std::this_thread::sleep_for(std::chrono::seconds(2));
  Postgres::instance().start();
  run.mine(4);
  std::uint64_t head = run.anvil.block_number();
  ASSERT_TRUE(wait_until([&] { return cursor_of(db) >= head - 3; }, 90s)) << indexer.log();
  EXPECT_EQ(indexer.stop(SIGTERM), 0);
  EXPECT_NE(indexer.log().find("event=sink_retry sink=postgres"), std::string::npos) << indexer.log();
  expect_postgres_hashes_equal_anvil(db, run.anvil);
  // Kafka saw each block once: Postgres' retries did not republish.
  std::multiset<std::string> published;
  for (const auto& m : run.broker.consume("anvil.blocks")) published.insert(m.substr(m.find("\"block_hash\"")));
  EXPECT_EQ(published.size(), head - 3 + 1);
  for (const auto& h : published) EXPECT_EQ(published.count(h), 1u) << h;
}

TEST(Faults, BatchCommittedToKafkaButNotPostgresIsNotRepublishedAfterKill9) {
  Chain run;
  std::string db = Postgres::instance().create_database("kafkatip");
  // Not staged: a staged write would take the cursor lock first, and Kafka would then never
  // commit while Postgres is held up (the crash window this test makes would not open).
  Indexer indexer(run.dir.path(), run.anvil, db, run.broker.bootstrap(), {.batch_blocks = 2, .pipeline_extra = "stage_ahead = \"off\""});
  indexer.start();
  run.mine(6);
  ASSERT_TRUE(wait_until([&] { return cursor_of(db) >= 3; }, 60s)) << indexer.log();
  std::this_thread::sleep_for(300ms);
  std::uint64_t cursor = cursor_of(db);
  {
    // Postgres stalls on the cursor row (this transaction holds its lock): the next batch
    // commits to Kafka, then waits for Postgres...
    pqxx::connection c(db);
    pqxx::work hold(c);
    hold.exec("SELECT * FROM anvil.cursor FOR UPDATE");
    run.mine(6);
    ASSERT_TRUE(wait_until([&] { return run.broker.consume("anvil.blocks").size() > cursor + 1; }, 60s)) << indexer.log();
    // ...and the indexer dies right there.
    EXPECT_EQ(indexer.stop(SIGKILL), 128 + SIGKILL);
    EXPECT_EQ(cursor_of(db), cursor);
  }
  indexer.start();
  run.mine(4);
  std::uint64_t head = run.anvil.block_number();
  ASSERT_TRUE(wait_until([&] { return cursor_of(db) >= head - 3; }, 60s)) << indexer.log();
  EXPECT_EQ(indexer.stop(SIGTERM), 0);
  EXPECT_NE(indexer.log().find("event=kafka_skip_published"), std::string::npos) << indexer.log();
  expect_postgres_hashes_equal_anvil(db, run.anvil);
  std::multiset<std::string> published;
  for (const auto& m : run.broker.consume("anvil.blocks")) published.insert(m.substr(m.find("\"block_hash\"")));
  EXPECT_EQ(published.size(), head - 3 + 1) << "a block is missing or published twice";
  for (const auto& h : published) EXPECT_EQ(published.count(h), 1u) << h;
}

}  // namespace
}  // namespace chainidx::testing

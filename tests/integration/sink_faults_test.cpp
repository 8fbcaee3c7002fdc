// The sinks under outside faults: a Kafka broker that goes away for longer than a transaction may
// stay open, commit errors of each class librdkafka distinguishes (injected by the mock cluster's
// own fault injection), a second instance that takes over, a Postgres that refuses a row, and a
// stop while a sink is down. Real anvil, real Postgres, librdkafka's mock cluster in this process.

#include <gtest/gtest.h>
#include <librdkafka/rdkafka.h>
#include <pqxx/pqxx>

#include <csignal>
#include <fstream>
#include <set>
#include <sstream>
#include <thread>

#include "chain_checks.hpp"
#include "harness.hpp"

namespace chainidx::testing {
namespace {

// Kafka protocol API keys, for the mock cluster's request error injection.
constexpr int kApiInitProducerId = 22;
constexpr int kApiEndTxn = 26;

struct Chain {
  TempDir dir;
  Anvil anvil{dir.path()};
  FaultyBroker broker{"anvil"};
  std::string emitter = anvil.deploy_emitter();
};

// Starts the indexer, mines `rounds` blocks with transfers and waits for the cursor to reach
// `cursor` (or head - 3 when `cursor` is 0).
void start_and_confirm(Chain& run, Indexer& indexer, const std::string& db, int rounds, std::uint64_t cursor = 0) {
  indexer.start();
  mine_transfers(run.anvil, rounds);
  if (cursor == 0) cursor = run.anvil.block_number() - 3;
  ASSERT_TRUE(wait_until([&] { return cursor_of(db) >= cursor; }, 60s)) << indexer.log();
}

// The resident set of a process, in KiB.
long rss_kib(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(in, line))
    if (line.rfind("VmRSS:", 0) == 0) return std::stol(line.substr(6));
  return -1;
}

std::size_t count_of(const std::string& text, const std::string& what) {
  std::size_t n = 0;
  for (auto at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) ++n;
  return n;
}

// The broker disappears between batches, for longer than the transaction timeout, while blocks
// keep coming: the indexer stops taking batches (Postgres does not move past what Kafka has),
// says so in the log, keeps its memory, and once the broker is back publishes every block once.
TEST(SinkFaults, BrokerDownLongerThanTheTransactionTimeoutBackPressuresThenResumesWithEachBlockOnce) {
  Chain run;
  std::string db = Postgres::instance().create_database("broker_down");
  Indexer indexer(run.dir.path(), run.anvil, db, run.broker.bootstrap(),
                  {.batch_blocks = 2, .kafka_extra = "transaction_timeout_seconds = 5\n",
                   .pipeline_extra = "sink_retry_initial_ms = 200\nsink_retry_max_ms = 1000\n"});
  ASSERT_NO_FATAL_FAILURE(start_and_confirm(run, indexer, db, 6));
  std::this_thread::sleep_for(500ms);  // the batch in flight, if any, is done
  const std::uint64_t before = cursor_of(db);

  run.broker.set_down();
  mine_transfers(run.anvil, 10, 12);
  ASSERT_TRUE(wait_until([&] { return count_of(indexer.log(), "event=sink_retry sink=kafka") >= 2; }, 30s)) << indexer.log();
  long rss_early = rss_kib(indexer.pid());
  mine_transfers(run.anvil, 10, 13);
  std::this_thread::sleep_for(8s);  // past the 5 s transaction timeout
  long rss_late = rss_kib(indexer.pid());
  EXPECT_TRUE(indexer.running()) << indexer.log();
  EXPECT_EQ(cursor_of(db), before) << "Postgres moved past blocks Kafka does not have";
  EXPECT_LT(rss_late - rss_early, 20 * 1024) << "memory grew by " << (rss_late - rss_early) << " KiB during the outage";

  run.broker.set_up();
  mine_transfers(run.anvil, 4, 14);
  std::uint64_t head = run.anvil.block_number();
  ASSERT_TRUE(wait_until([&] { return cursor_of(db) >= head - 3; }, 120s)) << indexer.log();
  EXPECT_EQ(indexer.stop(SIGTERM), 0) << indexer.log();
  expect_postgres_hashes_equal_anvil(db, run.anvil);
  expect_each_block_published_once(run.broker.consume("anvil.blocks"), db, head - 3);
}

struct InjectedCommitError {
  const char* name;
  std::vector<int> errors;     // answers to the next EndTxn requests
  const char* expected_event;  // what the log must show
  bool commit_completes;       // the same transaction commits in the end (nothing is sent twice)
  std::vector<int> init_errors = {};  // answers to the next InitProducerId requests
};

class CommitErrors : public ::testing::TestWithParam<InjectedCommitError> {};

// Each class of commit error, as librdkafka's transactional contract says: a retriable one
// (the coordinator busy until the commit times out) resumes the same commit, an abortable one
// aborts and sends the batch again, a fatal one rebuilds the producer. In every case the
// indexer goes on and each block reaches Kafka and Postgres once.
TEST_P(CommitErrors, AreHandledByClassAndLoseOrRepeatNothing) {
  const auto& p = GetParam();
  Chain run;
  std::string db = Postgres::instance().create_database(std::string("commit_") + p.name);
  Indexer indexer(run.dir.path(), run.anvil, db, run.broker.bootstrap(),
                  {.batch_blocks = 2, .kafka_extra = "transaction_timeout_seconds = 5\n",
                   .pipeline_extra = "sink_retry_initial_ms = 200\nsink_retry_max_ms = 1000\n"});
  ASSERT_NO_FATAL_FAILURE(start_and_confirm(run, indexer, db, 5, 2));
  run.broker.push_request_errors(kApiEndTxn, p.errors);
  if (!p.init_errors.empty()) run.broker.push_request_errors(kApiInitProducerId, p.init_errors);
  mine_transfers(run.anvil, 8, 21);
  std::uint64_t head = run.anvil.block_number();
  ASSERT_TRUE(wait_until([&] { return cursor_of(db) >= head - 3; }, 120s)) << indexer.log();
  EXPECT_EQ(indexer.stop(SIGTERM), 0) << indexer.log();
  std::string log = indexer.log();
  EXPECT_NE(log.find(p.expected_event), std::string::npos) << log;
  expect_postgres_hashes_equal_anvil(db, run.anvil);
  // The batch whose commit failed, as the log names it: after an abort or a rebuilt producer
  // its first attempt stays visible on the dev broker (see expect_each_block_published_once).
  std::uint64_t from = 1, to = 0;
  if (auto at = log.find("event=sink_retry sink=kafka blocks="); at != std::string::npos && !p.commit_completes) {
    std::sscanf(log.c_str() + at + 35, "%lu-%lu", &from, &to);
    EXPECT_LE(from, to) << log.substr(at, 200);
  }
  expect_each_block_published_once(run.broker.consume("anvil.blocks"), db, head - 3, from, to);
}

INSTANTIATE_TEST_SUITE_P(
    Kafka, CommitErrors,
    ::testing::Values(
        // The coordinator busy for longer than one commit call may block: the commit is resumed.
        InjectedCommitError{"retriable", std::vector<int>(80, RD_KAFKA_RESP_ERR_COORDINATOR_LOAD_IN_PROGRESS),
                            "event=kafka_commit_resumed", true},
        // librdkafka makes an unknown producer id on EndTxn an abortable error.
        InjectedCommitError{"abortable", {RD_KAFKA_RESP_ERR_UNKNOWN_PRODUCER_ID}, "event=kafka_aborted", false},
        // ... and a lost transactional-id authorisation a fatal one that is not a fence.
        InjectedCommitError{"fatal", {RD_KAFKA_RESP_ERR_TRANSACTIONAL_ID_AUTHORIZATION_FAILED}, "the producer is rebuilt", false},
        // A fatal error, and the rebuilt producer's init refused twice as well: no call may
        // ever reach librdkafka with a handle that is not there.
        InjectedCommitError{"fatal_then_init_refused", {RD_KAFKA_RESP_ERR_TRANSACTIONAL_ID_AUTHORIZATION_FAILED},
                            "kafka init transactions", false,
                            {RD_KAFKA_RESP_ERR_TRANSACTIONAL_ID_AUTHORIZATION_FAILED, RD_KAFKA_RESP_ERR_TRANSACTIONAL_ID_AUTHORIZATION_FAILED}}),
    [](const auto& info) { return std::string(info.param.name); });

// A producer that Kafka fenced stops with its own exit code and never recreates itself (which
// would fence the instance that replaced it, and so on, turn by turn).
TEST(SinkFaults, FencedProducerStopsWithItsExitCodeAndDoesNotFightBack) {
  Chain run;
  std::string db = Postgres::instance().create_database("fenced");
  Indexer indexer(run.dir.path(), run.anvil, db, run.broker.bootstrap(), {.batch_blocks = 2});
  ASSERT_NO_FATAL_FAILURE(start_and_confirm(run, indexer, db, 5, 2));
  const std::uint64_t before = cursor_of(db);
  run.broker.push_request_errors(kApiEndTxn, {RD_KAFKA_RESP_ERR_PRODUCER_FENCED});
  mine_transfers(run.anvil, 4, 31);
  auto code = indexer.wait(60s);
  ASSERT_TRUE(code) << "a fenced indexer kept running:\n" << indexer.log();
  EXPECT_EQ(*code, 6) << indexer.log();
  EXPECT_NE(indexer.log().find("producer fenced"), std::string::npos) << indexer.log();
  EXPECT_EQ(count_of(indexer.log(), "init transactions"), 0u) << "the fenced producer was recreated";
  EXPECT_EQ(cursor_of(db), before) << "a fenced instance wrote to Postgres";
}

// A data error can never succeed: the indexer stops at once with its exit code and a message
// that names the block, the table, the column and what the database said, instead of retrying
// the same batch forever.
TEST(SinkFaults, PostgresDataErrorStopsNamingTheBlockTableAndColumn) {
  Chain run;
  std::string db = Postgres::instance().create_database("refused");
  Indexer indexer(run.dir.path(), run.anvil, db, run.broker.bootstrap(), {.batch_blocks = 1});
  ASSERT_NO_FATAL_FAILURE(start_and_confirm(run, indexer, db, 5, 2));
  std::this_thread::sleep_for(300ms);
  std::uint64_t cursor = cursor_of(db);
  {
    // The operator's own rule, which the next blocks break: no block uses more than 1 gas.
    pqxx::connection c(db);
    pqxx::work tx(c);
    tx.exec0("ALTER TABLE anvil.blocks ADD CONSTRAINT tiny_blocks CHECK (gas_used <= 1) NOT VALID");
    tx.commit();
  }
  mine_transfers(run.anvil, 5, 51);
  auto code = indexer.wait(60s);
  ASSERT_TRUE(code) << "the indexer retried a batch that can never be written:\n" << indexer.log();
  EXPECT_EQ(*code, 7) << indexer.log();
  std::string log = indexer.log();
  std::uint64_t refused_block = cursor_of(db) + 1;
  EXPECT_NE(log.find("table anvil.blocks"), std::string::npos) << log;
  EXPECT_NE(log.find("column gas_used"), std::string::npos) << log;
  EXPECT_NE(log.find("tiny_blocks"), std::string::npos) << log;
  EXPECT_NE(log.find("block " + std::to_string(refused_block)), std::string::npos) << log;
  EXPECT_EQ(count_of(log, "event=sink_retry sink=postgres"), 0u) << "retried: " << log;
  EXPECT_GE(cursor_of(db), cursor);
  // One event per line: libpq's ERROR / DETAIL / CONTEXT lines are joined into the event's.
  std::istringstream lines(log);
  for (std::string line; std::getline(lines, line);)
    EXPECT_EQ(line.rfind("20", 0), 0u) << "a log line that is not an event: " << line;
}

// SIGTERM while Postgres is down cannot commit the batch in flight: the exit code says so, and
// the log names the blocks the next start will write.
TEST(SinkFaults, StopDuringAPostgresOutageExitsWithItsCodeNamingTheBlocksLeft) {
  Chain run;
  std::string db = Postgres::instance().create_database("stop_uncommitted");
  Indexer indexer(run.dir.path(), run.anvil, db, run.broker.bootstrap(), {.batch_blocks = 2});
  ASSERT_NO_FATAL_FAILURE(start_and_confirm(run, indexer, db, 6, 2));
  Postgres::instance().stop();
  mine_transfers(run.anvil, 4, 61);
  ASSERT_TRUE(wait_until([&] { return indexer.log().find("event=sink_retry sink=postgres") != std::string::npos; }, 60s))
      << indexer.log();
  int code = indexer.stop(SIGTERM);
  Postgres::instance().start();
  EXPECT_EQ(code, 5) << indexer.log();
  EXPECT_NE(indexer.log().find("the next start writes them from the cursor"), std::string::npos) << indexer.log();
  // And the next start does.
  indexer.start();
  mine_transfers(run.anvil, 3, 62);
  std::uint64_t head = run.anvil.block_number();
  ASSERT_TRUE(wait_until([&] { return cursor_of(db) >= head - 3; }, 60s)) << indexer.log();
  EXPECT_EQ(indexer.stop(SIGTERM), 0) << indexer.log();
  expect_postgres_hashes_equal_anvil(db, run.anvil);
}

// Postgres crashes and comes back without its newest commits, as it does under asynchronous
// commit (`options=-c synchronous_commit=off` in the URL, the documented way to take the disk
// flush off the live path) or after a failover to a replica that lagged. The indexer, still
// running, finds the stored cursor behind what it wrote, goes back to it and writes the lost
// blocks again; Kafka, which has them, gets none of them twice.
TEST(SinkFaults, PostgresThatLostItsNewestCommitsIsWrittenAgainFromItsCursorWithNoKafkaDuplicate) {
  Chain run;
  std::string db = Postgres::instance().create_database("lost_commits");
  {
    // Asynchronous commits reach the disk only when the WAL writer wakes: make that rare, and
    // keep the background writer from flushing the WAL on its behalf.
    pqxx::connection c(db);
    pqxx::nontransaction tx(c);
    tx.exec("ALTER SYSTEM SET wal_writer_delay = '10s'");
    tx.exec("ALTER SYSTEM SET bgwriter_lru_maxpages = 0");
    tx.exec("SELECT pg_reload_conf()");
  }
  Indexer indexer(run.dir.path(), run.anvil, db + "?options=-c%20synchronous_commit%3Doff", run.broker.bootstrap(), {.batch_blocks = 2});
  ASSERT_NO_FATAL_FAILURE(start_and_confirm(run, indexer, db, 4));
  // Let what was written so far reach the disk (a checkpoint flushes the WAL), write more, crash.
  // The WAL writer flushes everything once wal_writer_delay (10 s at most) has passed since its
  // last flush: on a loaded machine the writes can take that long and the crash loses nothing,
  // which leaves nothing to test. Then the crash is tried again, a few times at most.
  std::uint64_t flushed = 0, before = 0, after = 0;
  for (int attempt = 0; attempt < 4; ++attempt) {
    { pqxx::connection c(db); pqxx::nontransaction(c).exec("CHECKPOINT"); }
    flushed = cursor_of(db);
    mine_transfers(run.anvil, 4, 71 + 10 * attempt);
    const std::uint64_t target = run.anvil.block_number() - 3;
    ASSERT_TRUE(wait_until([&] { return cursor_of(db) >= target; }, 60s)) << indexer.log();
    before = cursor_of(db);
    Postgres::instance().crash();
    Postgres::instance().start();
    after = cursor_of(db);
    if (after < before) break;
  }
  ASSERT_LT(after, before) << "four crashes lost no commit: this test's premise (asynchronous commit) does not hold";
  EXPECT_GE(after, flushed);
  mine_transfers(run.anvil, 3, 72);
  const std::uint64_t head = run.anvil.block_number();
  ASSERT_TRUE(wait_until([&] { return cursor_of(db) >= head - 3; }, 60s)) << indexer.log();
  EXPECT_EQ(indexer.stop(SIGTERM), 0) << indexer.log();
  EXPECT_NE(indexer.log().find("event=cursor_rewound stored_cursor=" + std::to_string(after)), std::string::npos) << indexer.log();
  expect_postgres_hashes_equal_anvil(db, run.anvil);
  std::multiset<std::string> published;
  for (const auto& m : run.broker.consume("anvil.blocks")) published.insert(m.substr(m.find("\"block_hash\"")));
  EXPECT_EQ(published.size(), head - 3 + 1) << "a block is missing or published twice";
  for (const auto& h : published) EXPECT_EQ(published.count(h), 1u) << h;
}

}  // namespace
}  // namespace chainidx::testing

// High availability: two `chainidx run` processes with the same config against one Postgres and
// one broker. One leads and writes; the other waits as a hot standby and takes over when the
// leader is killed, paused past its lease, or loses its database session; a replaced leader that
// wakes up writes nothing and stops with the fenced exit code. Real anvil, Postgres and the dev
// broker; the leader is paused with SIGSTOP, its session cut with pg_terminate_backend.

#include <gtest/gtest.h>
#include <pqxx/pqxx>

#include <csignal>
#include <string>

#include "chain_checks.hpp"
#include "harness.hpp"

namespace chainidx::testing {
namespace {

struct Writer {
  std::string instance;
  std::int64_t epoch = 0;
  int backend_pid = 0;
};

Writer writer_of(const std::string& db) {
  pqxx::connection c(db);
  pqxx::read_transaction tx(c);
  auto r = tx.exec1("SELECT w.instance, w.epoch, coalesce(l.backend_pid, 0) FROM anvil.writer w LEFT JOIN anvil.writer_lease l ON true");
  return {r[0].as<std::string>(), r[1].as<std::int64_t>(), r[2].as<int>()};
}

void terminate_backend(const std::string& db, int pid) {
  pqxx::connection c(db);
  pqxx::nontransaction tx(c);
  tx.exec1("SELECT pg_terminate_backend(" + std::to_string(pid) + ", 5000)");
}

std::string status_of(const Indexer& indexer) { return http_request(indexer.ops_port(), "GET", "/status").body; }

bool has(const std::string& text, const std::string& what) { return text.find(what) != std::string::npos; }

Indexer::Options ha_options(int lease_seconds) {
  Indexer::Options o;
  o.batch_blocks = 2;
  o.extra_tables = "[ha]\nlease_seconds = " + std::to_string(lease_seconds) + "\n";
  return o;
}

// The leader indexes up to head - 3; then the standby starts and says it stands by.
void lead_then_stand_by(TestChain& run, const std::string& db, Indexer& leader, Indexer& standby) {
  leader.start();
  mine_transfers(run.anvil, 5);
  const std::uint64_t head = run.anvil.block_number();
  ASSERT_TRUE(wait_until([&] { return cursor_of(db) >= head - 3; }, 60s)) << leader.log();
  standby.start();
  ASSERT_TRUE(wait_until([&] { return has(status_of(standby), "\"role\":\"standby\""); }, 60s)) << standby.log();
  ASSERT_TRUE(has(standby.log(), "event=standby")) << standby.log();
}

// Mines `rounds` more blocks and waits until `db`'s cursor is at head - 3.
void mine_and_confirm(TestChain& run, const std::string& db, int rounds, unsigned seed, const Indexer& writer) {
  mine_transfers(run.anvil, rounds, seed);
  const std::uint64_t head = run.anvil.block_number();
  ASSERT_TRUE(wait_until([&] { return cursor_of(db) >= head - 3; }, 60s)) << writer.log();
}

void expect_chain_exact(TestChain& run, const std::string& db) {
  expect_postgres_hashes_equal_anvil(db, run.anvil);
  expect_each_block_published_once(run.broker.consume("anvil.blocks"), db, cursor_of(db));
}

// The standby answers the probes as a standby (healthy and ready: it can take over), /status and
// /metrics tell it from the leader, and it writes nothing while the leader lives. When the leader
// is killed (kill -9) or stopped (SIGTERM, as a rolling update does), the lock it held goes with
// its session and the standby takes over at its next look, long before the leader's lease (60 s
// here) could have run out; it goes on from the cursor with nothing lost or published twice.
class LeaderGone : public ::testing::TestWithParam<int> {};

TEST_P(LeaderGone, StandbyTakesOverAtOnce) {
  const int sig = GetParam();
  TestChain run;
  const std::string db = Postgres::instance().create_database("ha_killed");
  Indexer leader(run.dir.path(), run.anvil, db, run.broker.bootstrap(), ha_options(60));
  TempDir standby_dir;
  Indexer standby(standby_dir.path(), run.anvil, db, run.broker.bootstrap(), ha_options(60));
  ASSERT_NO_FATAL_FAILURE(lead_then_stand_by(run, db, leader, standby));

  const Writer first = writer_of(db);
  EXPECT_EQ(first.epoch, 1);
  const std::string leader_status = status_of(leader);
  EXPECT_TRUE(has(leader_status, "\"role\":\"leader\"")) << leader_status;
  EXPECT_TRUE(has(leader_status, "\"epoch\":1")) << leader_status;
  const std::string standby_status = status_of(standby);
  EXPECT_TRUE(has(standby_status, "\"leader\":\"leader " + first.instance + " (")) << standby_status;
  auto ready = http_request(standby.ops_port(), "GET", "/readyz");
  EXPECT_EQ(ready.status, 200);
  EXPECT_EQ(ready.body.rfind("standby: ready to take over; leader " + first.instance, 0), 0u) << ready.body;
  auto healthy = http_request(standby.ops_port(), "GET", "/healthz");
  EXPECT_EQ(healthy.status, 200);
  EXPECT_EQ(healthy.body.rfind("standby: ", 0), 0u) << healthy.body;
  EXPECT_EQ(http_request(leader.ops_port(), "GET", "/readyz").status, 200);
  EXPECT_TRUE(has(http_request(leader.ops_port(), "GET", "/metrics").body, "chainidx_leader{chain=\"anvil\"} 1"));
  EXPECT_TRUE(has(http_request(standby.ops_port(), "GET", "/metrics").body, "chainidx_leader{chain=\"anvil\"} 0"));

  ASSERT_NO_FATAL_FAILURE(mine_and_confirm(run, db, 4, 21, leader));
  EXPECT_FALSE(has(standby.log(), "event=confirmed")) << "the standby wrote while the leader lived:\n" << standby.log();
  EXPECT_FALSE(has(standby.log(), "init transactions")) << "the standby started a producer (it would fence the leader's)";

  const auto killed_at = std::chrono::steady_clock::now();
  EXPECT_EQ(leader.stop(sig), sig == SIGKILL ? 128 + SIGKILL : 0) << leader.log();
  ASSERT_TRUE(wait_until([&] { return has(standby.log(), "event=leader "); }, 60s)) << standby.log();
  const auto took = std::chrono::steady_clock::now() - killed_at;
  EXPECT_LT(took, 30s) << "the standby waited for the dead leader's lease instead of taking the lock it left";
  EXPECT_EQ(writer_of(db).epoch, 2);

  ASSERT_NO_FATAL_FAILURE(mine_and_confirm(run, db, 4, 22, standby));
  const std::string now_status = status_of(standby);
  EXPECT_TRUE(has(now_status, "\"role\":\"leader\"")) << now_status;
  EXPECT_TRUE(has(now_status, "\"epoch\":2")) << now_status;
  EXPECT_EQ(standby.stop(SIGTERM), 0) << standby.log();
  expect_chain_exact(run, db);
}

INSTANTIATE_TEST_SUITE_P(HighAvailability, LeaderGone, ::testing::Values(SIGKILL, SIGTERM),
                         [](const auto& info) { return std::string(info.param == SIGKILL ? "Killed" : "Stopped"); });

// A paused leader (SIGSTOP) keeps its sessions, its advisory lock and the row locks of its open
// transaction. Once its lease runs out, the standby terminates those sessions, takes over under
// a new epoch and goes on. When the old leader wakes (SIGCONT), it writes nothing more (its
// transactions fail the epoch check, its producer is fenced) and stops with exit code 6.
TEST(HighAvailability, PausedLeaderIsReplacedAfterItsLeaseAndWritesNothingWhenItWakes) {
  TestChain run;
  const std::string db = Postgres::instance().create_database("ha_paused");
  Indexer leader(run.dir.path(), run.anvil, db, run.broker.bootstrap(), ha_options(3));
  TempDir standby_dir;
  Indexer standby(standby_dir.path(), run.anvil, db, run.broker.bootstrap(), ha_options(3));
  ASSERT_NO_FATAL_FAILURE(lead_then_stand_by(run, db, leader, standby));
  ASSERT_NO_FATAL_FAILURE(mine_and_confirm(run, db, 3, 31, leader));
  std::this_thread::sleep_for(500ms);  // its last "event=confirmed" is in its log

  const std::size_t log_at_pause = leader.log().size();
  ASSERT_EQ(::kill(leader.pid(), SIGSTOP), 0);
  const auto paused_at = std::chrono::steady_clock::now();
  mine_transfers(run.anvil, 3, 32);
  ASSERT_TRUE(wait_until([&] { return has(standby.log(), "event=leader "); }, 60s)) << standby.log();
  EXPECT_GE(std::chrono::steady_clock::now() - paused_at, 2s) << "the standby took over before the paused leader's lease ran out";
  const std::string taken = standby.log();
  EXPECT_TRUE(has(taken, "event=leader_session_terminated")) << taken;
  EXPECT_TRUE(has(taken, "event=writer_session_terminated")) << taken;
  EXPECT_EQ(writer_of(db).epoch, 2);
  ASSERT_NO_FATAL_FAILURE(mine_and_confirm(run, db, 3, 33, standby));

  ASSERT_EQ(::kill(leader.pid(), SIGCONT), 0);
  auto code = leader.wait(60s);
  ASSERT_TRUE(code) << "the replaced leader kept running after it woke:\n" << leader.log();
  EXPECT_EQ(*code, 6) << leader.log();
  const std::string after = leader.log().substr(log_at_pause);
  EXPECT_FALSE(has(after, "event=confirmed")) << "the replaced leader wrote after it woke:\n" << after;
  EXPECT_TRUE(has(after, "another instance leads chain anvil") || has(after, "fenced")) << after;

  ASSERT_NO_FATAL_FAILURE(mine_and_confirm(run, db, 3, 34, standby));
  EXPECT_EQ(standby.stop(SIGTERM), 0) << standby.log();
  expect_chain_exact(run, db);
}

// The leader's lease session is cut (a network fault, a database restart, an administrator): the
// lock goes with it, the standby takes it at its next look (the lease, 30 s, has not run out),
// and the old leader learns at its next renewal that another instance leads: it stops with exit
// code 6 and writes nothing more.
TEST(HighAvailability, LeaderThatLosesItsDatabaseSessionIsReplacedByTheStandby) {
  TestChain run;
  const std::string db = Postgres::instance().create_database("ha_session");
  Indexer leader(run.dir.path(), run.anvil, db, run.broker.bootstrap(), ha_options(30));
  TempDir standby_dir;
  Indexer standby(standby_dir.path(), run.anvil, db, run.broker.bootstrap(), ha_options(30));
  ASSERT_NO_FATAL_FAILURE(lead_then_stand_by(run, db, leader, standby));

  terminate_backend(db, writer_of(db).backend_pid);
  ASSERT_TRUE(wait_until([&] { return has(standby.log(), "event=leader "); }, 30s)) << standby.log();
  EXPECT_EQ(writer_of(db).epoch, 2);
  auto code = leader.wait(60s);
  ASSERT_TRUE(code) << "the replaced leader kept running:\n" << leader.log();
  EXPECT_EQ(*code, 6) << leader.log();
  EXPECT_TRUE(has(leader.log(), "event=leadership_lost") || has(leader.log(), "another instance leads chain anvil")) << leader.log();

  ASSERT_NO_FATAL_FAILURE(mine_and_confirm(run, db, 4, 41, standby));
  EXPECT_EQ(standby.stop(SIGTERM), 0) << standby.log();
  expect_chain_exact(run, db);
}

// A lone leader whose lease session is cut takes the lock again on a new session at its next
// renewal and keeps leading under the same epoch: a database blip is not a takeover.
TEST(HighAvailability, LoneLeaderWhoseSessionWasCutKeepsLeadingUnderItsEpoch) {
  TestChain run;
  const std::string db = Postgres::instance().create_database("ha_lone");
  Indexer leader(run.dir.path(), run.anvil, db, run.broker.bootstrap(), ha_options(3));
  leader.start();
  ASSERT_NO_FATAL_FAILURE(mine_and_confirm(run, db, 4, 51, leader));
  const Writer before = writer_of(db);
  terminate_backend(db, before.backend_pid);
  ASSERT_TRUE(wait_until([&] { return has(leader.log(), "event=leader_lease_session_renewed"); }, 30s)) << leader.log();
  const Writer after = writer_of(db);
  EXPECT_EQ(after.epoch, before.epoch);
  EXPECT_EQ(after.instance, before.instance);
  EXPECT_NE(after.backend_pid, before.backend_pid);
  ASSERT_NO_FATAL_FAILURE(mine_and_confirm(run, db, 4, 52, leader));
  EXPECT_TRUE(leader.running());
  EXPECT_EQ(leader.stop(SIGTERM), 0) << leader.log();
  expect_chain_exact(run, db);
}

}  // namespace
}  // namespace chainidx::testing

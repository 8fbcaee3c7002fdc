#include "app/config.hpp"
#include "schema/redact.hpp"

#include <gtest/gtest.h>

#include <cstdio>
#include <cstdlib>
#include <map>

#include <sys/stat.h>

#include <unistd.h>

namespace chainidx::app {
namespace {

const std::string kGood = R"(
[chain]
name = "anvil"
chain_id = 31337
confirmations = 12
start_block = 0

[[chain.endpoints]]
ws = "ws://127.0.0.1:8545"
http = "http://127.0.0.1:8545/${API_KEY}"
requests_per_second = 50
burst = 100

[postgres]
url = "postgresql://127.0.0.1:5432/chainidx"

[kafka]
brokers = "127.0.0.1:9092"

[server]
listen = "127.0.0.1:9464"
)";

EnvLookup env_with(std::map<std::string, std::string> vars) {
  return [vars](const std::string& name) -> std::optional<std::string> {
    auto it = vars.find(name);
    if (it == vars.end()) return std::nullopt;
    return it->second;
  };
}

std::string replace(std::string s, const std::string& from, const std::string& to) {
  auto at = s.find(from);
  EXPECT_NE(at, std::string::npos) << from;
  s.replace(at, from.size(), to);
  return s;
}

TEST(Config, GoodFileParsesWithEnvironmentSubstitution) {
  auto c = parse_config(kGood, "good.toml", env_with({{"API_KEY", "s3cr3tkey"}}));
  ASSERT_TRUE(c.ok()) << c.error().message;
  EXPECT_EQ(c->chain.name, "anvil");
  EXPECT_EQ(c->chain.chain_id, 31337u);
  EXPECT_EQ(c->chain.confirmations, 12u);
  ASSERT_EQ(c->chain.endpoints.size(), 1u);
  EXPECT_EQ(c->chain.endpoints[0].http, "http://127.0.0.1:8545/s3cr3tkey");
  EXPECT_EQ(c->chain.endpoints[0].burst, 100u);
  EXPECT_EQ(c->kafka.brokers, "127.0.0.1:9092");
  EXPECT_EQ(c->server.listen, "127.0.0.1:9464");
}

struct BadCase {
  std::string name;
  std::string text;
  std::vector<std::string> must_mention;  // the key, and words of the fix
};

TEST(Config, EachBadFileGetsAnErrorNamingTheKeyAndTheFix) {
  auto env = env_with({{"API_KEY", "k"}});
  std::vector<BadCase> cases = {
      {"missing required key", replace(kGood, "chain_id = 31337\n", ""), {"chain.chain_id", "missing", "add chain_id"}},
      {"missing section", replace(kGood, "[postgres]\nurl = \"postgresql://127.0.0.1:5432/chainidx\"\n", ""), {"postgres", "missing section"}},
      {"unknown key", replace(kGood, "confirmations = 12", "confirmations = 12\nconfirmation = 3"), {"chain.confirmation", "unknown key", "confirmations"}},
      {"unknown section", kGood + "\n[kafak]\nbrokers = \"x\"\n", {"kafak", "unknown key", "kafka"}},
      {"wrong type (string for int)", replace(kGood, "chain_id = 31337", "chain_id = \"31337\""), {"chain.chain_id", "expected an integer"}},
      {"wrong type (int for string)", replace(kGood, "name = \"anvil\"", "name = 5"), {"chain.name", "expected a string"}},
      {"bad ws URL scheme", replace(kGood, "ws = \"ws://127.0.0.1:8545\"", "ws = \"http://127.0.0.1:8545\""), {"chain.endpoints[0].ws", "scheme must be ws:// or wss://"}},
      {"bad http URL", replace(kGood, "http = \"http://127.0.0.1:8545/${API_KEY}\"", "http = \"127.0.0.1:8545\""), {"chain.endpoints[0].http", "not a valid URL"}},
      {"bad postgres URL", replace(kGood, "postgresql://127.0.0.1:5432/chainidx", "mysql://x/y"), {"postgres.url", "scheme"}},
      {"confirmations zero", replace(kGood, "confirmations = 12", "confirmations = 0"), {"chain.confirmations", "between 1 and 10000", "got 0"}},
      {"confirmations too big", replace(kGood, "confirmations = 12", "confirmations = 100000"), {"chain.confirmations", "between 1 and 10000"}},
      {"negative start block", replace(kGood, "start_block = 0", "start_block = -5"), {"chain.start_block"}},
      {"bad chain name", replace(kGood, "name = \"anvil\"", "name = \"My Chain\""), {"chain.name", "lower-case"}},
      {"no endpoints", replace(replace(replace(replace(kGood, "[[chain.endpoints]]\n", ""), "ws = \"ws://127.0.0.1:8545\"\n", ""), "http = \"http://127.0.0.1:8545/${API_KEY}\"\n", ""), "requests_per_second = 50\nburst = 100\n", ""), {"chain.endpoints", "missing"}},
      {"unset env var", replace(kGood, "${API_KEY}", "${NOT_SET_ANYWHERE}"), {"chain.endpoints[0].http", "NOT_SET_ANYWHERE", "export"}},
      {"bad broker list", replace(kGood, "brokers = \"127.0.0.1:9092\"", "brokers = \"127.0.0.1\""), {"kafka.brokers", "host:port"}},
      {"bad listen", replace(kGood, "listen = \"127.0.0.1:9464\"", "listen = \"localhost:99999\""), {"server.listen"}},
      {"verify flag not a boolean", replace(kGood, "start_block = 0", "start_block = 0\nverify_block_hash = \"yes\""), {"chain.verify_block_hash", "true or false"}},
      {"stall timeout zero", replace(kGood, "start_block = 0", "start_block = 0\nhead_stall_timeout_seconds = 0"), {"chain.head_stall_timeout_seconds", "between 1 and 86400"}},
      {"circuit never opens", replace(kGood, "start_block = 0", "start_block = 0\ncircuit_failures = 0"), {"chain.circuit_failures", "between 1 and 1000", "circuit breaker"}},
      {"circuit cool-down zero", replace(kGood, "start_block = 0", "start_block = 0\ncircuit_cooldown_seconds = 0"), {"chain.circuit_cooldown_seconds", "probe"}},
      {"lag limit zero", replace(kGood, "start_block = 0", "start_block = 0\nendpoint_max_lag_blocks = 0"), {"chain.endpoint_max_lag_blocks", "between 1 and 100000"}},
      {"verify with more endpoints than there are", replace(kGood, "start_block = 0", "start_block = 0\nverify_with = 1"), {"chain.verify_with", "add endpoints, or set 0"}},
      {"unknown block tag", replace(kGood, "confirmations = 12", "confirmations = \"latest\""), {"chain.confirmations", "unknown block tag", "\"safe\" / \"finalized\""}},
      {"re-poll of no block", replace(kGood, "start_block = 0", "start_block = 0\nrepoll_blocks = 0"), {"chain.repoll_blocks", "between 1 and 10000"}},
      {"block interval negative", replace(kGood, "start_block = 0", "start_block = 0\nblock_interval_ms = -1"), {"chain.block_interval_ms", "0 to learn it"}},
      {"unreadable CA file", replace(kGood, "start_block = 0", "start_block = 0\ntls_ca_file = \"/nonexistent/ca.pem\""), {"chain.tls_ca_file", "cannot read"}},
      {"rate zero", replace(kGood, "requests_per_second = 50", "requests_per_second = 0"), {"requests_per_second"}},
      {"syntax error", replace(kGood, "[postgres]", "[postgres"), {"TOML syntax error", "bad.toml:"}},
  };
  for (const auto& c : cases) {
    auto r = parse_config(c.text, "bad.toml", env);
    ASSERT_FALSE(r.ok()) << c.name << ": accepted";
    for (const auto& word : c.must_mention)
      EXPECT_NE(r.error().message.find(word), std::string::npos) << c.name << ": \"" << r.error().message << "\" lacks \"" << word << "\"";
  }
}

TEST(Config, OptionalChainKeysParse) {
  char path[] = "/tmp/chainidx-ca-XXXXXX";
  int fd = mkstemp(path);
  ASSERT_GE(fd, 0);
  close(fd);
  auto c = parse_config(replace(kGood, "start_block = 0", std::string("start_block = 0\nverify_block_hash = false\n") +
                                                          "head_stall_timeout_seconds = 300\ntls_ca_file = \"" + path + "\""),
                        "opt.toml", env_with({{"API_KEY", "k"}}));
  unlink(path);
  ASSERT_TRUE(c.ok()) << c.error().message;
  EXPECT_FALSE(c->chain.verify_block_hash);
  EXPECT_EQ(c->chain.head_stall_timeout_seconds, 300u);
  EXPECT_EQ(c->chain.tls_ca_file, path);
}

// Every error path that shows a key's value, fed a bad value from the environment: the message
// names the key and says the value came from a substitution, and never holds the value itself.
TEST(Config, ErrorMessagesDoNotEchoSubstitutedSecrets) {
  const std::string secret = "Zq9vX2topsecretK3y";
  struct Case {
    std::string name, from, to;
    std::string key;
  };
  std::vector<Case> cases = {
      {"broker list", "brokers = \"127.0.0.1:9092\"", "brokers = \"${SECRET}\"", "kafka.brokers"},
      {"broker list, part", "brokers = \"127.0.0.1:9092\"", "brokers = \"127.0.0.1:9092,${SECRET}\"", "kafka.brokers"},
      {"listen address", "listen = \"127.0.0.1:9464\"", "listen = \"${SECRET}\"", "server.listen"},
      {"chain name", "name = \"anvil\"", "name = \"${SECRET}\"", "chain.name"},
      {"reorg policy", "start_block = 0", "start_block = 0\ndeep_reorg_policy = \"${SECRET}\"", "chain.deep_reorg_policy"},
      {"CA file", "start_block = 0", "start_block = 0\ntls_ca_file = \"/nonexistent/${SECRET}.pem\"", "chain.tls_ca_file"},
      {"endpoint name", "ws = \"ws://127.0.0.1:8545\"", "name = \"bad name ${SECRET}\"\nws = \"ws://127.0.0.1:8545\"", "chain.endpoints[0].name"},
      {"endpoint URL", "http = \"http://127.0.0.1:8545/${API_KEY}\"", "http = \"${SECRET}\"", "chain.endpoints[0].http"},
      {"postgres URL", "postgresql://127.0.0.1:5432/chainidx", "${SECRET}", "postgres.url"},
  };
  for (const auto& c : cases) {
    auto r = parse_config(replace(kGood, c.from, c.to), "f.toml", env_with({{"API_KEY", "k"}, {"SECRET", secret}}));
    ASSERT_FALSE(r.ok()) << c.name << ": accepted";
    EXPECT_NE(r.error().message.find(c.key), std::string::npos) << c.name << ": " << r.error().message;
    EXPECT_EQ(r.error().message.find("topsecret"), std::string::npos) << c.name << ": secret echoed: " << r.error().message;
  }
  // Without a substitution the value is shown, so that a typo can be seen.
  auto r = parse_config(replace(kGood, "brokers = \"127.0.0.1:9092\"", "brokers = \"localhost\""), "f.toml", env_with({{"API_KEY", "k"}}));
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message.find("\"localhost\""), std::string::npos) << r.error().message;
}

TEST(Config, NewUserMistakesAreRefusedOrAccepted) {
  auto env = env_with({{"API_KEY", "k"}});
  auto empty_brokers = parse_config(replace(kGood, "brokers = \"127.0.0.1:9092\"", "brokers = \"\""), "f.toml", env);
  ASSERT_FALSE(empty_brokers.ok());
  EXPECT_NE(empty_brokers.error().message.find("kafka.brokers: is empty"), std::string::npos) << empty_brokers.error().message;
  // The documented example has tls_ca_file = "" (no extra CA): that is valid.
  auto empty_ca = parse_config(replace(kGood, "start_block = 0", "start_block = 0\ntls_ca_file = \"\""), "f.toml", env);
  ASSERT_TRUE(empty_ca.ok()) << empty_ca.error().message;
  EXPECT_EQ(empty_ca->chain.tls_ca_file, "");
  auto big_chain_id = parse_config(replace(kGood, "chain_id = 31337", "chain_id = 9007199254740992"), "f.toml", env);
  ASSERT_FALSE(big_chain_id.ok()) << "chain ids travel as JSON numbers: 2^53 is refused";
}

TEST(Config, TimeoutsAndBackoffKeysParseWithDefaults) {
  auto env = env_with({{"API_KEY", "k"}});
  for (const char* tag : {"safe", "finalized"}) {
    auto t = parse_config(replace(kGood, "confirmations = 12", std::string("confirmations = \"") + tag + "\""), "f.toml", env);
    ASSERT_TRUE(t.ok()) << t.error().message;
    EXPECT_EQ(t->chain.confirm_tag, tag);
    EXPECT_EQ(t->chain.confirmations, kMaxConfirmations) << "the depth is only the buffer's ceiling";
  }
  auto d = parse_config(kGood, "f.toml", env);
  ASSERT_TRUE(d.ok()) << d.error().message;
  EXPECT_EQ(d->chain.confirm_tag, "");
  EXPECT_EQ(d->chain.ws_ping_interval_seconds, 10u);
  EXPECT_EQ(d->chain.ws_handshake_timeout_seconds, 10u);
  EXPECT_EQ(d->chain.http_timeout_seconds, 15u);
  EXPECT_EQ(d->chain.retry_after_max_seconds, 60u);
  EXPECT_EQ(d->chain.backoff_initial_ms, 200u);
  EXPECT_EQ(d->chain.backoff_max_ms, 30000u);
  EXPECT_EQ(d->kafka.transaction_timeout_seconds, 60u);
  EXPECT_EQ(d->pipeline.sink_retry_initial_ms, 500u);
  EXPECT_EQ(d->pipeline.sink_retry_max_ms, 30000u);
  EXPECT_EQ(d->chain.circuit_failures, 5u);
  EXPECT_EQ(d->chain.circuit_cooldown_seconds, 60u);
  EXPECT_EQ(d->chain.endpoint_max_lag_blocks, 5u);
  EXPECT_EQ(d->chain.block_interval_ms, 0u);
  EXPECT_EQ(d->chain.repoll_interval_seconds, 60u);
  EXPECT_EQ(d->chain.repoll_blocks, 64u);
  auto c = parse_config(replace(replace(replace(kGood, "start_block = 0",
                                                "start_block = 0\nws_ping_interval_seconds = 3\nhttp_timeout_seconds = 5\n"
                                                "retry_after_max_seconds = 7\nbackoff_initial_ms = 50\nbackoff_max_ms = 900\n"
                                                "circuit_failures = 3\ncircuit_cooldown_seconds = 20\nendpoint_max_lag_blocks = 8\n"
                                                "block_interval_ms = 12000"),
                                        "[kafka]\n", "[kafka]\ntransaction_timeout_seconds = 12\n"),
                                "ws = \"ws://127.0.0.1:8545\"", "name = \"local-anvil\"\nws = \"ws://127.0.0.1:8545\""),
                        "f.toml", env);
  ASSERT_TRUE(c.ok()) << c.error().message;
  EXPECT_EQ(c->chain.ws_ping_interval_seconds, 3u);
  EXPECT_EQ(c->chain.http_timeout_seconds, 5u);
  EXPECT_EQ(c->chain.retry_after_max_seconds, 7u);
  EXPECT_EQ(c->chain.backoff_initial_ms, 50u);
  EXPECT_EQ(c->chain.backoff_max_ms, 900u);
  EXPECT_EQ(c->chain.circuit_failures, 3u);
  EXPECT_EQ(c->chain.circuit_cooldown_seconds, 20u);
  EXPECT_EQ(c->chain.endpoint_max_lag_blocks, 8u);
  EXPECT_EQ(c->chain.block_interval_ms, 12000u);
  EXPECT_EQ(c->kafka.transaction_timeout_seconds, 12u);
  EXPECT_EQ(c->chain.endpoints[0].name, "local-anvil");
  auto bad = parse_config(replace(kGood, "start_block = 0", "start_block = 0\nbackoff_initial_ms = 500\nbackoff_max_ms = 100"), "f.toml", env);
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.error().message.find("chain.backoff_max_ms"), std::string::npos) << bad.error().message;
  auto ping0 = parse_config(replace(kGood, "start_block = 0", "start_block = 0\nws_ping_interval_seconds = 0"), "f.toml", env);
  ASSERT_FALSE(ping0.ok());
  EXPECT_NE(ping0.error().message.find("chain.ws_ping_interval_seconds"), std::string::npos) << ping0.error().message;
}

TEST(Config, EndpointPresetsSetTheProvidersLimitsAndExplicitKeysWin) {
  auto env = env_with({{"API_KEY", "k"}});
  const std::string bare = replace(kGood, "requests_per_second = 50\nburst = 100\n", "");
  auto d = parse_config(bare, "f.toml", env);
  ASSERT_TRUE(d.ok()) << d.error().message;
  EXPECT_EQ(d->chain.endpoints[0].requests_per_second, 50);
  EXPECT_EQ(d->chain.endpoints[0].burst, 100u);
  EXPECT_EQ(d->chain.endpoints[0].max_in_flight, 4u);
  struct Want {
    const char* preset;
    double rate;
    std::uint32_t burst, in_flight;
  };
  for (const Want& w : {Want{"alchemy", 25, 100, 10}, Want{"infura", 10, 50, 5}, Want{"quicknode", 15, 60, 8}, Want{"public", 5, 10, 3}}) {
    auto c = parse_config(replace(bare, "ws = ", std::string("preset = \"") + w.preset + "\"\nws = "), "f.toml", env);
    ASSERT_TRUE(c.ok()) << w.preset << ": " << c.error().message;
    const auto& e = c->chain.endpoints[0];
    EXPECT_EQ(e.preset, w.preset);
    EXPECT_EQ(e.requests_per_second, w.rate) << w.preset;
    EXPECT_EQ(e.burst, w.burst) << w.preset;
    EXPECT_EQ(e.max_in_flight, w.in_flight) << w.preset;
  }
  // A paid plan: the preset, with its own rate; the rest from the preset.
  auto paid = parse_config(replace(bare, "ws = ", "preset = \"alchemy\"\nrequests_per_second = 300\nws = "), "f.toml", env);
  ASSERT_TRUE(paid.ok()) << paid.error().message;
  EXPECT_EQ(paid->chain.endpoints[0].requests_per_second, 300);
  EXPECT_EQ(paid->chain.endpoints[0].burst, 100u);
  EXPECT_EQ(paid->chain.endpoints[0].max_in_flight, 10u);
  auto unknown = parse_config(replace(bare, "ws = ", "preset = \"alchemey\"\nws = "), "f.toml", env);
  ASSERT_FALSE(unknown.ok());
  for (const char* word : {"chain.endpoints[0].preset", "alchemey", "\"alchemy\"", "max_in_flight"})
    EXPECT_NE(unknown.error().message.find(word), std::string::npos) << unknown.error().message;
  auto zero = parse_config(replace(bare, "ws = ", "max_in_flight = 0\nws = "), "f.toml", env);
  ASSERT_FALSE(zero.ok());
  EXPECT_NE(zero.error().message.find("chain.endpoints[0].max_in_flight"), std::string::npos) << zero.error().message;
}

TEST(Config, HistoryAndCompressionKeysParseWithDefaults) {
  auto env = env_with({{"API_KEY", "k"}});
  auto d = parse_config(kGood, "f.toml", env);
  ASSERT_TRUE(d.ok()) << d.error().message;
  EXPECT_EQ(d->pipeline.range_batch_blocks, 50u);
  EXPECT_EQ(d->pipeline.range_buffer_mb, 64u);
  EXPECT_EQ(d->kafka.compression, "lz4");
  auto c = parse_config(replace(kGood, "[kafka]\n", "[kafka]\ncompression = \"zstd\"\n") +
                            "\n[pipeline]\nrange_batch_blocks = 20\nrange_buffer_mb = 16\n",
                        "f.toml", env);
  ASSERT_TRUE(c.ok()) << c.error().message;
  EXPECT_EQ(c->pipeline.range_batch_blocks, 20u);
  EXPECT_EQ(c->pipeline.range_buffer_mb, 16u);
  EXPECT_EQ(c->kafka.compression, "zstd");
  auto bad = parse_config(replace(kGood, "[kafka]\n", "[kafka]\ncompression = \"lzma\"\n"), "f.toml", env);
  ASSERT_FALSE(bad.ok());
  for (const char* word : {"kafka.compression", "lzma", "\"lz4\""})
    EXPECT_NE(bad.error().message.find(word), std::string::npos) << bad.error().message;
  auto zero = parse_config(kGood + "\n[pipeline]\nrange_batch_blocks = 0\n", "f.toml", env);
  ASSERT_FALSE(zero.ok());
  EXPECT_NE(zero.error().message.find("pipeline.range_batch_blocks"), std::string::npos) << zero.error().message;
}

TEST(Config, StageAheadIsPostgresUnlessSetAndNamesItsModes) {
  auto env = env_with({{"API_KEY", "k"}});
  auto d = parse_config(kGood, "f.toml", env);
  ASSERT_TRUE(d.ok()) << d.error().message;
  EXPECT_EQ(d->pipeline.stage_ahead, "postgres");
  for (const char* mode : {"off", "postgres", "all"}) {
    auto c = parse_config(kGood + "\n[pipeline]\nstage_ahead = \"" + mode + "\"\n", "f.toml", env);
    ASSERT_TRUE(c.ok()) << c.error().message;
    EXPECT_EQ(c->pipeline.stage_ahead, mode);
  }
  auto bad = parse_config(kGood + "\n[pipeline]\nstage_ahead = \"kafka\"\n", "f.toml", env);
  ASSERT_FALSE(bad.ok());
  for (const char* word : {"pipeline.stage_ahead", "kafka", "\"all\"", "\"off\""})
    EXPECT_NE(bad.error().message.find(word), std::string::npos) << bad.error().message;
  auto wrong_type = parse_config(kGood + "\n[pipeline]\nstage_ahead = true\n", "f.toml", env);
  ASSERT_FALSE(wrong_type.ok());
  EXPECT_NE(wrong_type.error().message.find("pipeline.stage_ahead"), std::string::npos) << wrong_type.error().message;
}

TEST(RedactPostgresUrl, HidesThePasswordAndQueryValuesKeepsTheDatabaseAndSslmode) {
  using schema::redact_postgres_url;
  EXPECT_EQ(redact_postgres_url("postgresql://indexer:hunter2@db:5432/chainidx"), "postgresql://indexer:***@db:5432/chainidx");
  EXPECT_EQ(redact_postgres_url("postgresql://indexer:p%40ss@db/chainidx?sslmode=require&password=x"),
            "postgresql://indexer:***@db/chainidx?sslmode=require&password=***");
  EXPECT_EQ(redact_postgres_url("postgresql://db/x?sslpassword=k&connect_timeout=5&options=-c%20a%3Db"),
            "postgresql://db/x?sslpassword=***&connect_timeout=5&options=***");
  EXPECT_EQ(redact_postgres_url("postgres://127.0.0.1:5432/chainidx"), "postgres://127.0.0.1:5432/chainidx");
  EXPECT_EQ(redact_postgres_url("postgresql://user@db/x"), "postgresql://user@db/x");
  EXPECT_EQ(redact_postgres_url("not a url"), "***");
}


TEST(Config, ProbeKeysHaveDefaultsAndRefuseValuesOutOfRange) {
  auto env = env_with({{"API_KEY", "k"}});
  auto d = parse_config(kGood, "f.toml", env);
  ASSERT_TRUE(d.ok()) << d.error().message;
  EXPECT_EQ(d->server.ready_max_lag_blocks, 10u);
  EXPECT_EQ(d->server.unhealthy_after_seconds, 300u);
  auto set = parse_config(replace(kGood, "[server]\n", "[server]\nready_max_lag_blocks = 0\nunhealthy_after_seconds = 45\n"), "f.toml", env);
  ASSERT_TRUE(set.ok()) << set.error().message;
  EXPECT_EQ(set->server.ready_max_lag_blocks, 0u);
  EXPECT_EQ(set->server.unhealthy_after_seconds, 45u);
  auto bad = parse_config(replace(kGood, "[server]\n", "[server]\nunhealthy_after_seconds = 1\n"), "f.toml", env);
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.error().message.find("server.unhealthy_after_seconds"), std::string::npos) << bad.error().message;
  EXPECT_TRUE(d->server.hold_on_halt);
  auto exit_at_once = parse_config(replace(kGood, "[server]\n", "[server]\nhold_on_halt = false\n"), "f.toml", env);
  ASSERT_TRUE(exit_at_once.ok()) << exit_at_once.error().message;
  EXPECT_FALSE(exit_at_once->server.hold_on_halt);
  auto not_bool = parse_config(replace(kGood, "[server]\n", "[server]\nhold_on_halt = \"yes\"\n"), "f.toml", env);
  ASSERT_FALSE(not_bool.ok());
  EXPECT_NE(not_bool.error().message.find("server.hold_on_halt"), std::string::npos) << not_bool.error().message;
  auto unknown = parse_config(replace(kGood, "[server]\n", "[server]\nready_lag = 3\n"), "f.toml", env);
  ASSERT_FALSE(unknown.ok());
  EXPECT_NE(unknown.error().message.find("ready_lag"), std::string::npos) << unknown.error().message;
}

TEST(Config, AdminTokenComesFromTheEnvironmentAndMustBeLongEnough) {
  auto env = env_with({{"API_KEY", "k"}, {"ADMIN", "0123456789abcdef0123"}, {"SHORT", "abc"}});
  auto off = parse_config(kGood, "f.toml", env);
  ASSERT_TRUE(off.ok()) << off.error().message;
  EXPECT_TRUE(off->server.admin_token.empty());
  auto on = parse_config(replace(kGood, "[server]\n", "[server]\nadmin_token = \"${ADMIN}\"\n"), "f.toml", env);
  ASSERT_TRUE(on.ok()) << on.error().message;
  EXPECT_EQ(on->server.admin_token, "0123456789abcdef0123");
  auto short_one = parse_config(replace(kGood, "[server]\n", "[server]\nadmin_token = \"${SHORT}\"\n"), "f.toml", env);
  ASSERT_FALSE(short_one.ok());
  EXPECT_NE(short_one.error().message.find("server.admin_token: must be 16 to 256 characters"), std::string::npos)
      << short_one.error().message;
  EXPECT_EQ(short_one.error().message.find("abc"), std::string::npos) << "the token reached the message";
}

TEST(Config, LeaderLeaseHasADefaultAndARange) {
  auto env = env_with({{"API_KEY", "k"}});
  auto d = parse_config(kGood, "f.toml", env);
  ASSERT_TRUE(d.ok()) << d.error().message;
  EXPECT_EQ(d->ha.lease_seconds, 15u);
  auto set = parse_config(kGood + std::string("\n[ha]\nlease_seconds = 5\n"), "f.toml", env);
  ASSERT_TRUE(set.ok()) << set.error().message;
  EXPECT_EQ(set->ha.lease_seconds, 5u);
  auto tiny = parse_config(kGood + std::string("\n[ha]\nlease_seconds = 1\n"), "f.toml", env);
  ASSERT_FALSE(tiny.ok());
  EXPECT_NE(tiny.error().message.find("ha.lease_seconds"), std::string::npos) << tiny.error().message;
  auto unknown = parse_config(kGood + std::string("\n[ha]\nlease = 5\n"), "f.toml", env);
  ASSERT_FALSE(unknown.ok());
  EXPECT_NE(unknown.error().message.find("ha.lease"), std::string::npos) << unknown.error().message;
}

TEST(Config, LogFormatAndLevelParseAndNameTheirChoices) {
  auto env = env_with({{"API_KEY", "k"}});
  auto d = parse_config(kGood, "f.toml", env);
  ASSERT_TRUE(d.ok()) << d.error().message;
  EXPECT_EQ(d->log.format, "text");
  EXPECT_EQ(d->log.level, "info");
  auto json = parse_config(kGood + "\n[log]\nformat = \"json\"\nlevel = \"debug\"\n", "f.toml", env);
  ASSERT_TRUE(json.ok()) << json.error().message;
  EXPECT_EQ(json->log.format, "json");
  EXPECT_EQ(json->log.level, "debug");
  auto bad_format = parse_config(kGood + "\n[log]\nformat = \"yaml\"\n", "f.toml", env);
  ASSERT_FALSE(bad_format.ok());
  EXPECT_NE(bad_format.error().message.find("log.format: \"yaml\" is not a log format; use \"text\""), std::string::npos)
      << bad_format.error().message;
  auto bad_level = parse_config(kGood + "\n[log]\nlevel = \"verbose\"\n", "f.toml", env);
  ASSERT_FALSE(bad_level.ok());
  EXPECT_NE(bad_level.error().message.find("log.level: \"verbose\" is not a log level"), std::string::npos) << bad_level.error().message;
}

TEST(Config, KafkaSecurityKeysBecomeLibrdkafkaPropertiesAndAreCheckedTogether) {
  auto env = env_with({{"API_KEY", "k"}, {"KAFKA_PASSWORD", "s3cr3t-pw"}});
  const std::string sasl = "[kafka]\nbrokers = \"127.0.0.1:9092\"\nsecurity_protocol = \"SASL_SSL\"\nsasl_mechanism = \"SCRAM-SHA-512\"\n"
                           "sasl_username = \"indexer\"\nsasl_password = \"${KAFKA_PASSWORD}\"\n";
  auto ok = parse_config(replace(kGood, "[kafka]\nbrokers = \"127.0.0.1:9092\"\n", sasl + "\n[kafka.properties]\n\"socket.keepalive.enable\" = true\n\"queue.buffering.max.kbytes\" = 65536\n"),
                         "f.toml", env);
  ASSERT_TRUE(ok.ok()) << ok.error().message;
  using P = std::vector<std::pair<std::string, std::string>>;
  EXPECT_EQ(ok->kafka.client_properties(), (P{{"security.protocol", "sasl_ssl"},
                                              {"sasl.mechanisms", "SCRAM-SHA-512"},
                                              {"sasl.username", "indexer"},
                                              {"sasl.password", "s3cr3t-pw"},
                                              {"queue.buffering.max.kbytes", "65536"},
                                              {"socket.keepalive.enable", "true"}}));
  struct Case {
    std::string kafka, expect;
  };
  const std::vector<Case> cases = {
      {"security_protocol = \"tls\"\n", "kafka.security_protocol: \"tls\" is not a security protocol"},
      {"security_protocol = \"sasl_ssl\"\nsasl_username = \"u\"\nsasl_password = \"p\"\n", "kafka.sasl_mechanism: missing"},
      {"security_protocol = \"sasl_ssl\"\nsasl_mechanism = \"GSSAPI\"\nsasl_username = \"u\"\nsasl_password = \"p\"\n",
       "kafka.sasl_mechanism: \"GSSAPI\" is not a SASL mechanism"},
      {"security_protocol = \"sasl_ssl\"\nsasl_mechanism = \"PLAIN\"\nsasl_password = \"p\"\n", "kafka.sasl_username: missing"},
      {"sasl_username = \"u\"\n", "kafka.sasl_username: is set but security_protocol is plaintext"},
      {"security_protocol = \"ssl\"\nssl_ca_file = \"/nonexistent/ca.pem\"\n", "kafka.ssl_ca_file: cannot read"},
      {"ssl_ca_file = \"/etc/hostname\"\n", "kafka.ssl_ca_file: is set but security_protocol is plaintext"},
      {"[kafka.properties]\n\"transactional.id\" = \"x\"\n", "kafka.properties.\"transactional.id\": is set by chainidx itself"},
      {"[kafka.properties]\n\"sasl.password\" = \"x\"\n", "use kafka.sasl_password"},
      {"[kafka.properties]\n\"no.such.property\" = \"x\"\n", "kafka.properties.\"no.such.property\": librdkafka refuses it"},
      {"[kafka.properties]\n\"socket.timeout.ms\" = \"soon\"\n", "kafka.properties.\"socket.timeout.ms\": librdkafka refuses it"},
  };
  for (const auto& c : cases) {
    auto r = parse_config(replace(kGood, "[kafka]\nbrokers = \"127.0.0.1:9092\"\n", "[kafka]\nbrokers = \"127.0.0.1:9092\"\n" + c.kafka), "f.toml", env);
    ASSERT_FALSE(r.ok()) << c.kafka;
    EXPECT_NE(r.error().message.find(c.expect), std::string::npos) << c.kafka << " -> " << r.error().message;
  }
  // A substituted value librdkafka refuses is not echoed.
  auto secret = parse_config(replace(kGood, "[kafka]\nbrokers = \"127.0.0.1:9092\"\n",
                                     "[kafka]\nbrokers = \"127.0.0.1:9092\"\n[kafka.properties]\n\"socket.timeout.ms\" = \"${KAFKA_PASSWORD}\"\n"),
                             "f.toml", env);
  ASSERT_FALSE(secret.ok());
  EXPECT_EQ(secret.error().message.find("s3cr3t-pw"), std::string::npos) << secret.error().message;
}


const std::string kTwoChains = R"(
[[chains]]
name = "mainnet"
chain_id = 1
confirmations = 64

[[chains.endpoints]]
ws = "wss://eth.example.com/ws"
http = "https://eth.example.com/${KEY}"

[[chains]]
name = "base"
chain_id = 8453
confirmations = "safe"
start_block = 100

[[chains.endpoints]]
name = "base_a"
ws = "ws://127.0.0.1:9545"
http = "http://127.0.0.1:9545"

[[chains.endpoints]]
ws = "ws://127.0.0.1:9546"
http = "http://127.0.0.1:9546"

[postgres]
url = "postgresql://127.0.0.1:5432/chainidx"

[kafka]
brokers = "127.0.0.1:9092"
)";

TEST(Config, ManyChainsEachHaveTheirOwnSettingsAndForChainSelectsOne) {
  auto c = parse_config(kTwoChains, "two.toml", env_with({{"KEY", "k"}}));
  ASSERT_TRUE(c.ok()) << c.error().message;
  ASSERT_EQ(c->chains.size(), 2u);
  EXPECT_EQ(c->chains[0].name, "mainnet");
  EXPECT_EQ(c->chains[0].confirmations, 64u);
  EXPECT_EQ(c->chains[0].endpoints.size(), 1u);
  EXPECT_EQ(c->chains[0].endpoints[0].http, "https://eth.example.com/k");
  EXPECT_EQ(c->chains[1].name, "base");
  EXPECT_EQ(c->chains[1].chain_id, 8453u);
  EXPECT_EQ(c->chains[1].confirm_tag, "safe");
  EXPECT_EQ(c->chains[1].start_block, 100u);
  ASSERT_EQ(c->chains[1].endpoints.size(), 2u);
  EXPECT_EQ(c->chains[1].endpoints[0].name, "base_a");
  EXPECT_EQ(c->chain.name, "mainnet");  // the first, until for_chain picks another
  const Config base = c->for_chain(1);
  EXPECT_EQ(base.chain.name, "base");
  EXPECT_EQ(base.chain.endpoints.size(), 2u);
  EXPECT_EQ(base.postgres.url, c->postgres.url);

  // One chain with [chain] is the same as one [[chains]] table.
  auto single = parse_config(kGood, "good.toml", env_with({{"API_KEY", "x"}}));
  ASSERT_TRUE(single.ok());
  ASSERT_EQ(single->chains.size(), 1u);
  EXPECT_EQ(single->chains[0].name, "anvil");
}

TEST(Config, ManyChainsErrorsNameTheChainAndItsKey) {
  const auto env = env_with({{"KEY", "k"}, {"API_KEY", "x"}});
  auto dup = parse_config(replace(kTwoChains, "name = \"base\"", "name = \"mainnet\""), "two.toml", env);
  ASSERT_FALSE(dup.ok());
  EXPECT_NE(dup.error().message.find("chains[1].name"), std::string::npos) << dup.error().message;
  EXPECT_NE(dup.error().message.find("own name"), std::string::npos) << dup.error().message;

  auto bad_key = parse_config(replace(kTwoChains, "start_block = 100", "start_blok = 100"), "two.toml", env);
  ASSERT_FALSE(bad_key.ok());
  EXPECT_NE(bad_key.error().message.find("chains[1].start_blok: unknown key"), std::string::npos) << bad_key.error().message;

  auto bad_url = parse_config(replace(kTwoChains, "http://127.0.0.1:9546", "ftp://127.0.0.1:9546"), "two.toml", env);
  ASSERT_FALSE(bad_url.ok());
  EXPECT_NE(bad_url.error().message.find("chains[1].endpoints[1].http"), std::string::npos) << bad_url.error().message;

  // The second chain without endpoints.
  const std::string cut = kTwoChains.substr(0, kTwoChains.find("[[chains.endpoints]]\nname = \"base_a\"")) +
                          kTwoChains.substr(kTwoChains.find("[postgres]"));
  auto no_endpoints = parse_config(cut, "two.toml", env);
  ASSERT_FALSE(no_endpoints.ok());
  EXPECT_NE(no_endpoints.error().message.find("chains[1].endpoints: missing"), std::string::npos) << no_endpoints.error().message;
  EXPECT_NE(no_endpoints.error().message.find("[[chains.endpoints]] (below the chain's [[chains]])"), std::string::npos) << no_endpoints.error().message;

  auto both = parse_config(kGood + "\n" + kTwoChains.substr(0, kTwoChains.find("[postgres]")), "both.toml", env);
  ASSERT_FALSE(both.ok());
  EXPECT_NE(both.error().message.find("both [chain] and [[chains]]"), std::string::npos) << both.error().message;
}

// A folder holding a config and the ABI it names by a relative path, as a user would lay them out.
struct ContractFiles {
  std::string dir;
  ContractFiles() {
    char tmpl[] = "/tmp/chainidx-config-XXXXXX";
    dir = mkdtemp(tmpl);
    mkdir((dir + "/abis").c_str(), 0755);
    write("abis/erc20.json", R"([
      {"type":"event","name":"Transfer","inputs":[{"name":"from","type":"address","indexed":true},
        {"name":"to","type":"address","indexed":true},{"name":"value","type":"uint256","indexed":false}]},
      {"type":"event","name":"Approval","inputs":[{"name":"owner","type":"address","indexed":true},
        {"name":"spender","type":"address","indexed":true},{"name":"value","type":"uint256","indexed":false}]},
      {"type":"event","name":"Moved","inputs":[{"name":"a","type":"uint8","indexed":false}]},
      {"type":"event","name":"Moved","inputs":[{"name":"a","type":"uint16","indexed":false}]},
      {"type":"function","name":"transfer","inputs":[],"outputs":[]}])");
    write("abis/broken.json", R"([{"type":"event","name":"E","inputs":[{"name":"x","type":"uint7"}]}])");
  }
  ~ContractFiles() { std::system(("rm -rf " + dir).c_str()); }
  void write(const std::string& name, const std::string& text) const {
    FILE* f = std::fopen((dir + "/" + name).c_str(), "w");
    std::fputs(text.c_str(), f);
    std::fclose(f);
  }
  schema::Result<Config> parse(const std::string& contracts, const std::string& base = kGood) const {
    return parse_config(base + contracts, dir + "/chainidx.toml", env_with({{"API_KEY", "k"}}));
  }
};

TEST(Config, ContractsReadTheirAbiRelativeToTheConfigAndChooseEvents) {
  ContractFiles files;
  auto c = files.parse(R"toml(
[[contracts]]
name = "usdc"
address = ["0xA0b86991c6218b36c1d19D4a2e9Eb0cE3606eB48", "0x00000000000000000000000000000000000000aa"]
abi = "abis/erc20.json"
events = ["Transfer", "Moved(uint16)"]
start_block = 6082465

[[contracts]]
name = "all_of_it"
address = "0x00000000000000000000000000000000000000bb"
abi = "abis/erc20.json"
events = ["Transfer", "Approval"]
)toml");
  ASSERT_TRUE(c.ok()) << c.error().message;
  ASSERT_EQ(c->chain.contracts.size(), 2u);
  const auto& usdc = c->chain.contracts[0];
  EXPECT_EQ(usdc.name, "usdc");
  ASSERT_EQ(usdc.addresses.size(), 2u);
  EXPECT_EQ(schema::to_hex(usdc.addresses[0]), "0xa0b86991c6218b36c1d19d4a2e9eb0ce3606eb48");
  ASSERT_EQ(usdc.events.size(), 2u);
  EXPECT_EQ(usdc.events[0].signature(), "Transfer(address,address,uint256)");
  EXPECT_EQ(usdc.events[1].signature(), "Moved(uint16)");
  EXPECT_EQ(usdc.start_block, 6082465u);
  EXPECT_EQ(usdc.abi_topics.size(), 4u);  // every named event of the ABI, chosen or not
  EXPECT_EQ(c->chain.contracts[1].events.size(), 2u);
  EXPECT_EQ(c->chains.front().contracts.size(), 2u);
}

TEST(Config, ContractMistakesNameTheKeyAndTheFix) {
  ContractFiles files;
  const std::string ok = "\n[[contracts]]\nname = \"usdc\"\naddress = \"0x00000000000000000000000000000000000000aa\"\nabi = \"abis/erc20.json\"\n";
  auto expect_error = [&](const std::string& text, const std::string& needle) {
    auto c = files.parse(text);
    ASSERT_FALSE(c.ok()) << text;
    EXPECT_NE(c.error().message.find(needle), std::string::npos) << c.error().message;
  };
  // With every event of the ABI, the overloaded Moved would need two tables of one name.
  expect_error(ok, "contracts: contract usdc: two events would both be stored in table usdc_moved");
  const std::string one = ok + "events = [\"Transfer\"]\n";
  ASSERT_TRUE(files.parse(one).ok()) << files.parse(one).error().message;
  expect_error(replace(one, "name = \"usdc\"", "name = \"USDC\""), "contracts[0].name: \"USDC\" is not usable");
  expect_error(one + one, "contracts[1].name: \"usdc\" names two contracts");
  expect_error(replace(one, "0x00000000000000000000000000000000000000aa", "0x00aa"), "contracts[0].address: \"0x00aa\" is not an address");
  // One character of a checksummed address in the wrong case.
  expect_error(replace(one, "\"0x00000000000000000000000000000000000000aa\"", "[\"0xA0b86991c6218b36c1d19D4a2e9Eb0cE3606eB48\", \"0xa0B86991c6218b36c1d19D4a2e9Eb0cE3606eB48\"]"),
               "contracts[0].address[1]: \"0xa0B86991c6218b36c1d19D4a2e9Eb0cE3606eB48\" fails its EIP-55 checksum");
  expect_error(replace(one, "abis/erc20.json", "abis/missing.json"), "contracts[0].abi: cannot read " + files.dir + "/abis/missing.json");
  expect_error(replace(one, "abis/erc20.json", "abis/broken.json"), "contracts[0].abi: " + files.dir + "/abis/broken.json: entry 0 (event E).inputs[0].type");
  expect_error(replace(one, "[\"Transfer\"]", "[\"Transfr\"]"), "contracts[0].events[0]: \"Transfr\" is not an event of abis/erc20.json; use one of: Transfer(address,address,uint256), Approval(");
  expect_error(replace(one, "[\"Transfer\"]", "[\"Moved\"]"), "contracts[0].events[0]: \"Moved\" is overloaded in abis/erc20.json; name one by its signature: Moved(uint8) or Moved(uint16)");
  expect_error(replace(one, "[\"Transfer\"]", "[\"Transfer\", \"Transfer\"]"), "contracts[0].events[1]: \"Transfer\" is listed twice");
  expect_error(one + "color = 1\n", "contracts[0].color: unknown key");
  expect_error(replace(one, "address = \"0x00000000000000000000000000000000000000aa\"\n", ""), "contracts[0].address: missing");
  auto nested = parse_config(replace(kGood, "[postgres]", "[[chain.contracts]]\nname = \"x\"\n\n[postgres]"), "c.toml", env_with({{"API_KEY", "k"}}));
  ASSERT_FALSE(nested.ok());
  EXPECT_NE(nested.error().message.find("chain.contracts: contracts belong at the top level"), std::string::npos) << nested.error().message;
}

TEST(Config, IndexEventsNeedsContractsAndSetsTheLogRangeWidths) {
  ContractFiles files;
  const std::string contract = "\n[[contracts]]\nname = \"usdc\"\naddress = \"0x00000000000000000000000000000000000000aa\"\n"
                               "abi = \"abis/erc20.json\"\nevents = [\"Transfer\"]\n";
  const std::string events = replace(kGood, "start_block = 0\n", "start_block = 0\nindex = \"events\"\n");
  auto c = files.parse(contract, events);
  ASSERT_TRUE(c.ok()) << c.error().message;
  EXPECT_TRUE(c->chain.index_events_only);
  EXPECT_EQ(c->pipeline.log_range_blocks, 2000u);
  EXPECT_EQ(c->pipeline.log_range_max_blocks, 100000u);
  auto all = files.parse(contract);
  ASSERT_TRUE(all.ok());
  EXPECT_FALSE(all->chain.index_events_only);
  auto expect_error = [&](const std::string& text, const std::string& needle) {
    auto r = files.parse("", text);
    ASSERT_FALSE(r.ok()) << text;
    EXPECT_NE(r.error().message.find(needle), std::string::npos) << r.error().message;
  };
  expect_error(events, "chain.index: \"events\" with no [[contracts]]");
  expect_error(replace(events, "\"events\"", "\"logs\"") + contract, "chain.index: \"logs\" is not an index mode");
  auto per_event = files.parse(contract, replace(kGood, "[kafka]\n", "[kafka]\nevent_topics = \"event\"\n"));
  ASSERT_TRUE(per_event.ok()) << per_event.error().message;
  EXPECT_TRUE(per_event->kafka.topic_per_event);
  EXPECT_FALSE(c->kafka.topic_per_event);
  expect_error(replace(kGood, "[kafka]\n", "[kafka]\nevent_topics = \"table\"\n"), "kafka.event_topics: \"table\" is not a topic layout");
  EXPECT_TRUE(c->chain.raw_logs) << "the logs table and topic are written unless told otherwise";
  auto no_raw = files.parse(contract, replace(events, "index = \"events\"\n", "index = \"events\"\nraw_logs = false\n"));
  ASSERT_TRUE(no_raw.ok()) << no_raw.error().message;
  EXPECT_FALSE(no_raw->chain.raw_logs);
  expect_error(replace(events, "index = \"events\"\n", "index = \"events\"\nraw_logs = \"no\"\n") + contract,
               "chain.raw_logs: expected true or false");
  const std::string widths = replace(events, "[postgres]", "[pipeline]\nlog_range_blocks = 500\nlog_range_max_blocks = 400\n\n[postgres]");
  expect_error(widths + contract, "pipeline.log_range_max_blocks: must be between 500 and");
}

TEST(Config, FactoryMadeContractsNameTheirFactorysEventAndParameter) {
  ContractFiles files;
  files.write("abis/factory.json", R"([
    {"type":"event","name":"PoolCreated","inputs":[{"name":"token","type":"address","indexed":true},
      {"name":"fee","type":"uint24","indexed":false},{"name":"pool","type":"address","indexed":false}]}])");
  files.write("abis/pool.json", R"([
    {"type":"event","name":"Swap","inputs":[{"name":"sender","type":"address","indexed":true},{"name":"amount","type":"int256","indexed":false}]},
    {"type":"event","name":"Sync","anonymous":true,"inputs":[{"name":"reserve","type":"uint112","indexed":false}]}])");
  const std::string factory = "\n[[contracts]]\nname = \"factory\"\naddress = \"0x00000000000000000000000000000000000000aa\"\n"
                              "abi = \"abis/factory.json\"\n";
  const std::string pool = "\n[[contracts]]\nname = \"pool\"\nabi = \"abis/pool.json\"\n"
                           "factory = { contract = \"factory\", event = \"PoolCreated\", parameter = \"pool\" }\n";
  // The factory may come after the contracts it makes.
  auto c = files.parse(pool + factory);
  ASSERT_TRUE(c.ok()) << c.error().message;
  const auto& made = c->chain.contracts[0];
  ASSERT_TRUE(made.factory.has_value());
  EXPECT_EQ(*made.factory, (abi::FactoryRef{"factory", "PoolCreated", "pool"}));
  EXPECT_TRUE(made.addresses.empty());
  const abi::EventCatalog catalog = c->chain.catalog();
  ASSERT_EQ(catalog.factory_sources().size(), 1u);
  EXPECT_EQ(catalog.tables()[catalog.factory_sources()[0].table].table, "factory_pool_created");
  EXPECT_EQ(catalog.factory_sources()[0].column, 2u);

  auto expect_error = [&](const std::string& contracts, const std::string& needle, const std::string& base = kGood) {
    auto r = files.parse(contracts, base);
    ASSERT_FALSE(r.ok()) << contracts;
    EXPECT_NE(r.error().message.find(needle), std::string::npos) << r.error().message;
  };
  expect_error(replace(pool, "contract = \"factory\"", "contract = \"factroy\"") + factory,
               "contracts[0].factory.contract: no contract is named \"factroy\"");
  expect_error(replace(pool, "PoolCreated\"", "PairCreated\"") + factory,
               "contracts[0].factory.event: \"PairCreated\" is not one of the events chosen for factory");
  expect_error(replace(pool, "parameter = \"pool\"", "parameter = \"fee\"") + factory,
               "contracts[0].factory.parameter: the parameter fee of PoolCreated(address,uint24,address) is a uint24, not an address");
  expect_error(replace(pool, "parameter = \"pool\"", "parameter = \"pair\"") + factory,
               "contracts[0].factory.parameter: PoolCreated(address,uint24,address) has no parameter named \"pair\"");
  expect_error(replace(pool, ", parameter = \"pool\"", "") + factory, "contracts[0].factory.parameter: missing");
  expect_error(replace(pool, "factory = {", "address = \"0x00000000000000000000000000000000000000bb\"\nfactory = {") + factory,
               "contracts[0].address: a contract made by a factory takes its addresses from the factory's events");
  expect_error(replace(pool, "name = \"pool\"", "name = \"factory\"") + replace(factory, "name = \"factory\"", "name = \"f2\""),
               "contracts[0].factory.contract: a contract cannot be its own factory");
  expect_error(replace(pool, "factory = {", "factory = { bogus = 1, "), "contracts[0].factory.bogus: unknown key");
  // Logs-only indexing asks for factory-made contracts' logs by topic0: an anonymous event has none.
  const std::string events = replace(kGood, "start_block = 0\n", "start_block = 0\nindex = \"events\"\n");
  expect_error(pool + factory, "chain.index: \"events\" with factory-made contracts and the anonymous event Sync of pool", events);
  auto chosen = files.parse(replace(pool, "factory = {", "events = [\"Swap\"]\nfactory = {") + factory, events);
  EXPECT_TRUE(chosen.ok()) << chosen.error().message;
}

}  // namespace
}  // namespace chainidx::app

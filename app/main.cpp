// chainidx: the command-line entry point.

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/signal_set.hpp>
#include <CLI/CLI.hpp>
#include <spdlog/spdlog.h>

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <memory>
#include <cerrno>
#include <csignal>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <mutex>
#include <random>
#include <thread>
#include <iostream>
#include <optional>
#include <sstream>

#include "app/admin.hpp"
#include "app/build_info.hpp"
#include "app/config.hpp"
#include "app/leader.hpp"
#include "app/live_status.hpp"
#include "app/logging.hpp"
#include "app/names.hpp"
#include "app/metrics.hpp"
#include "app/ops_server.hpp"
#include "app/pipeline.hpp"
#include "abi/event_catalog.hpp"
#include "ingest/backoff.hpp"
#include "ingest/tls_context.hpp"
#include "ingest/url.hpp"
#include "schema/redact.hpp"
#include "schema/tx_json.hpp"
#include "sinks/dev_broker.hpp"
#include "sinks/kafka_message.hpp"
#include "sinks/kafka_sink.hpp"
#include "sinks/postgres_sink.hpp"

namespace {

using namespace chainidx;

struct Args {
  std::string command;
  std::optional<std::string> config;
  std::optional<std::string> bootstrap_file;
  int brokers = 1;
  std::vector<std::string> topics;
  int partitions = 3;
  // replay
  std::optional<std::uint64_t> from, to;
  bool to_postgres = true, to_kafka = true;
  std::string topic_prefix;
  std::string worker;
  std::string chain;
  std::uint64_t chunk_blocks = 5000;
  int lease_seconds = 60;
  // event-schemas
  std::optional<std::string> out_dir;
};

constexpr const char* kExitCodes = R"(
Exit codes: 0 done; 1 fatal error; 2 bad configuration or arguments; 3 deep reorg (halted);
4 the node's chain id differs from the config's; 5 stopped with a confirmed batch left uncommitted;
6 fenced by another instance; 7 a sink refused data; 8 every endpoint refused a request;
9 a block no endpoint serves valid; 10 replay range refused.)";

const CLI::Validator kName(
    [](const std::string& v) -> std::string {
      return app::is_name(v) ? "" : "needs 1 to 100 letters, digits, '.', '_' or '-', got \"" + v + "\"";
    },
    "NAME");

// The command line, parsed with CLI11: every subcommand answers --help, an error names the
// argument at fault. `a` receives the values; the subcommand's name goes to a.command.
void describe_commands(CLI::App& cli, Args& a) {
  cli.require_subcommand(1);
  cli.set_version_flag("--version", std::string("chainidx ") + app::kVersion + " (" + app::kRevision + ")");
  cli.footer(kExitCodes);
  const auto config = [&a](CLI::App* sub) {
    sub->add_option("--config", a.config, "the TOML config file (see the README's Configuration)")->required()->type_name("FILE");
  };
  config(cli.add_subcommand("run", "follow the chain and index confirmed blocks"));
  auto* replay = cli.add_subcommand("replay",
                                    "re-index blocks FROM..TO (idempotent, resumable; several processes given the same range "
                                    "share the work)");
  config(replay);
  replay->add_option("--from", a.from, "the first block to re-index")->required()->type_name("N");
  replay->add_option("--to", a.to, "the last block to re-index (included)")->required()->type_name("M");
  replay
      ->add_option_function<std::vector<std::string>>(
          "--sinks",
          [&a](const std::vector<std::string>& sinks) {
            a.to_postgres = a.to_kafka = false;
            for (const auto& one : sinks) (one == "postgres" ? a.to_postgres : a.to_kafka) = true;
          },
          "where the blocks go: postgres, kafka or both (the default)")
      ->delimiter(',')
      ->check(CLI::IsMember({"postgres", "kafka"}))
      ->type_name("postgres,kafka");
  replay->add_option("--topic-prefix", a.topic_prefix, "publish to PREFIX.<topic> instead of the live topics")->check(kName)->type_name("PREFIX");
  replay->add_option("--chain", a.chain, "the chain to re-index, when the config has several ([[chains]])")->type_name("NAME");
  replay->add_option("--worker", a.worker, "this process's name in the chunk table (default: host and a random id)")->check(kName)->type_name("NAME");
  replay->add_option("--chunk-blocks", a.chunk_blocks, "blocks per chunk: the unit of sharing and of resuming")
      ->check(CLI::Range(1, 1000000))
      ->capture_default_str();
  replay->add_option("--lease-seconds", a.lease_seconds, "a chunk whose worker stopped renewing goes to another after this")
      ->check(CLI::Range(1, 1000000))
      ->capture_default_str();
  config(cli.add_subcommand("check-config", "validate a config file and exit (0 when valid)"));
  auto* schemas = cli.add_subcommand("event-schemas",
                                     "print the JSON Schema of each configured contract event's Kafka messages, made from its ABI");
  config(schemas);
  schemas->add_option("--out", a.out_dir, "write one file per event, <chain>.events.<contract>.<Event>.json, into this directory")
      ->type_name("DIR");
  auto* broker = cli.add_subcommand("devbroker",
                                    "run a local Kafka-protocol broker for development (librdkafka's mock cluster: it has no "
                                    "CreateTopics API, so topics can be made here up front)");
  broker->add_option("--bootstrap-file", a.bootstrap_file, "write the bootstrap servers to this file once listening")->type_name("FILE");
  broker->add_option("--brokers", a.brokers, "brokers in the cluster")->check(CLI::Range(1, 16))->capture_default_str();
  broker->add_option("--topics", a.topics, "topics to create, comma-separated")->delimiter(',')->type_name("A,B,C");
  broker->add_option("--partitions", a.partitions, "partitions of each topic made here")->check(CLI::Range(1, 1000))->capture_default_str();
  for (auto* sub : cli.get_subcommands({}))
    sub->callback([&a, sub] { a.command = sub->get_name(); });
}

sinks::KafkaSinkConfig kafka_sink_config(const app::Config& c, const std::string& brokers) {
  sinks::KafkaSinkConfig kc{brokers, c.chain.name, c.chain.chain_id, c.kafka.partitions, c.kafka.replication_factor,
                            static_cast<int>(c.kafka.transaction_timeout_seconds * 1000), c.kafka.compression};
  kc.client_properties = c.kafka.client_properties();
  kc.event_tables = c.chain.catalog().tables();
  kc.sparse_blocks = c.chain.index_events_only;
  kc.raw_logs = c.chain.raw_logs;
  kc.topic_per_event = c.kafka.topic_per_event;
  return kc;
}

std::optional<app::Config> load_or_report(const std::optional<std::string>& path) {
  if (!path) {
    std::cerr << "chainidx: --config FILE is required\n";
    return std::nullopt;
  }
  auto config = app::load_config(*path);
  if (!config.ok()) {
    std::cerr << "chainidx: config error: " << config.error().message << "\n";
    return std::nullopt;
  }
  return std::move(*config);
}

int check_config(const Args& args) {
  auto config = load_or_report(args.config);
  if (!config) return app::kExitConfig;
  for (const auto& chain : config->chains) {
    std::cout << "config ok: chain " << chain.name << " (chain id " << chain.chain_id << "), confirmations "
              << (chain.confirm_tag.empty() ? std::to_string(chain.confirmations) : chain.confirm_tag) << ", " << chain.endpoints.size()
              << " endpoint(s):";
    for (auto& e : chain.endpoints)
      std::cout << " " << (e.name.empty() ? ingest::redact_endpoint_url(e.http) : e.name + " (" + ingest::redact_endpoint_url(e.http) + ")");
    if (!chain.contracts.empty())
      std::cout << ", " << chain.contracts.size() << " contract(s) with " << chain.catalog().tables().size() << " event table(s)";
    std::cout << ", postgres " << schema::redact_postgres_url(config->postgres.url) << ", kafka " << config->kafka.brokers << "\n";
  }
  return app::kExitOk;
}

// The JSON Schema of every configured contract event's messages: one object keyed by topic and
// event on standard output, or one file per event in --out.
int event_schemas(const Args& args) {
  auto config = load_or_report(args.config);
  if (!config) return app::kExitConfig;
  std::string all = "{";
  std::size_t files = 0;
  for (const auto& chain : config->chains) {
    const abi::EventCatalog catalog = chain.catalog();
    const sinks::EventTopics topics(catalog.tables(), config->kafka.topic_per_event);
    std::string last_topic;
    for (std::size_t t = 0; t < catalog.tables().size(); ++t) {
      const schema::EventTable& table = catalog.tables()[t];
      const std::string topic = chain.name + "." + topics.suffixes[topics.topic_of[t]];
      const std::string schema = sinks::event_message_schema(table, catalog.arg_json_schemas(t));
      if (args.out_dir) {
        const std::string path = *args.out_dir + "/" + chain.name + ".events." + table.contract + "." + table.event + ".json";
        std::ofstream out(path, std::ios::trunc);
        out << schema << "\n";
        if (!out.flush()) {
          std::cerr << "chainidx: cannot write " << path << ": " << std::strerror(errno) << "\n";
          return app::kExitFatal;
        }
        ++files;
        continue;
      }
      if (topic != last_topic) {
        if (!last_topic.empty()) all += "},";
        schema::append_json_string(all, topic);
        all += ":{";
        last_topic = topic;
      } else {
        all += ",";
      }
      schema::append_json_string(all, table.event);
      all += ":" + schema;
    }
    if (!last_topic.empty()) all += "},";
  }
  if (args.out_dir) {
    std::cout << "wrote " << files << " schema(s) to " << *args.out_dir << "\n";
    return app::kExitOk;
  }
  if (all.back() == ',') all.pop_back();
  std::cout << all << "}\n";
  return app::kExitOk;
}

int devbroker(const Args& args) {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);  // before librdkafka starts its threads
  try {
    sinks::DevBroker broker(args.brokers);
    for (const auto& t : args.topics) broker.create_topic(t, args.partitions);
    std::cout << "bootstrap: " << broker.bootstrap_servers() << std::endl;
    if (args.bootstrap_file) {
      std::string tmp = *args.bootstrap_file + ".tmp";
      std::ofstream(tmp) << broker.bootstrap_servers() << "\n";
      std::rename(tmp.c_str(), args.bootstrap_file->c_str());
    }
    int sig = 0;
    sigwait(&set, &sig);
    std::cout << "devbroker: stopping" << std::endl;
    return 0;
  } catch (const std::exception& e) {
    std::cerr << "chainidx devbroker: " << e.what() << "\n";
    return app::kExitFatal;
  }
}

std::atomic<bool> g_stop_requested{false};
extern "C" void on_startup_signal(int) { g_stop_requested = true; }

// This process's writer claim: unique per start, and telling where it runs.
std::string instance_id() {
  std::random_device rd;
  char buf[17];
  std::snprintf(buf, sizeof buf, "%08x%08x", rd(), rd());
  return buf;
}

std::string host_name() {
  char host[256] = "";
  gethostname(host, sizeof host - 1);
  return host;
}

// Runs a start-up step until it works: trouble with a peer is retried with backoff and logged
// (a broker or database outage at start is waited out); a refusal that no retry changes is
// returned as its exit code. nullopt when done, or when a stop was requested (then `stopped`).
// `waiting` (optional) hears what is waited for, for the probes.
// `stopping` says when to give up (a signal, or this chain's lease lost).
std::optional<int> until_done(const char* component, const std::function<void()>& step, bool& stopped,
                              const std::function<void(const std::string&)>& waiting = nullptr,
                              const std::function<bool()>& stopping = [] { return g_stop_requested.load(); }) {
  ingest::BackoffPolicy backoff{std::chrono::milliseconds(500), std::chrono::milliseconds(10000)};
  std::mt19937 rng{std::random_device{}()};
  for (unsigned attempt = 0;; ++attempt) {
    try {
      step();
      return std::nullopt;
    } catch (const sinks::SinkError& e) {
      if (e.kind() == sinks::SinkError::Kind::kFenced) {
        spdlog::error("event=halt exit_code={} message=\"{}\"", int(app::kExitFenced), e.what());
        return app::kExitFenced;
      }
      if (e.kind() == sinks::SinkError::Kind::kRefused) {
        spdlog::error("event=startup_failed component={} message=\"{}\"", component, e.what());
        return app::kExitSinkRefused;
      }
      auto delay = backoff.delay(attempt, std::uniform_real_distribution<double>(0, 1)(rng));
      spdlog::warn("event=startup_wait component={} attempt={} backoff_ms={} reason=\"{}\"", component, attempt + 1,
                   delay.count(), e.what());
      if (waiting) waiting(std::string("waiting for ") + component + ": " + e.what());
      for (auto waited = std::chrono::milliseconds(0); waited < delay; waited += std::chrono::milliseconds(50)) {
        if (stopping()) {
          stopped = true;
          return std::nullopt;
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
      }
    }
    if (stopping()) {
      stopped = true;
      return std::nullopt;
    }
  }
}

// A pipeline task that threw: its exit code (fatal), the exception logged.
int crashed(std::exception_ptr e, const std::string& chain) {
  try {
    std::rethrow_exception(e);
  } catch (const std::exception& ex) {
    spdlog::critical("event=crash chain={} message=\"{}\"", chain, ex.what());
  } catch (...) {
    spdlog::critical("event=crash chain={} message=\"unknown exception\"", chain);
  }
  return app::kExitFatal;
}

// `chainidx replay`: runs `task` on `io` until it ends; SIGINT/SIGTERM ask the pipeline to stop
// (`action` says what that means in the log). Its exit code, or kExitFatal when it threw.
int drive(boost::asio::io_context& io, app::Pipeline& pipeline, ingest::Task<int> task, const char* action, const std::string& chain) {
  boost::asio::signal_set signals(io, SIGINT, SIGTERM);
  signals.async_wait([&](const boost::system::error_code& ec, int sig) {
    if (ec) return;
    spdlog::info("event=signal signal={} action=\"{}\"", sig, action);
    pipeline.request_stop();
  });
  if (g_stop_requested) pipeline.request_stop();
  int exit_code = app::kExitFatal;
  boost::asio::co_spawn(io, std::move(task), [&](std::exception_ptr e, int code) {
    signals.cancel();
    exit_code = e ? crashed(e, chain) : code;
  });
  io.run();
  return exit_code;
}

// Runs an io_context on a thread of its own while start-up blocks this one; finish() (or the
// destructor) stops it and joins, leaving the io_context's pending work for the next run().
class StartupServer {
 public:
  explicit StartupServer(boost::asio::io_context& io)
      : io_(io), work_(boost::asio::make_work_guard(io)), thread_([&io] { io.run(); }) {}
  ~StartupServer() { finish(); }
  void finish() {
    if (!thread_.joinable()) return;
    work_.reset();
    io_.stop();
    thread_.join();
    io_.restart();
  }

 private:
  boost::asio::io_context& io_;
  boost::asio::executor_work_guard<boost::asio::io_context::executor_type> work_;
  std::thread thread_;
};

// One chain of `chainidx run`: its config, status, metrics and admin API, and the io_context its
// thread runs (the pipeline's, and the one the operations server reads the status on).
struct ChainRun {
  ChainRun(app::Config c, std::size_t chains)
      : config(std::move(c)), metrics(config.chain.name, app::kVersion, app::kRevision), several(chains > 1) {}

  app::Config config;  ///< config.chain is this chain
  boost::asio::io_context io{1};
  app::LiveStatus status;
  app::Metrics metrics;
  std::unique_ptr<app::AdminApi> admin;
  const bool several;  ///< one of several chains in the process

  std::atomic<bool> stop{false};  ///< the process is stopping, or (briefly) this chain's lease was lost at start-up
  std::mutex mutex;               ///< guards pipeline
  app::Pipeline* pipeline = nullptr;
  std::atomic<bool> done{false};
  int exit_code = app::kExitOk;  ///< once done

  bool stopping() const { return stop || g_stop_requested; }
  /// From any thread: stop start-up, or the pipeline after its batch in flight.
  void request_stop() {
    stop = true;
    boost::asio::post(io, [this] {
      std::lock_guard guard(mutex);
      if (pipeline) pipeline->request_stop();
    });
  }
};

// Start-up (Postgres, the election, Kafka) and the pipeline of one chain, on the chain's thread;
// its exit code. The status is changed only on the chain's io_context, which a start-up thread
// runs until the pipeline takes it over.
int run_chain(ChainRun& ch, const std::string& brokers, const std::string& instance) {
  const app::Config& config = ch.config;
  app::LiveStatus& status = ch.status;
  boost::asio::io_context& io = ch.io;
  boost::asio::post(io, [&status] {
    status.starting = "connecting to postgres";
    status.starting_since = app::LiveStatus::Clock::now();
    status.role.clear();
    status.halted.clear();  // a chain among several starts again after a lost lease
    status.waiting_since.reset();
    status.sink_problem.clear();
  });
  StartupServer startup(io);
  auto waiting = [&](const std::string& what) { boost::asio::post(io, [&status, what] { status.starting = what; }); };
  auto stopping = [&ch] { return ch.stopping(); };

  bool stopped = false;
  sinks::PostgresSink postgres(config.postgres.url, config.chain.name);
  postgres.set_event_tables(config.chain.catalog().tables());
  postgres.set_raw_logs(config.chain.raw_logs);
  if (auto code = until_done("postgres", [&] { postgres.migrate(); }, stopped, waiting, stopping)) return *code;
  if (stopped) return app::kExitOk;

  // Why the lease was lost (set by the lease's thread: declared before the lease, which stops
  // that thread when it goes).
  std::mutex lost_mutex;
  std::string lost_reason;
  // One process of the chain leads; the others wait here as hot standbys (Postgres reached,
  // probes answering) until the leader exits, dies or lets its lease run out.
  app::LeaderLease lease(config.postgres.url, config.chain.name, {instance, host_name(), static_cast<int>(getpid())},
                         std::chrono::seconds(config.ha.lease_seconds));
  sinks::PostgresSink::Leadership leadership;
  std::string followed;
  for (;;) {
    if (auto code = until_done("postgres", [&] { leadership = lease.try_lead(); }, stopped, waiting, stopping)) return *code;
    if (stopped) return app::kExitOk;
    if (leadership.ours) break;
    const std::string about = app::LeaderLease::describe(leadership);
    if (leadership.instance + "/" + std::to_string(leadership.epoch) != followed) {
      followed = leadership.instance + "/" + std::to_string(leadership.epoch);
      spdlog::info("event=standby chain={} {} lease_seconds={} action=\"taking over when it exits, dies or lets its lease run out\"",
                   config.chain.name, about, config.ha.lease_seconds);
    }
    boost::asio::post(io, [&status, about] {
      status.starting.clear();
      status.starting_since.reset();
      status.role = "standby";
      status.leader = about;
    });
    for (int i = 0; i < 20 && !ch.stopping(); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(50));
    if (ch.stopping()) return app::kExitOk;
  }
  spdlog::info("event=leader chain={} epoch={} instance={}", config.chain.name, leadership.epoch, instance);
  postgres.write_as(instance, leadership.epoch);
  // The lease is renewed from now on, also while start-up waits for Kafka. Losing it stops
  // start-up, or the pipeline once it runs, with the fenced exit code.
  lease.keep([&](const std::string& reason) {
    std::lock_guard guard(lost_mutex);
    lost_reason = reason;
    ch.stop = true;
    boost::asio::post(io, [&ch, reason] {
      std::lock_guard guard(ch.mutex);
      if (ch.pipeline) ch.pipeline->fence(reason);
    });
  });
  auto fenced = [&]() -> std::optional<int> {
    std::lock_guard guard(lost_mutex);
    if (lost_reason.empty()) return std::nullopt;
    spdlog::error("event=halt chain={} exit_code={} message=\"{}\"", config.chain.name, int(app::kExitFenced), lost_reason);
    return app::kExitFenced;
  };
  boost::asio::post(io, [&status, epoch = leadership.epoch] {
    status.role = "leader";
    status.epoch = epoch;
    status.leader.clear();
    status.starting_since = app::LiveStatus::Clock::now();
  });
  waiting("connecting to kafka");
  sinks::KafkaSink kafka(kafka_sink_config(config, brokers));
  if (auto code = until_done("kafka", [&] {
        kafka.ensure_topics();
        kafka.start();
        kafka.load_published_tip();
      }, stopped, waiting, stopping))
    return *code;
  if (stopped) return fenced().value_or(app::kExitOk);

  startup.finish();  // the io_context is this thread's again
  // After any "waiting" still queued (handlers run in the order posted).
  boost::asio::post(io, [&status] {
    status.starting.clear();
    status.starting_since.reset();
  });
  int code = app::kExitFatal;
  {
    app::Pipeline pipeline(io, config, {&kafka, &postgres}, postgres);
    pipeline.observe(status, ch.metrics);
    {
      std::lock_guard guard(ch.mutex);
      ch.pipeline = &pipeline;
    }
    if (ch.stopping()) pipeline.request_stop();
    if (auto reason = [&] { std::lock_guard g(lost_mutex); return lost_reason; }(); !reason.empty()) pipeline.fence(reason);
    boost::asio::co_spawn(io, pipeline.run(), [&](std::exception_ptr e, int c) {
      code = e ? crashed(e, config.chain.name) : c;
      // Said here, on the thread the probes read the halt on, so that the log says it first.
      if (code == app::kExitDeepReorg && config.server.hold_on_halt && !ch.stopping())
        spdlog::warn("event=halted_holding chain={} exit_code={} action=\"serving /healthz (503) and /metrics until SIGTERM or SIGINT\"",
                     config.chain.name, code);
    });
    io.run();
    io.restart();
    std::lock_guard guard(ch.mutex);
    ch.pipeline = nullptr;
    status.refresh = nullptr;  // it reads the pipeline
  }
  lease.stop();
  if (code == app::kExitOk) return fenced().value_or(code);
  return code;
}

// The chain's thread: run_chain, again after a lost lease when the process indexes several
// chains (the chain waits as a standby again rather than stopping the others with exit 6), then
// the chain's io_context keeps answering the operations server's reads until the process stops.
void chain_thread(ChainRun& ch, const std::string& brokers, const std::string& instance) {
  if (ch.several) app::set_log_chain(ch.config.chain.name);
  int code = app::kExitFatal;
  for (;;) {
    try {
      code = run_chain(ch, brokers, instance);
    } catch (const std::exception& e) {
      spdlog::error("event=startup_failed chain={} message=\"{}\"", ch.config.chain.name, e.what());
      code = app::kExitFatal;
    }
    if (!(ch.several && code == app::kExitFenced && !g_stop_requested)) break;
    spdlog::warn("event=standby_again chain={} action=\"another process leads the chain now; waiting to take over\"", ch.config.chain.name);
    ch.stop = false;
  }
  if (code != app::kExitOk && !g_stop_requested) {
    spdlog::error("event=chain_stopped chain={} exit_code={}{}", ch.config.chain.name, code,
                  ch.several ? " action=\"the other chains go on\"" : "");
    boost::asio::post(ch.io, [&ch, code] {
      if (ch.status.halted.empty()) ch.status.halted = "stopped with exit code " + std::to_string(code) + " (see the log)";
      ch.status.starting.clear();
    });
  }
  ch.exit_code = code;
  ch.done = true;
  auto work = boost::asio::make_work_guard(ch.io);
  ch.io.run();
}

int run(const Args& args) {
  auto config = load_or_report(args.config);
  if (!config) return app::kExitConfig;
  if (!app::setup_logging(config->log.format, config->log.level)) return app::kExitConfig;
  // SIGINT and SIGTERM are taken by this thread alone (sigtimedwait below); every thread started
  // from here on, librdkafka's included, inherits the mask.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  std::optional<sinks::DevBroker> embedded;
  std::string brokers = config->kafka.brokers;
  if (brokers == "embedded") {
    embedded.emplace(1);
    for (const auto& chain : config->chains)
      for (const auto& topic : sinks::topic_names(chain.name, sinks::EventTopics(chain.catalog().tables(), config->kafka.topic_per_event)))
        embedded->create_topic(topic, static_cast<int>(config->kafka.partitions));
    brokers = embedded->bootstrap_servers();
    spdlog::info("event=embedded_broker bootstrap={}", brokers);
  }
  const std::string instance = instance_id();
  std::vector<std::string> names;
  for (const auto& chain : config->chains) names.push_back(chain.name);
  std::vector<std::unique_ptr<ChainRun>> chains;
  for (std::size_t i = 0; i < config->chains.size(); ++i) {
    auto ch = std::make_unique<ChainRun>(config->for_chain(i), config->chains.size());
    const app::Config& c = ch->config;
    std::string endpoint_names;
    for (const auto& e : c.chain.endpoints)
      endpoint_names += (endpoint_names.empty() ? "" : ",") + (e.name.empty() ? ingest::endpoint_label(e.http) : e.name);
    spdlog::info("event=start chain={} chain_id={} confirmations={} endpoints={} postgres={} kafka={} kafka_security={}{}{} instance={}",
                 c.chain.name, c.chain.chain_id, c.chain.confirm_tag.empty() ? std::to_string(c.chain.confirmations) : c.chain.confirm_tag,
                 endpoint_names, schema::redact_postgres_url(c.postgres.url), brokers, c.kafka.security_protocol,
                 c.kafka.sasl_mechanism.empty() ? "" : "/", c.kafka.sasl_mechanism, instance);
    ch->status.chain = c.chain.name;
    ch->status.starting = "waiting to start";
    ch->status.starting_since = app::LiveStatus::Clock::now();
    chains.push_back(std::move(ch));
  }
  try {
    for (const auto& chain : config->chains)
      if (!chain.tls_ca_file.empty()) ingest::trust_ca_file(chain.tls_ca_file);
    // Replay jobs: their progress as metrics, and (with server.admin_token) the admin API that
    // starts them as `chainidx replay` processes with this config.
    for (auto& ch : chains)
      ch->admin = std::make_unique<app::AdminApi>(
          app::AdminApi::Settings{config->server.admin_token, std::filesystem::absolute(*args.config).string(), config->postgres.url,
                                  ch->config.chain.name, names, host_name() + "-" + instance},
          &ch->metrics);
    spdlog::info("event=admin_api enabled={}{}", !config->server.admin_token.empty(),
                 config->server.admin_token.empty() ? " hint=\"set server.admin_token to start replays over HTTP\"" : "");
    // The operations server comes first, on a thread of its own, so that the probes answer while
    // start-up waits for Postgres or Kafka (healthy, not ready, the reason given), and a port in
    // use stops at once.
    boost::asio::io_context ops_io(1);
    std::vector<app::OpsServer::Chain> views;
    for (auto& ch : chains) views.push_back({ch->io.get_executor(), &ch->status, &ch->metrics, ch->admin.get()});
    app::OpsServer server(ops_io, config->server.listen, std::move(views),
                          {std::chrono::seconds(config->server.unhealthy_after_seconds), config->server.ready_max_lag_blocks});
    std::thread ops_thread([&ops_io] { ops_io.run(); });

    std::vector<std::thread> threads;
    for (auto& ch : chains) threads.emplace_back([&ch, &brokers, &instance] { chain_thread(*ch, brokers, instance); });

    // Until every chain is done, or a signal: a signal stops every chain (each finishes its batch
    // in flight). A deep-reorg halt with server.hold_on_halt keeps the process serving /healthz
    // (503, with the reason) and /metrics (chainidx_halted 1) until a signal: an orchestrator's
    // probe and an alert see the halt, where an exit would only show a restart loop.
    bool signalled = false, holding = false;
    const timespec tick{0, 100 * 1000 * 1000};
    for (;;) {
      const int sig = sigtimedwait(&signals, nullptr, &tick);
      if (sig > 0) {
        spdlog::info("event=signal signal={} action=\"{}\"", sig,
                     holding ? "exit" : "stop taking heads, finish the batch in flight");
        signalled = true;
        g_stop_requested = true;
        for (auto& ch : chains) ch->request_stop();
      }
      const bool all_done = std::all_of(chains.begin(), chains.end(), [](const auto& ch) { return ch->done.load(); });
      if (!all_done) continue;
      const bool halted = std::any_of(chains.begin(), chains.end(), [](const auto& ch) { return ch->exit_code == app::kExitDeepReorg; });
      if (signalled || !halted || !config->server.hold_on_halt) break;
      holding = true;
    }
    boost::asio::post(ops_io, [&server] { server.stop(); });
    ops_thread.join();
    for (auto& ch : chains) ch->io.stop();
    for (auto& t : threads) t.join();
    // The first chain's trouble, in the config's order.
    for (const auto& ch : chains)
      if (ch->exit_code != app::kExitOk) return ch->exit_code;
    return app::kExitOk;
  } catch (const boost::system::system_error& e) {
    spdlog::error("event=startup_failed message=\"{}\"", e.what());
    return app::kExitFatal;
  } catch (const app::ListenError& e) {
    spdlog::error("event=startup_failed message=\"{}\"", e.what());
    return app::kExitConfig;
  }
}

int replay(const Args& args) {
  if (!args.from || !args.to) {
    std::cerr << "chainidx replay: --from N and --to M are required (the blocks to re-index, both included)\n";
    return app::kExitConfig;
  }
  if (*args.from > *args.to) {
    std::cerr << "chainidx replay: --from " << *args.from << " is above --to " << *args.to << "\n";
    return app::kExitConfig;
  }
  auto loaded = load_or_report(args.config);
  if (!loaded) return app::kExitConfig;
  std::string names;
  std::optional<std::size_t> which;
  for (std::size_t i = 0; i < loaded->chains.size(); ++i) {
    names += (names.empty() ? "" : ", ") + loaded->chains[i].name;
    if (loaded->chains[i].name == args.chain || (args.chain.empty() && loaded->chains.size() == 1)) which = i;
  }
  if (!which) {
    std::cerr << "chainidx replay: " << (args.chain.empty() ? "the config has several chains" : "--chain \"" + args.chain + "\" is not in the config")
              << "; name one with --chain (" << names << ")\n";
    return app::kExitConfig;
  }
  auto config = std::optional<app::Config>(loaded->for_chain(*which));
  if (!app::setup_logging(config->log.format, config->log.level)) return app::kExitConfig;
  std::signal(SIGINT, on_startup_signal);
  std::signal(SIGTERM, on_startup_signal);
  app::ReplayRequest request;
  request.first = *args.from;
  request.last = *args.to;
  request.chunk_blocks = args.chunk_blocks;
  request.lease_seconds = args.lease_seconds;
  request.worker = args.worker.empty() ? host_name() + "-" + instance_id() : args.worker;
  request.write_postgres = args.to_postgres;
  std::string brokers = config->kafka.brokers;
  std::optional<sinks::DevBroker> embedded;
  if (args.to_kafka && brokers == "embedded") {
    embedded.emplace(1);
    brokers = embedded->bootstrap_servers();
  }
  spdlog::info("event=replay_command chain={} from={} to={} sinks={}{}{} worker={} postgres={}", config->chain.name, request.first,
               request.last, args.to_postgres ? "postgres" : "", args.to_postgres && args.to_kafka ? "," : "",
               args.to_kafka ? "kafka" : "", request.worker, schema::redact_postgres_url(config->postgres.url));
  try {
    if (!config->chain.tls_ca_file.empty()) ingest::trust_ca_file(config->chain.tls_ca_file);
    bool stopped = false;
    sinks::PostgresSink postgres(config->postgres.url, config->chain.name);
    postgres.set_event_tables(config->chain.catalog().tables());
    postgres.set_raw_logs(config->chain.raw_logs);
    if (auto code = until_done("postgres", [&] { postgres.migrate(); }, stopped)) return *code;
    if (stopped) return app::kExitOk;
    std::optional<sinks::KafkaSink> kafka;
    std::vector<sinks::Sink*> sinks;
    if (args.to_kafka) {
      sinks::KafkaSinkConfig kc = kafka_sink_config(*config, brokers);
      kc.topic_prefix = args.topic_prefix;
      kc.replay_job = request.job() + "-" + request.worker;
      kafka.emplace(kc);
      if (auto code = until_done("kafka", [&] {
            kafka->ensure_topics();
            kafka->start();
          }, stopped))
        return *code;
      if (stopped) return app::kExitOk;
      sinks.push_back(&*kafka);
    }
    boost::asio::io_context io(1);
    app::Pipeline pipeline(io, *config, sinks, postgres);
    return drive(io, pipeline, pipeline.replay(request, postgres),
                 "finish the batch in flight; the same replay continues where it stopped", config->chain.name);
  } catch (const std::exception& e) {
    spdlog::error("event=startup_failed message=\"{}\"", e.what());
    return app::kExitFatal;
  }
}

}  // namespace

int main(int argc, char** argv) {
  Args args;
  CLI::App cli{"chainidx: an event-streaming indexer for EVM chains", "chainidx"};
  describe_commands(cli, args);
  if (argc > 1 && argv[1][0] != '-') {
    bool known = false;
    for (const auto* sub : cli.get_subcommands({})) known |= sub->get_name() == argv[1];
    if (!known) {
      std::cerr << "chainidx: unknown command \"" << argv[1] << "\"; the commands are run, replay, check-config and devbroker "
                << "(chainidx --help)\n";
      return app::kExitConfig;
    }
  }
  try {
    cli.parse(argc, argv);
  } catch (const CLI::Success& e) {
    return cli.exit(e);  // --help, --version
  } catch (const CLI::ParseError& e) {
    cli.exit(e);  // the error, naming the argument, and where to find help
    return app::kExitConfig;
  }
  if (args.command == "run") return run(args);
  if (args.command == "replay") return replay(args);
  if (args.command == "check-config") return check_config(args);
  if (args.command == "event-schemas") return event_schemas(args);
  return devbroker(args);
}

// chainidx: the command-line entry point.

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/signal_set.hpp>
#include <CLI/CLI.hpp>
#include <spdlog/spdlog.h>

#include <unistd.h>

#include <atomic>
#include <csignal>
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
#include "ingest/backoff.hpp"
#include "ingest/tls_context.hpp"
#include "ingest/url.hpp"
#include "schema/redact.hpp"
#include "sinks/dev_broker.hpp"
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
  std::uint64_t chunk_blocks = 5000;
  int lease_seconds = 60;
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
  replay->add_option("--worker", a.worker, "this process's name in the chunk table (default: host and a random id)")->check(kName)->type_name("NAME");
  replay->add_option("--chunk-blocks", a.chunk_blocks, "blocks per chunk: the unit of sharing and of resuming")
      ->check(CLI::Range(1, 1000000))
      ->capture_default_str();
  replay->add_option("--lease-seconds", a.lease_seconds, "a chunk whose worker stopped renewing goes to another after this")
      ->check(CLI::Range(1, 1000000))
      ->capture_default_str();
  config(cli.add_subcommand("check-config", "validate a config file and exit (0 when valid)"));
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
  std::cout << "config ok: chain " << config->chain.name << " (chain id " << config->chain.chain_id << "), confirmations "
            << (config->chain.confirm_tag.empty() ? std::to_string(config->chain.confirmations) : config->chain.confirm_tag) << ", " << config->chain.endpoints.size() << " endpoint(s):";
  for (auto& e : config->chain.endpoints)
    std::cout << " " << (e.name.empty() ? ingest::redact_endpoint_url(e.http) : e.name + " (" + ingest::redact_endpoint_url(e.http) + ")");
  std::cout << ", postgres " << schema::redact_postgres_url(config->postgres.url) << ", kafka " << config->kafka.brokers << "\n";
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
std::optional<int> until_done(const char* component, const std::function<void()>& step, bool& stopped,
                              const std::function<void(const std::string&)>& waiting = nullptr) {
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
        if (g_stop_requested) {
          stopped = true;
          return std::nullopt;
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
      }
    }
    if (g_stop_requested) {
      stopped = true;
      return std::nullopt;
    }
  }
}

// Runs `task` on `io` until it ends; SIGINT/SIGTERM ask the pipeline to stop (`action` says what
// that means in the log). Its exit code, or kExitFatal when it threw.
// With `server` and `hold_on_halt`, a deep-reorg halt keeps the process up, serving /healthz (503,
// with the reason) and /metrics (chainidx_halted 1), until a signal: an orchestrator's probe and an
// alert see the halt, where an exit would only show a restart loop.
int drive(boost::asio::io_context& io, app::Pipeline& pipeline, ingest::Task<int> task, const char* action,
          app::OpsServer* server = nullptr, bool hold_on_halt = false) {
  boost::asio::signal_set signals(io, SIGINT, SIGTERM);
  bool signalled = g_stop_requested;
  signals.async_wait([&](const boost::system::error_code& ec, int sig) {
    if (ec) return;
    signalled = true;
    spdlog::info("event=signal signal={} action=\"{}\"", sig, action);
    pipeline.request_stop();
  });
  if (g_stop_requested) pipeline.request_stop();
  int exit_code = app::kExitFatal;
  boost::asio::co_spawn(io, std::move(task), [&](std::exception_ptr e, int code) {
    signals.cancel();
    exit_code = e ? app::kExitFatal : code;
    if (server && hold_on_halt && exit_code == app::kExitDeepReorg && !signalled) {
      spdlog::warn("event=halted_holding exit_code={} action=\"serving /healthz (503) and /metrics until SIGTERM or SIGINT\"", exit_code);
      signals.async_wait([server](const boost::system::error_code& ec, int sig) {
        if (ec) return;
        spdlog::info("event=signal signal={} action=\"exit\"", sig);
        server->stop();
      });
      return;
    }
    if (server) server->stop();
    if (e) try {
        std::rethrow_exception(e);
      } catch (const std::exception& ex) {
        spdlog::critical("event=crash message=\"{}\"", ex.what());
      }
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

int run(const Args& args) {
  auto config = load_or_report(args.config);
  if (!config) return app::kExitConfig;
  if (!app::setup_logging(config->log.format, config->log.level)) return app::kExitConfig;
  // Until the pipeline's own handler takes over, a signal asks the start-up steps to give up.
  std::signal(SIGINT, on_startup_signal);
  std::signal(SIGTERM, on_startup_signal);
  std::optional<sinks::DevBroker> embedded;
  std::string brokers = config->kafka.brokers;
  if (brokers == "embedded") {
    embedded.emplace(1);
    for (const char* suffix : {".blocks", ".transactions", ".logs"})
      embedded->create_topic(config->chain.name + suffix, static_cast<int>(config->kafka.partitions));
    brokers = embedded->bootstrap_servers();
    spdlog::info("event=embedded_broker bootstrap={}", brokers);
  }
  const std::string instance = instance_id();
  std::string endpoint_names;
  for (const auto& e : config->chain.endpoints)
    endpoint_names += (endpoint_names.empty() ? "" : ",") + (e.name.empty() ? ingest::endpoint_label(e.http) : e.name);
  spdlog::info("event=start chain={} chain_id={} confirmations={} endpoints={} postgres={} kafka={} kafka_security={}{}{} instance={}",
               config->chain.name, config->chain.chain_id,
               config->chain.confirm_tag.empty() ? std::to_string(config->chain.confirmations) : config->chain.confirm_tag, endpoint_names,
               schema::redact_postgres_url(config->postgres.url), brokers, config->kafka.security_protocol,
               config->kafka.sasl_mechanism.empty() ? "" : "/", config->kafka.sasl_mechanism, instance);
  try {
    if (!config->chain.tls_ca_file.empty()) ingest::trust_ca_file(config->chain.tls_ca_file);
    // The operations server comes first, so that the probes answer while start-up waits for
    // Postgres or Kafka (healthy, not ready, the reason given), and a port in use stops at once.
    boost::asio::io_context io(1);
    app::LiveStatus status;
    status.chain = config->chain.name;
    status.starting = "connecting to postgres";
    status.starting_since = app::LiveStatus::Clock::now();
    app::Metrics metrics(config->chain.name, app::kVersion, app::kRevision);
    // Replay jobs: their progress as metrics, and (with server.admin_token) the admin API that
    // starts them as `chainidx replay` processes with this config.
    app::AdminApi admin({config->server.admin_token, std::filesystem::absolute(*args.config).string(), config->postgres.url,
                         config->chain.name, host_name() + "-" + instance},
                        &metrics);
    spdlog::info("event=admin_api enabled={}{}", !config->server.admin_token.empty(),
                 config->server.admin_token.empty() ? " hint=\"set server.admin_token to start replays over HTTP\"" : "");
    app::OpsServer server(io, config->server.listen, status, metrics,
                          {std::chrono::seconds(config->server.unhealthy_after_seconds), config->server.ready_max_lag_blocks}, &admin);
    // Until the pipeline runs, the io_context runs on a thread of its own for the server; the
    // status is changed only by what is posted to it.
    StartupServer startup(io);
    auto waiting = [&](const std::string& what) { boost::asio::post(io, [&status, what] { status.starting = what; }); };

    bool stopped = false;
    sinks::PostgresSink postgres(config->postgres.url, config->chain.name);
    if (auto code = until_done("postgres", [&] { postgres.migrate(); }, stopped, waiting)) return *code;
    if (stopped) return app::kExitOk;

    // One process of the chain leads; the others wait here as hot standbys (Postgres reached,
    // probes answering) until the leader exits, dies or lets its lease run out.
    app::LeaderLease lease(config->postgres.url, config->chain.name, {instance, host_name(), static_cast<int>(getpid())},
                           std::chrono::seconds(config->ha.lease_seconds));
    sinks::PostgresSink::Leadership leadership;
    std::string followed;
    for (;;) {
      if (auto code = until_done("postgres", [&] { leadership = lease.try_lead(); }, stopped, waiting)) return *code;
      if (stopped) return app::kExitOk;
      if (leadership.ours) break;
      const std::string about = app::LeaderLease::describe(leadership);
      if (leadership.instance + "/" + std::to_string(leadership.epoch) != followed) {
        followed = leadership.instance + "/" + std::to_string(leadership.epoch);
        spdlog::info("event=standby chain={} {} lease_seconds={} action=\"taking over when it exits, dies or lets its lease run out\"",
                     config->chain.name, about, config->ha.lease_seconds);
      }
      boost::asio::post(io, [&status, about] {
        status.starting.clear();
        status.starting_since.reset();
        status.role = "standby";
        status.leader = about;
      });
      for (int i = 0; i < 20 && !g_stop_requested; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(50));
      if (g_stop_requested) return app::kExitOk;
    }
    spdlog::info("event=leader chain={} epoch={} instance={}", config->chain.name, leadership.epoch, instance);
    postgres.write_as(instance, leadership.epoch);
    // The lease is renewed from now on, also while start-up waits for Kafka. Losing it stops
    // start-up, or the pipeline once it runs, with the fenced exit code.
    struct Lost {
      std::mutex mutex;
      std::string reason;
      app::Pipeline* pipeline = nullptr;
    } lost;
    lease.keep([&lost, &io](const std::string& reason) {
      std::lock_guard guard(lost.mutex);
      lost.reason = reason;
      if (lost.pipeline) boost::asio::post(io, [p = lost.pipeline, reason] { p->fence(reason); });
      else g_stop_requested = true;
    });
    auto fenced_at_start = [&lost]() -> std::optional<int> {
      std::lock_guard guard(lost.mutex);
      if (lost.reason.empty()) return std::nullopt;
      spdlog::error("event=halt exit_code={} message=\"{}\"", int(app::kExitFenced), lost.reason);
      return app::kExitFenced;
    };
    boost::asio::post(io, [&status, epoch = leadership.epoch] {
      status.role = "leader";
      status.epoch = epoch;
      status.leader.clear();
      status.starting_since = app::LiveStatus::Clock::now();
    });
    waiting("connecting to kafka");
    sinks::KafkaSink kafka(kafka_sink_config(*config, brokers));
    if (auto code = until_done("kafka", [&] {
          kafka.ensure_topics();
          kafka.start();
          kafka.load_published_tip();
        }, stopped, waiting))
      return *code;
    if (stopped) return fenced_at_start().value_or(app::kExitOk);

    startup.finish();  // the io_context is this thread's again
    // After any "waiting" still queued (handlers run in the order posted).
    boost::asio::post(io, [&status] {
      status.starting.clear();
      status.starting_since.reset();
    });
    app::Pipeline pipeline(io, *config, {&kafka, &postgres}, postgres);
    pipeline.observe(status, metrics);
    {
      std::lock_guard guard(lost.mutex);
      lost.pipeline = &pipeline;
    }
    const int code =
        drive(io, pipeline, pipeline.run(), "stop taking heads, finish the batch in flight", &server, config->server.hold_on_halt);
    lease.stop();
    if (code == app::kExitOk) return fenced_at_start().value_or(code);
    return code;
  } catch (const sinks::SinkError& e) {
    spdlog::error("event=startup_failed message=\"{}\"", e.what());
    return app::kExitFatal;
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
  auto config = load_or_report(args.config);
  if (!config) return app::kExitConfig;
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
                 "finish the batch in flight; the same replay continues where it stopped");
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
  return devbroker(args);
}

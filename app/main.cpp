// chainidx: the command-line entry point.

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>
#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>

#include <unistd.h>

#include <atomic>
#include <csignal>
#include <fstream>
#include <functional>
#include <random>
#include <thread>
#include <iostream>
#include <optional>
#include <sstream>

#include "app/config.hpp"
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

constexpr const char* kUsage = R"(chainidx: an event-streaming indexer for EVM chains

usage:
  chainidx run --config FILE            follow the chain and index confirmed blocks
  chainidx replay --config FILE --from N --to M [--sinks postgres,kafka] [--topic-prefix P]
                  [--worker NAME] [--chunk-blocks 5000] [--lease-seconds 60]
                                        re-index blocks N..M (idempotent, resumable; several
                                        processes given the same range share the work)
  chainidx check-config --config FILE   validate a config file and exit (0 when valid)
  chainidx devbroker [--bootstrap-file FILE] [--brokers N] [--topics A,B,C --partitions N]
                                        run a local Kafka-protocol broker for development
                                        (librdkafka's mock cluster: it has no CreateTopics
                                        API, so topics can be made here up front)
  chainidx --help | --version
)";

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

// A whole decimal number, or nullopt.
std::optional<std::uint64_t> number_arg(const std::string& text) {
  if (text.empty() || text.size() > 19 || text.find_first_not_of("0123456789") != std::string::npos) return std::nullopt;
  return std::stoull(text);
}

std::optional<Args> parse_args(int argc, char** argv) {
  if (argc < 2) return std::nullopt;
  Args a;
  a.command = argv[1];
  for (int i = 2; i < argc; ++i) {
    std::string arg = argv[i];
    auto value = [&]() -> std::optional<std::string> {
      if (i + 1 >= argc) return std::nullopt;
      return std::string(argv[++i]);
    };
    if (arg == "--config") a.config = value();
    else if (arg == "--bootstrap-file") a.bootstrap_file = value();
    else if (arg == "--brokers" || arg == "--partitions") {
      auto v = value();
      if (!v || std::atoi(v->c_str()) < 1) return std::nullopt;
      (arg == "--brokers" ? a.brokers : a.partitions) = std::atoi(v->c_str());
    } else if (arg == "--topics") {
      auto v = value();
      if (!v) return std::nullopt;
      std::stringstream ss(*v);
      std::string t;
      while (std::getline(ss, t, ',')) a.topics.push_back(t);
    } else if (arg == "--from" || arg == "--to" || arg == "--chunk-blocks" || arg == "--lease-seconds") {
      auto v = value();
      auto n = v ? number_arg(*v) : std::nullopt;
      if (!n || ((arg == "--chunk-blocks" || arg == "--lease-seconds") && (*n == 0 || *n > 1000000))) {
        std::cerr << "chainidx: " << arg << " needs a whole number" << (arg == "--chunk-blocks" || arg == "--lease-seconds" ? " from 1 to 1000000" : "")
                  << (v ? ", got \"" + *v + "\"" : std::string()) << "\n";
        return std::nullopt;
      }
      if (arg == "--from") a.from = n;
      else if (arg == "--to") a.to = n;
      else if (arg == "--chunk-blocks") a.chunk_blocks = *n;
      else a.lease_seconds = static_cast<int>(*n);
    } else if (arg == "--sinks") {
      auto v = value();
      a.to_postgres = a.to_kafka = false;
      std::stringstream ss(v.value_or(""));
      std::string one;
      while (std::getline(ss, one, ',')) {
        if (one == "postgres") a.to_postgres = true;
        else if (one == "kafka") a.to_kafka = true;
        else {
          std::cerr << "chainidx: --sinks takes postgres, kafka or postgres,kafka; got \"" << one << "\"\n";
          return std::nullopt;
        }
      }
      if (!a.to_postgres && !a.to_kafka) {
        std::cerr << "chainidx: --sinks needs postgres, kafka or both\n";
        return std::nullopt;
      }
    } else if (arg == "--topic-prefix" || arg == "--worker") {
      auto v = value();
      if (!v || v->empty() || v->find_first_not_of("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-") != std::string::npos) {
        std::cerr << "chainidx: " << arg << " needs letters, digits, '.', '_' or '-'\n";
        return std::nullopt;
      }
      (arg == "--worker" ? a.worker : a.topic_prefix) = *v;
    } else {
      std::cerr << "chainidx: unknown argument " << arg << "\n";
      return std::nullopt;
    }
  }
  return a;
}

// CHAINIDX_LOG_LEVEL: trace, debug, info (the default), warn, error, critical or off. A value
// that is none of these is refused rather than read as "off" (what spdlog would make of it).
bool setup_logging() {
  // One line per event: time, level, key=value pairs. Nothing printed carries a secret:
  // endpoints are named by their configured name or a masked label, the Postgres URL without
  // its password.
  // On standard error, as the README says: standard output stays free for what a command prints.
  spdlog::set_default_logger(spdlog::stderr_logger_mt("chainidx"));
  spdlog::set_pattern("%Y-%m-%dT%H:%M:%S.%eZ level=%l %v", spdlog::pattern_time_type::utc);
  const char* level = std::getenv("CHAINIDX_LOG_LEVEL");
  if (!level || !*level) return true;
  for (const char* known : {"trace", "debug", "info", "warn", "error", "critical", "off"}) {
    if (std::string_view(level) == known) {
      spdlog::set_level(spdlog::level::from_str(level));
      return true;
    }
  }
  std::cerr << "chainidx: CHAINIDX_LOG_LEVEL=\"" << level
            << "\" is not a log level; use one of trace, debug, info, warn, error, critical, off (or unset it for info)\n";
  return false;
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
std::optional<int> until_done(const char* component, const std::function<void()>& step, bool& stopped) {
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
int drive(boost::asio::io_context& io, app::Pipeline& pipeline, ingest::Task<int> task, const char* action) {
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
    exit_code = e ? app::kExitFatal : code;
    if (e) try {
        std::rethrow_exception(e);
      } catch (const std::exception& ex) {
        spdlog::critical("event=crash message=\"{}\"", ex.what());
      }
  });
  io.run();
  return exit_code;
}

int run(const Args& args) {
  auto config = load_or_report(args.config);
  if (!config) return app::kExitConfig;
  if (!setup_logging()) return app::kExitConfig;
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
  spdlog::info("event=start chain={} chain_id={} confirmations={} endpoints={} postgres={} kafka={} instance={}",
               config->chain.name, config->chain.chain_id,
               config->chain.confirm_tag.empty() ? std::to_string(config->chain.confirmations) : config->chain.confirm_tag, endpoint_names,
               schema::redact_postgres_url(config->postgres.url), brokers, instance);
  try {
    if (!config->chain.tls_ca_file.empty()) ingest::trust_ca_file(config->chain.tls_ca_file);
    bool stopped = false;
    sinks::PostgresSink postgres(config->postgres.url, config->chain.name);
    // The newest instance claims the chain; an older one still running writes nothing more.
    if (auto code = until_done("postgres", [&] {
          postgres.migrate();
          postgres.claim_writer(instance, host_name(), static_cast<int>(getpid()));
        }, stopped))
      return *code;
    if (stopped) return app::kExitOk;
    sinks::KafkaSink kafka({brokers, config->chain.name, config->chain.chain_id, config->kafka.partitions,
                            config->kafka.replication_factor, static_cast<int>(config->kafka.transaction_timeout_seconds * 1000),
                            config->kafka.compression});
    if (auto code = until_done("kafka", [&] {
          kafka.ensure_topics();
          kafka.start();
          kafka.load_published_tip();
        }, stopped))
      return *code;
    if (stopped) return app::kExitOk;

    boost::asio::io_context io(1);
    app::Pipeline pipeline(io, *config, {&kafka, &postgres}, postgres);
    return drive(io, pipeline, pipeline.run(), "stop taking heads, finish the batch in flight");
  } catch (const sinks::SinkError& e) {
    spdlog::error("event=startup_failed message=\"{}\"", e.what());
    return app::kExitFatal;
  } catch (const boost::system::system_error& e) {
    spdlog::error("event=startup_failed message=\"{}\"", e.what());
    return app::kExitFatal;
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
  if (!setup_logging()) return app::kExitConfig;
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
      sinks::KafkaSinkConfig kc{brokers, config->chain.name, config->chain.chain_id, config->kafka.partitions,
                                config->kafka.replication_factor, static_cast<int>(config->kafka.transaction_timeout_seconds * 1000),
                                config->kafka.compression};
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
  auto args = parse_args(argc, argv);
  if (!args) {
    std::cerr << kUsage;
    return app::kExitConfig;
  }
  if (args->command == "--help" || args->command == "-h" || args->command == "help") {
    std::cout << kUsage;
    return 0;
  }
  if (args->command == "--version") {
    std::cout << "chainidx 0.1.0\n";
    return 0;
  }
  if (args->command == "run") return run(*args);
  if (args->command == "replay") return replay(*args);
  if (args->command == "check-config") return check_config(*args);
  if (args->command == "devbroker") return devbroker(*args);
  std::cerr << "chainidx: unknown command " << args->command << "\n" << kUsage;
  return app::kExitConfig;
}

// chainidx: the command-line entry point.

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>
#include <spdlog/spdlog.h>

#include <csignal>
#include <fstream>
#include <iostream>
#include <optional>
#include <sstream>

#include "app/config.hpp"
#include "app/pipeline.hpp"
#include "ingest/tls_context.hpp"
#include "schema/redact.hpp"
#include "sinks/dev_broker.hpp"
#include "sinks/kafka_sink.hpp"
#include "sinks/postgres_sink.hpp"

namespace {

using namespace chainidx;

constexpr const char* kUsage = R"(chainidx: an event-streaming indexer for EVM chains

usage:
  chainidx run --config FILE            follow the chain and index confirmed blocks
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
};

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
    } else {
      std::cerr << "chainidx: unknown argument " << arg << "\n";
      return std::nullopt;
    }
  }
  return a;
}

void setup_logging() {
  // One line per event: time, level, key=value pairs. Nothing printed carries a secret: URLs
  // go through redact_url wherever they are logged.
  spdlog::set_pattern("%Y-%m-%dT%H:%M:%S.%eZ level=%l %v", spdlog::pattern_time_type::utc);
  if (const char* level = std::getenv("CHAINIDX_LOG_LEVEL")) spdlog::set_level(spdlog::level::from_str(level));
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
            << config->chain.confirmations << ", " << config->chain.endpoints.size() << " endpoint(s):";
  for (auto& e : config->chain.endpoints) std::cout << " " << schema::redact_url(e.http);
  std::cout << ", postgres " << schema::redact_url(config->postgres.url) << ", kafka " << config->kafka.brokers << "\n";
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

int run(const Args& args) {
  auto config = load_or_report(args.config);
  if (!config) return app::kExitConfig;
  setup_logging();
  std::optional<sinks::DevBroker> embedded;
  std::string brokers = config->kafka.brokers;
  if (brokers == "embedded") {
    embedded.emplace(1);
    for (const char* suffix : {".blocks", ".transactions", ".logs"})
      embedded->create_topic(config->chain.name + suffix, static_cast<int>(config->kafka.partitions));
    brokers = embedded->bootstrap_servers();
    spdlog::info("event=embedded_broker bootstrap={}", brokers);
  }
  spdlog::info("event=start chain={} chain_id={} confirmations={} endpoints={} postgres={} kafka={}", config->chain.name,
               config->chain.chain_id, config->chain.confirmations, config->chain.endpoints.size(),
               schema::redact_url(config->postgres.url), brokers);
  try {
    if (!config->chain.tls_ca_file.empty()) ingest::trust_ca_file(config->chain.tls_ca_file);
    sinks::PostgresSink postgres(config->postgres.url, config->chain.name);
    postgres.migrate();
    sinks::KafkaSink kafka({brokers, config->chain.name, config->chain.chain_id, config->kafka.partitions,
                            config->kafka.replication_factor});
    kafka.ensure_topics();
    kafka.load_published_tip();

    boost::asio::io_context io(1);
    app::Pipeline pipeline(io, *config, {&kafka, &postgres}, postgres);
    boost::asio::signal_set signals(io, SIGINT, SIGTERM);
    signals.async_wait([&](const boost::system::error_code& ec, int sig) {
      if (ec) return;
      spdlog::info("event=signal signal={} action=\"stop taking heads, finish the batch in flight\"", sig);
      pipeline.request_stop();
    });
    int exit_code = app::kExitFatal;
    boost::asio::co_spawn(io, pipeline.run(), [&](std::exception_ptr e, int code) {
      signals.cancel();
      if (e) {
        try {
          std::rethrow_exception(e);
        } catch (const std::exception& ex) {
          spdlog::critical("event=crash message=\"{}\"", ex.what());
        }
        exit_code = app::kExitFatal;
      } else {
        exit_code = code;
      }
    });
    io.run();
    return exit_code;
  } catch (const sinks::SinkError& e) {
    spdlog::error("event=startup_failed message=\"{}\"", e.what());
    return app::kExitFatal;
  } catch (const boost::system::system_error& e) {
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
  if (args->command == "check-config") return check_config(*args);
  if (args->command == "devbroker") return devbroker(*args);
  std::cerr << "chainidx: unknown command " << args->command << "\n" << kUsage;
  return app::kExitConfig;
}

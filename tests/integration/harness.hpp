#pragma once
// Real peers for integration tests: anvil, a Postgres cluster, `chainidx devbroker`, kcat, and
// the chainidx binary itself, each started as a child process on free loopback ports.

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <sys/types.h>

namespace chainidx::testing {

using namespace std::chrono_literals;

/// A unique directory under /tmp, removed with its contents on destruction.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

int free_port();

/// The whole text of a file ("" when it cannot be read).
std::string read_text_file(const std::string& path);

/// A child process with its output in a log file. Killed (SIGKILL) on destruction if running.
class Process {
 public:
  Process(std::vector<std::string> argv, std::string log_path, std::optional<std::string> run_as = std::nullopt);
  ~Process();
  Process(const Process&) = delete;
  Process& operator=(const Process&) = delete;

  void signal(int sig);
  /// Waits for exit; the exit code, or 128 + signal. nullopt on timeout.
  std::optional<int> wait(std::chrono::milliseconds timeout);
  bool running();
  std::string log() const;
  pid_t pid() const { return pid_; }

 private:
  pid_t pid_ = -1;
  std::optional<int> status_;
  std::string log_path_;
};

/// Runs a command to completion; its standard output. `exit_code` gets the exit status.
std::string run_capture(const std::vector<std::string>& argv, int* exit_code = nullptr,
                        std::chrono::milliseconds timeout = 60s);

/// Polls `condition` every 100 ms until it holds or `timeout` passes; false on timeout.
bool wait_until(const std::function<bool()>& condition, std::chrono::milliseconds timeout);

/// An anvil node that mines only when told to (evm_mine), so tests control every block.
class Anvil {
 public:
  explicit Anvil(const std::string& dir);
  std::string http_url() const { return "http://127.0.0.1:" + std::to_string(port_); }
  std::string ws_url() const { return "ws://127.0.0.1:" + std::to_string(port_); }
  int port() const { return port_; }

  /// A JSON-RPC call; the result's JSON text. Throws on any error.
  std::string rpc(const std::string& method, const std::string& params) const;
  std::uint64_t block_number() const;
  void mine(int blocks = 1) const;
  /// Deploys a contract that emits an ERC-20 Transfer(from=caller, to, amount) per call.
  std::string deploy_emitter();
  /// Deploys the contract whose init code is `init_code` (0x-hex) from dev account 0, mining
  /// one block; its address.
  std::string deploy(const std::string& init_code) const;
  /// Sends a call with 0x-hex `data` to `to` from dev account `account` (0..9); mined with the
  /// next block. The transaction's hash.
  std::string send(int account, const std::string& to, const std::string& data) const;
  /// Sends a call to the emitter from dev account `account` (0..9); mined with the next block.
  void send_transfer(int account, std::uint64_t amount) const;
  /// Replaces the last `depth` blocks with new empty ones.
  void reorg(int depth) const;
  /// 0x-hash of block `number`.
  std::string block_hash(std::uint64_t number) const;

 private:
  int port_;
  std::unique_ptr<Process> process_;
  std::string emitter_;
};

/// One Postgres 15 cluster for the test binary (initdb and pg_ctl as the postgres user).
class Postgres {
 public:
  static Postgres& instance();
  /// A new, empty database; its connection URL.
  std::string create_database(const std::string& name);
  /// Stops the server (fast shutdown: open connections are cut) and later starts it again.
  void stop();
  /// Stops the server as a crash would (immediate shutdown: no checkpoint; WAL still in the
  /// server's memory, such as commits made with synchronous_commit = off, is lost).
  void crash();
  void start();
  ~Postgres();

 private:
  Postgres();
  int port_;
  std::string dir_;
};

/// Every message value of a topic, from the beginning, as a read_committed consumer (kcat) sees it.
std::vector<std::string> consume_topic(const std::string& bootstrap, const std::string& topic);

/// `chainidx devbroker` with the chain's three topics created up front.
class DevBroker {
 public:
  /// Topics for `chain_name`'s blocks, transactions and logs (several chains: "a,b"), and
  /// `extra_topics` by their full names.
  DevBroker(const std::string& dir, const std::string& chain_name, int partitions = 3,
            const std::vector<std::string>& extra_topics = {});
  const std::string& bootstrap() const { return bootstrap_; }
  /// Every message value of a topic, from the beginning, as a read_committed consumer (kcat) sees it.
  std::vector<std::string> consume(const std::string& topic) const;

 private:
  std::unique_ptr<Process> process_;
  std::string bootstrap_;
};

/// The same mock cluster inside the test process, so that a test can take it down or make it
/// answer requests with errors (librdkafka's own fault injection) while the indexer runs.
class FaultyBroker {
 public:
  FaultyBroker(const std::string& chain_name, int partitions = 3);
  ~FaultyBroker();
  const std::string& bootstrap() const;
  std::vector<std::string> consume(const std::string& topic) const { return consume_topic(bootstrap(), topic); }
  void set_down();
  void set_up();
  /// See sinks::DevBroker::push_request_errors.
  void push_request_errors(int api_key, const std::vector<int>& errors);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

/// The chainidx binary, run against the given peers with a generated config.
class Indexer {
 public:
  struct Options {
    std::string chain_name = "anvil";
    std::uint64_t chain_id = 31337;
    std::uint64_t confirmations = 3;
    std::string confirmations_tag;  ///< "safe" / "finalized" instead of the depth, when set
    std::uint32_t batch_blocks = 10;
    std::optional<std::string> http_url;  ///< instead of anvil's own, e.g. a FaultProxy
    std::optional<std::string> ws_url;    ///< instead of anvil's own, e.g. a TcpRelay
    /// (ws, http) endpoints put before anvil's own, in this order.
    std::vector<std::pair<std::string, std::string>> extra_endpoints_first;
    /// Extra lines for the [chain], [kafka] and [pipeline] tables.
    std::string chain_extra, kafka_extra, pipeline_extra, server_extra;
    /// Whole tables appended to the config (e.g. "[ha]\nlease_seconds = 3\n").
    std::string extra_tables;
    /// [[chains]] tables (with their endpoints) instead of [chain] and anvil's endpoint.
    std::string chains;
    /// anvil's endpoint's rate limit (and burst).
    double requests_per_second = 1000;
  };
  Indexer(const std::string& dir, const Anvil& anvil, std::string postgres_url, std::string brokers, Options options);
  void start();
  /// Sends `sig` and waits for exit; the exit code (128 + signal when killed).
  int stop(int sig);
  /// Waits for the process to exit by itself.
  std::optional<int> wait(std::chrono::milliseconds timeout);
  std::string log() const;
  bool running() { return process_ && process_->running(); }
  pid_t pid() const { return process_ ? process_->pid() : -1; }
  const std::string& config_path() const { return config_path_; }
  /// The port of its operations server ([server] listen).
  int ops_port() const { return ops_port_; }
  const std::string& postgres_url() const { return postgres_url_; }

 private:
  std::string dir_;
  std::string config_path_;
  std::string postgres_url_;
  std::unique_ptr<Process> process_;
  int runs_ = 0;
  int ops_port_ = 0;
};

std::string chainidx_binary();

/// Runs foundry's `cast` (installed beside anvil by deploy/install-deps.sh) with `args`; its
/// standard output without the trailing newline. Throws when it fails.
std::string cast(const std::vector<std::string>& args);

/// One HTTP request to 127.0.0.1:port (its status and body), or status 0 when nothing answered.
struct HttpAnswer {
  int status = 0;
  std::string content_type;
  std::string body;
  std::string www_authenticate;
};
HttpAnswer http_request(int port, const std::string& method, const std::string& target, const std::string& body = "",
                        const std::vector<std::pair<std::string, std::string>>& headers = {});

}  // namespace chainidx::testing

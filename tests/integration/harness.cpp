#include "harness.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <pqxx/pqxx>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
#include <stdexcept>
#include <thread>

#include "ingest/http_rpc_client.hpp"
#include "sinks/dev_broker.hpp"

namespace chainidx::testing {

namespace fs = std::filesystem;

namespace {
constexpr const char* kPgBin = "/usr/lib/postgresql/15/bin";
// The dev accounts anvil unlocks (its default mnemonic).
const char* kAccounts[] = {
    "0xf39fd6e51aad88f6f4ce6ab8827279cfffb92266", "0x70997970c51812dc3a010c7d01b50e0d17dc79c8",
    "0x3c44cdddb6a900fa2b585dd299e03d12fa4293bc", "0x90f79bf6eb2c4f870365e785982e1f101e93b906",
    "0x15d34aaf54267db7d7c367839aaf71a00a2c6a65", "0x9965507d1a55bcc2695c58ba16fb37d819b0a4dc",
    "0x976ea74026e726554db657fa54763abd0c3a0aa9", "0x14dc79964da2c08b23698b3d3cc7ca32193d9955",
    "0x23618e81e3f5cdf7f54c3d65f7fbc0abf5b21e8f", "0xa0ee7a142d267c1f36714e4a8f75612f20a79720"};
// Init code of a contract whose every call emits Transfer(caller, calldata[32:64], calldata[0:32]).
constexpr const char* kEmitterInitCode =
    "0x6031600c60003960316000f3600035600052602035337fddf252ad1be2c89b69c2b068fc378daa952ba7f163c4a11628f55a4df523b3ef"
    "60206000a300";

std::string slurp(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::string field_of(const std::string& json, const std::string& key) {
  // Tests' own tiny extractor for a string field of a flat JSON object.
  auto at = json.find("\"" + key + "\"");
  if (at == std::string::npos) return {};
  auto colon = json.find(':', at);
  auto q1 = json.find('"', colon);
  auto q2 = json.find('"', q1 + 1);
  return json.substr(q1 + 1, q2 - q1 - 1);
}

std::string hex32(std::uint64_t v) {
  char buf[65];
  std::snprintf(buf, sizeof buf, "%064llx", static_cast<unsigned long long>(v));
  return buf;
}

}  // namespace

std::string chainidx_binary() { return CHAINIDX_BINARY; }

std::string read_text_file(const std::string& path) { return slurp(path); }

TempDir::TempDir() {
  char tmpl[] = "/tmp/chainidx-test-XXXXXX";
  if (!mkdtemp(tmpl)) throw std::runtime_error("mkdtemp failed");
  path_ = tmpl;
  chmod(path_.c_str(), 0777);
}

TempDir::~TempDir() {
  std::error_code ec;
  fs::remove_all(path_, ec);
}

int free_port() {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
  socklen_t len = sizeof addr;
  getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  int port = ntohs(addr.sin_port);
  close(fd);
  return port;
}

Process::Process(std::vector<std::string> argv, std::string log_path, std::optional<std::string> run_as)
    : log_path_(std::move(log_path)) {
  if (run_as) argv.insert(argv.begin(), {"runuser", "-u", *run_as, "--"});
  pid_ = fork();
  if (pid_ < 0) throw std::runtime_error("fork failed");
  if (pid_ == 0) {
    setpgid(0, 0);
    int fd = open(log_path_.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0666);
    dup2(fd, 1);
    dup2(fd, 2);
    int devnull = open("/dev/null", O_RDONLY);
    dup2(devnull, 0);
    std::vector<char*> args;
    for (auto& a : argv) args.push_back(a.data());
    args.push_back(nullptr);
    execvp(args[0], args.data());
    _exit(127);
  }
}

Process::~Process() {
  if (running()) {
    ::kill(pid_, SIGKILL);
    wait(10s);
  }
}

void Process::signal(int sig) {
  if (!status_) ::kill(pid_, sig);
}

std::optional<int> Process::wait(std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!status_) {
    int st = 0;
    pid_t r = waitpid(pid_, &st, WNOHANG);
    if (r == pid_) {
      status_ = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
      break;
    }
    if (std::chrono::steady_clock::now() > deadline) return std::nullopt;
    std::this_thread::sleep_for(20ms);
  }
  return status_;
}

bool Process::running() { return !wait(0ms).has_value(); }

std::string Process::log() const { return slurp(log_path_); }

std::string run_capture(const std::vector<std::string>& argv, int* exit_code, std::chrono::milliseconds timeout) {
  TempDir dir;
  std::string out = dir.path() + "/out";
  Process p(argv, out);
  auto code = p.wait(timeout);
  if (!code) {
    p.signal(SIGKILL);
    code = p.wait(10s);
  }
  if (exit_code) *exit_code = code.value_or(-1);
  return slurp(out);
}

std::string cast(const std::vector<std::string>& args) {
  std::string bin = std::string(CHAINIDX_SOURCE_DIR) + "/.deps/bin/cast";
  if (!fs::exists(bin)) bin = "cast";
  std::vector<std::string> argv{bin};
  argv.insert(argv.end(), args.begin(), args.end());
  int code = -1;
  std::string out = run_capture(argv, &code);
  if (code != 0) {
    std::string line;
    for (const std::string& a : args) line += " " + a;
    throw std::runtime_error("cast" + line + " failed (" + std::to_string(code) + "): " + out);
  }
  while (!out.empty() && (out.back() == '\n' || out.back() == '\r')) out.pop_back();
  return out;
}

bool wait_until(const std::function<bool()>& condition, std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    if (condition()) return true;
    std::this_thread::sleep_for(100ms);
  }
  return condition();
}

// --- Anvil -------------------------------------------------------------------------------------

Anvil::Anvil(const std::string& dir) : port_(0) {
  std::string bin = std::string(CHAINIDX_SOURCE_DIR) + "/.deps/bin/anvil";
  if (!fs::exists(bin)) bin = "anvil";
  // free_port() can race with another test process taking the same port between our probe and
  // anvil's bind: then anvil exits ("Address already in use") and whatever listens there would
  // answer in its place. So the answer counts only while our own anvil is running; otherwise
  // start again on another port.
  for (int attempt = 0; attempt < 5; ++attempt) {
    port_ = free_port();
    process_ = std::make_unique<Process>(
        std::vector<std::string>{bin, "--port", std::to_string(port_), "--host", "127.0.0.1", "--no-mining", "--silent"},
        dir + "/anvil.log");
    bool up = wait_until([&] {
      if (!process_->running()) return true;
      try {
        block_number();
        return true;
      } catch (...) {
        return false;
      }
    }, 30s);
    // An anvil that lost the race to bind exits at once; one that answered and still runs is ours.
    if (up && process_->running()) {
      std::this_thread::sleep_for(300ms);
      if (process_->running()) return;
    }
  }
  throw std::runtime_error("anvil did not start: " + process_->log());
}

std::string Anvil::rpc(const std::string& method, const std::string& params) const {
  boost::asio::io_context io;
  ingest::HttpRpcClient client(io.get_executor(), http_url(), {10000, 10000});
  std::string out;
  std::exception_ptr error;
  boost::asio::co_spawn(io, [&]() -> boost::asio::awaitable<void> {
    ingest::RpcRequest request{method, params};
    out = co_await client.call(std::move(request));
  }, [&](std::exception_ptr e) { error = e; });
  io.run();
  if (error) std::rethrow_exception(error);
  return out;
}

std::uint64_t Anvil::block_number() const {
  std::string r = rpc("eth_blockNumber", "[]");
  return std::stoull(r.substr(r.find("0x") + 2), nullptr, 16);
}

void Anvil::mine(int blocks) const {
  for (int i = 0; i < blocks; ++i) rpc("evm_mine", "[]");
}

std::string Anvil::deploy(const std::string& init_code) const {
  std::string tx = rpc("eth_sendTransaction", std::string("[{\"from\":\"") + kAccounts[0] + "\",\"data\":\"" + init_code + "\"}]");
  mine();
  std::string receipt = rpc("eth_getTransactionReceipt", "[" + tx + "]");
  std::string address = field_of(receipt, "contractAddress");
  if (address.size() != 42) throw std::runtime_error("contract deployment failed: " + receipt);
  return address;
}

std::string Anvil::deploy_emitter() {
  emitter_ = deploy(kEmitterInitCode);
  return emitter_;
}

std::string Anvil::send(int account, const std::string& to, const std::string& data) const {
  std::string tx = rpc("eth_sendTransaction", std::string("[{\"from\":\"") + kAccounts[account % 10] + "\",\"to\":\"" + to +
                                                  "\",\"data\":\"" + data + "\",\"gas\":\"0x100000\"}]");
  return tx.substr(1, tx.size() - 2);
}

void Anvil::send_transfer(int account, std::uint64_t amount) const {
  std::string to = hex32(0xbeef0000ull + static_cast<std::uint64_t>(account));
  rpc("eth_sendTransaction", std::string("[{\"from\":\"") + kAccounts[account % 10] + "\",\"to\":\"" + emitter_ +
                                 "\",\"data\":\"0x" + hex32(amount) + to + "\",\"gas\":\"0x30000\"}]");
}

void Anvil::reorg(int depth) const { rpc("anvil_reorg", "[" + std::to_string(depth) + ",[]]"); }

std::string Anvil::block_hash(std::uint64_t number) const {
  char q[32];
  std::snprintf(q, sizeof q, "0x%llx", static_cast<unsigned long long>(number));
  return field_of(rpc("eth_getBlockByNumber", std::string("[\"") + q + "\",false]"), "hash");
}

// --- Postgres ----------------------------------------------------------------------------------

Postgres& Postgres::instance() {
  static Postgres pg;
  return pg;
}

Postgres::Postgres() : port_(free_port()) {
  char tmpl[] = "/tmp/chainidx-pg-XXXXXX";
  dir_ = mkdtemp(tmpl);
  chmod(dir_.c_str(), 0777);
  int code = 0;
  std::string out = run_capture({"runuser", "-u", "postgres", "--", std::string(kPgBin) + "/initdb", "-D", dir_ + "/data",
                                 "-A", "trust", "-U", "postgres", "--no-sync"}, &code, 120s);
  if (code != 0) throw std::runtime_error("initdb failed: " + out);
  // As for anvil: the probed port may be taken by another test process before the server binds.
  for (int attempt = 0;; ++attempt) {
    try {
      start();
      return;
    } catch (const std::runtime_error&) {
      if (attempt == 4) throw;
      port_ = free_port();
    }
  }
}

void Postgres::stop() {
  int code = 0;
  std::string out = run_capture({"runuser", "-u", "postgres", "--", std::string(kPgBin) + "/pg_ctl", "-D", dir_ + "/data",
                                 "-m", "fast", "-w", "stop"}, &code, 120s);
  if (code != 0) throw std::runtime_error("pg_ctl stop failed: " + out);
}

void Postgres::crash() {
  int code = 0;
  std::string out = run_capture({"runuser", "-u", "postgres", "--", std::string(kPgBin) + "/pg_ctl", "-D", dir_ + "/data",
                                 "-m", "immediate", "-w", "stop"}, &code, 120s);
  if (code != 0) throw std::runtime_error("pg_ctl stop -m immediate failed: " + out);
}

void Postgres::start() {
  int code = 0;
  std::string out = run_capture({"runuser", "-u", "postgres", "--", std::string(kPgBin) + "/pg_ctl", "-D", dir_ + "/data", "-w", "-l",
                     dir_ + "/log", "-o", "-p " + std::to_string(port_) + " -k " + dir_ + " -c listen_addresses=127.0.0.1 -c fsync=off",
                     "start"}, &code, 120s);
  if (code != 0) throw std::runtime_error("pg_ctl start failed: " + out + slurp(dir_ + "/log"));
}

Postgres::~Postgres() {
  run_capture({"runuser", "-u", "postgres", "--", std::string(kPgBin) + "/pg_ctl", "-D", dir_ + "/data", "-m", "immediate", "stop"});
  std::error_code ec;
  fs::remove_all(dir_, ec);
}

std::string Postgres::create_database(const std::string& name) {
  std::string base = "postgresql://postgres@127.0.0.1:" + std::to_string(port_) + "/";
  pqxx::connection c(base + "postgres");
  pqxx::nontransaction tx(c);
  tx.exec("DROP DATABASE IF EXISTS " + c.quote_name(name));
  tx.exec("CREATE DATABASE " + c.quote_name(name));
  return base + name;
}

// --- DevBroker ---------------------------------------------------------------------------------

DevBroker::DevBroker(const std::string& dir, const std::string& chain_name, int partitions,
                     const std::vector<std::string>& extra_topics) {
  std::string file = dir + "/bootstrap";
  std::string topics;
  std::stringstream names(chain_name);
  for (std::string one; std::getline(names, one, ',');)
    topics += (topics.empty() ? "" : ",") + one + ".blocks," + one + ".transactions," + one + ".logs";
  for (const std::string& t : extra_topics) topics += "," + t;
  process_ = std::make_unique<Process>(
      std::vector<std::string>{chainidx_binary(), "devbroker", "--bootstrap-file", file, "--topics", topics,
                               "--partitions", std::to_string(partitions)},
      dir + "/devbroker.log");
  if (!wait_until([&] { return fs::exists(file); }, 20s)) throw std::runtime_error("devbroker did not start: " + process_->log());
  bootstrap_ = slurp(file);
  while (!bootstrap_.empty() && (bootstrap_.back() == '\n' || bootstrap_.back() == ' ')) bootstrap_.pop_back();
}

std::vector<std::string> DevBroker::consume(const std::string& topic) const { return consume_topic(bootstrap_, topic); }

struct FaultyBroker::Impl {
  sinks::DevBroker broker{1};
};

FaultyBroker::FaultyBroker(const std::string& chain_name, int partitions) : impl_(std::make_unique<Impl>()) {
  for (const char* suffix : {".blocks", ".transactions", ".logs"}) impl_->broker.create_topic(chain_name + suffix, partitions);
}
FaultyBroker::~FaultyBroker() = default;
const std::string& FaultyBroker::bootstrap() const { return impl_->broker.bootstrap_servers(); }
void FaultyBroker::set_down() { impl_->broker.set_broker_down(1); }
void FaultyBroker::set_up() { impl_->broker.set_broker_up(1); }
void FaultyBroker::push_request_errors(int api_key, const std::vector<int>& errors) { impl_->broker.push_request_errors(api_key, errors); }

std::vector<std::string> consume_topic(const std::string& bootstrap, const std::string& topic) {
  int code = 0;
  std::string out = run_capture({"kcat", "-C", "-b", bootstrap, "-t", topic, "-o", "beginning", "-e", "-q", "-X",
                                 "isolation.level=read_committed", "-f", "%s\n"}, &code, 60s);
  if (code != 0) throw std::runtime_error("kcat failed on " + topic + ": " + out);
  std::vector<std::string> lines;
  std::stringstream ss(out);
  std::string line;
  while (std::getline(ss, line))
    if (!line.empty()) lines.push_back(line);
  return lines;
}

// --- Indexer -----------------------------------------------------------------------------------

Indexer::Indexer(const std::string& dir, const Anvil& anvil, std::string postgres_url, std::string brokers, Options o)
    : dir_(dir), config_path_(dir + "/chainidx.toml"), postgres_url_(std::move(postgres_url)), ops_port_(free_port()) {
  std::string extra;
  for (const auto& [ws, http] : o.extra_endpoints_first)
    extra += "[[chain.endpoints]]\nws = \"" + ws + "\"\nhttp = \"" + http + "\"\nrequests_per_second = 1000\nburst = 1000\n\n";
  if (!o.chains.empty()) {
    std::ofstream(config_path_) << o.chains << "\n[postgres]\nurl = \"" << postgres_url_ << "\"\n\n"
                                << "[kafka]\nbrokers = \"" << brokers << "\"\n" << o.kafka_extra << "\n"
                                << "[server]\nlisten = \"127.0.0.1:" << ops_port_ << "\"\n" << o.server_extra << "\n"
                                << "[pipeline]\nbatch_blocks = " << o.batch_blocks << "\n" << o.pipeline_extra << "\n" << o.extra_tables;
    return;
  }
  std::ofstream(config_path_) << "[chain]\nname = \"" << o.chain_name << "\"\nchain_id = " << o.chain_id
                              << "\nconfirmations = " << (o.confirmations_tag.empty() ? std::to_string(o.confirmations) : "\"" + o.confirmations_tag + "\"") << "\nstart_block = 0\n" << o.chain_extra << "\n" << extra
                              << "[[chain.endpoints]]\nws = \"" << o.ws_url.value_or(anvil.ws_url()) << "\"\nhttp = \"" << o.http_url.value_or(anvil.http_url())
                              << "\"\nrequests_per_second = " << o.requests_per_second << "\nburst = "
                              << static_cast<int>(std::max(1.0, o.requests_per_second)) << "\n\n"
                              << "[postgres]\nurl = \"" << postgres_url_ << "\"\n\n"
                              << "[kafka]\nbrokers = \"" << brokers << "\"\n" << o.kafka_extra << "\n"
                              << "[server]\nlisten = \"127.0.0.1:" << ops_port_ << "\"\n" << o.server_extra << "\n"
                              << "[pipeline]\nbatch_blocks = " << o.batch_blocks << "\n" << o.pipeline_extra << "\n" << o.extra_tables;
}

void Indexer::start() {
  process_ = std::make_unique<Process>(std::vector<std::string>{chainidx_binary(), "run", "--config", config_path_},
                                       dir_ + "/indexer-" + std::to_string(++runs_) + ".log");
}

int Indexer::stop(int sig) {
  process_->signal(sig);
  auto code = process_->wait(60s);
  if (!code) throw std::runtime_error("indexer did not stop on signal " + std::to_string(sig) + ": " + process_->log());
  return *code;
}

std::optional<int> Indexer::wait(std::chrono::milliseconds timeout) { return process_->wait(timeout); }

std::string Indexer::log() const { return process_ ? process_->log() : std::string(); }

}  // namespace chainidx::testing

#include "app/admin.hpp"
#include "app/names.hpp"

#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/thread_pool.hpp>
#include <boost/json.hpp>
#include <cryptopp/misc.h>
#include <cryptopp/sha.h>
#include <spdlog/spdlog.h>

#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <future>
#include <map>
#include <mutex>
#include <thread>
#include <variant>
#include <vector>

#include "app/metrics.hpp"
#include "sinks/postgres_sink.hpp"

extern char** environ;

namespace chainidx::app {

namespace asio = boost::asio;
namespace json = boost::json;

namespace {

constexpr std::size_t kAdminBodyLimit = 4096;
constexpr auto kProgressInterval = std::chrono::seconds(5);

AdminReply text(int status, std::string message) { return {status, std::move(message) + "\n", false}; }

AdminReply error(int status, std::string message) {
  json::object o;
  o["error"] = message;
  return {status, json::serialize(o) + "\n", true};
}

std::optional<std::uint64_t> as_block(const json::value& v) {
  if (v.is_uint64()) return v.get_uint64();
  if (v.is_int64() && v.get_int64() >= 0) return static_cast<std::uint64_t>(v.get_int64());
  return std::nullopt;
}

struct ReplayAsk {
  std::uint64_t from = 0, to = 0;
  bool postgres = true, kafka = true;
  std::string topic_prefix;
  std::uint64_t chunk_blocks = 5000;
  std::string job() const { return std::to_string(from) + "-" + std::to_string(to); }
};

// The body of POST /admin/replay: {"from": N, "to": M, "sinks": ["postgres","kafka"],
// "topic_prefix": "...", "chunk_blocks": C}; from and to required. The reason when it is not.
// `chain` names the chain when the process indexes several (`chains`, every name).
std::variant<ReplayAsk, std::string> parse_replay(std::string_view body, const std::string& chain, const std::vector<std::string>& chains) {
  boost::system::error_code ec;
  json::value v = json::parse(body, ec);
  if (ec) return "the body is not JSON (" + ec.message() + "); send {\"from\": N, \"to\": M}";
  if (!v.is_object()) return "the body must be a JSON object: {\"from\": N, \"to\": M}";
  ReplayAsk a;
  const json::object& o = v.as_object();
  for (const auto& [k, val] : o) {
    if (k != "from" && k != "to" && k != "sinks" && k != "topic_prefix" && k != "chunk_blocks" && k != "chain")
      return "unknown field \"" + std::string(k) + "\"; the fields are chain, from, to, sinks, topic_prefix and chunk_blocks";
  }
  std::string names;
  for (const auto& n : chains) names += (names.empty() ? "" : ", ") + n;
  if (const json::value* named = o.if_contains("chain")) {
    if (!named->is_string() || named->as_string() != chain)
      return "\"chain\" names no chain indexed here; the chains are " + names;
  } else if (chains.size() > 1) {
    return "\"chain\" is missing: this process indexes several chains (" + names + "); name the one to replay";
  }
  for (const char* key : {"from", "to"}) {
    const json::value* f = o.if_contains(key);
    if (!f) return std::string("\"") + key + "\" is missing: the range is from..to, both included";
    auto n = as_block(*f);
    if (!n) return std::string("\"") + key + "\" must be a block number (a non-negative integer)";
    (std::string_view(key) == "from" ? a.from : a.to) = *n;
  }
  if (a.from > a.to) return "\"from\" (" + std::to_string(a.from) + ") is above \"to\" (" + std::to_string(a.to) + ")";
  if (const json::value* s = o.if_contains("sinks")) {
    if (!s->is_array() || s->as_array().empty()) return "\"sinks\" must be a non-empty array of \"postgres\" and \"kafka\"";
    a.postgres = a.kafka = false;
    for (const auto& one : s->as_array()) {
      if (one == "postgres") a.postgres = true;
      else if (one == "kafka") a.kafka = true;
      else return "\"sinks\" holds " + json::serialize(one) + "; use \"postgres\" and/or \"kafka\"";
    }
  }
  if (const json::value* p = o.if_contains("topic_prefix")) {
    if (!p->is_string() || !is_name(p->as_string()))
      return "\"topic_prefix\" must be letters, digits, '.', '_' or '-' (at most 100)";
    a.topic_prefix = std::string(p->as_string());
  }
  if (const json::value* c = o.if_contains("chunk_blocks")) {
    auto n = as_block(*c);
    if (!n || *n == 0 || *n > 1000000) return "\"chunk_blocks\" must be an integer from 1 to 1000000";
    a.chunk_blocks = *n;
  }
  return a;
}

}  // namespace

bool token_matches(std::string_view presented, std::string_view expected) {
  // Both sides are hashed first, so the comparison's time depends on neither length nor content.
  CryptoPP::byte a[CryptoPP::SHA256::DIGESTSIZE], b[CryptoPP::SHA256::DIGESTSIZE];
  CryptoPP::SHA256().CalculateDigest(a, reinterpret_cast<const CryptoPP::byte*>(presented.data()), presented.size());
  CryptoPP::SHA256().CalculateDigest(b, reinterpret_cast<const CryptoPP::byte*>(expected.data()), expected.size());
  return CryptoPP::VerifyBufsEqual(a, b, sizeof a);
}

struct AdminApi::Impl : std::enable_shared_from_this<Impl> {
  Impl(Settings s, Metrics* m) : settings(std::move(s)), metrics(m), pool(1), timer(pool), pg(settings.postgres_url, settings.chain) {}

  struct Child {
    pid_t pid = -1;
    std::string worker;
    std::int64_t started_at = 0;
    std::optional<int> exit_code;  // once reaped
  };

  Settings settings;
  Metrics* metrics;
  asio::thread_pool pool;
  asio::steady_timer timer;
  sinks::PostgresSink pg;  // a connection of its own, used on the pool's thread only
  std::map<std::string, Child> children;  // by job; pool thread only
  unsigned started = 0;

  static std::int64_t now_unix() {
    return std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
  }

  void reap() {
    for (auto& [job, c] : children) {
      if (c.exit_code) continue;
      int st = 0;
      if (waitpid(c.pid, &st, WNOHANG) != c.pid) continue;
      c.exit_code = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
      if (*c.exit_code == 0) spdlog::info("event=admin_replay_finished job={} worker={}", job, c.worker);
      else spdlog::warn("event=admin_replay_exited job={} worker={} exit_code={}", job, c.worker, *c.exit_code);
    }
  }

  // Every few seconds: reap the children, and the jobs' progress into the metrics.
  void tick() {
    reap();
    if (metrics) {
      try {
        for (const auto& j : pg.replay_jobs()) {
          auto it = children.find(j.job);
          const bool running = j.chunks_leased > 0 || (it != children.end() && !it->second.exit_code);
          metrics->replay_progress(j.job, j.blocks_done, j.blocks, running && j.chunks_done < j.chunks);
        }
      } catch (const std::exception& e) {
        spdlog::debug("event=replay_progress_unavailable reason=\"{}\"", e.what());
      }
    }
    timer.expires_after(kProgressInterval);
    timer.async_wait([weak = weak_from_this()](boost::system::error_code ec) {
      if (ec) return;
      if (auto self = weak.lock()) self->tick();
    });
  }

  AdminReply start_replay(const AdminRequest& req) {
    if (req.body.size() > kAdminBodyLimit) return error(413, "the body is larger than 4096 bytes");
    auto parsed = parse_replay(req.body, settings.chain, settings.chains);
    if (auto* why = std::get_if<std::string>(&parsed)) return error(400, *why);
    const ReplayAsk ask = std::get<ReplayAsk>(parsed);
    if (!req.cursor) return error(503, "the live cursor is not known yet; ask again once the indexer has written a block");
    if (ask.to > *req.cursor)
      return error(400, "\"to\" (" + std::to_string(ask.to) + ") is above the live cursor (" + std::to_string(*req.cursor) +
                            "): a replay re-indexes written history; ask for at most " + std::to_string(*req.cursor));
    reap();
    if (auto it = children.find(ask.job()); it != children.end() && !it->second.exit_code)
      return error(409, "replay " + ask.job() + " is already running here (pid " + std::to_string(it->second.pid) + ")");
    Child c;
    c.worker = settings.worker_prefix + "-admin-" + std::to_string(++started);
    c.started_at = now_unix();
    std::string sinks = ask.postgres && ask.kafka ? "postgres,kafka" : ask.postgres ? "postgres" : "kafka";
    std::vector<std::string> args = {"chainidx", "replay", "--config", settings.config_path, "--chain", settings.chain, "--from", std::to_string(ask.from),
                                     "--to", std::to_string(ask.to), "--sinks", sinks, "--worker", c.worker,
                                     "--chunk-blocks", std::to_string(ask.chunk_blocks)};
    if (!ask.topic_prefix.empty()) {
      args.push_back("--topic-prefix");
      args.push_back(ask.topic_prefix);
    }
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    const int rc = posix_spawn(&c.pid, "/proc/self/exe", nullptr, nullptr, argv.data(), environ);
    if (rc != 0) {
      spdlog::error("event=admin_replay_spawn_failed job={} reason=\"{}\"", ask.job(), std::strerror(rc));
      return error(500, std::string("could not start the replay process: ") + std::strerror(rc));
    }
    spdlog::info("event=admin_replay_started job={} worker={} pid={} sinks={}", ask.job(), c.worker, c.pid, sinks);
    json::object o;
    o["chain"] = settings.chain;
    o["job"] = ask.job();
    o["from"] = ask.from;
    o["to"] = ask.to;
    o["sinks"] = sinks;
    o["worker"] = c.worker;
    o["pid"] = c.pid;
    o["state"] = "running";
    children[ask.job()] = std::move(c);
    return {202, json::serialize(o) + "\n", true};
  }

  static json::object process_json(const Child& c) {
    json::object p;
    p["worker"] = c.worker;
    p["pid"] = c.pid;
    p["started_at"] = c.started_at;
    p["exit_code"] = c.exit_code ? json::value(*c.exit_code) : json::value(nullptr);
    return p;
  }

  AdminReply list_replays() {
    reap();
    std::vector<sinks::PostgresSink::ReplayJob> jobs;
    try {
      jobs = pg.replay_jobs();
    } catch (const std::exception& e) {
      return error(503, std::string("the replay table cannot be read: ") + e.what());
    }
    json::array out;
    for (const auto& j : jobs) {
      json::object o;
      o["chain"] = settings.chain;
      o["job"] = j.job;
      o["from"] = j.first_block;
      o["to"] = j.last_block;
      o["blocks"] = j.blocks;
      o["blocks_done"] = j.blocks_done;
      o["chunks"] = j.chunks;
      o["chunks_done"] = j.chunks_done;
      o["workers"] = j.workers;
      auto it = children.find(j.job);
      const bool here = it != children.end() && !it->second.exit_code;
      std::string state = j.chunks_done == j.chunks ? "done"
                          : here                     ? "running"
                          : j.chunks_leased > 0      ? "running elsewhere"
                          : it != children.end()     ? "failed"
                                                     : "stopped";
      o["state"] = state;
      if (it != children.end()) o["process"] = process_json(it->second);
      if (j.finished_at) o["finished_at"] = j.finished_at;
      out.push_back(std::move(o));
    }
    // A job just started whose process has not planned its chunks yet.
    for (const auto& [job, c] : children) {
      bool listed = false;
      for (const auto& j : jobs) listed |= j.job == job;
      if (listed) continue;
      json::object o;
      o["chain"] = settings.chain;
      o["job"] = job;
      o["state"] = c.exit_code ? "failed" : "starting";
      o["process"] = process_json(c);
      out.push_back(std::move(o));
    }
    json::object doc;
    doc["replays"] = std::move(out);
    return {200, json::serialize(doc) + "\n", true};
  }

  AdminReply handle(const AdminRequest& req) {
    if (settings.token.empty())
      return text(404, "the admin API is off: set server.admin_token (from the environment) to turn it on");
    // The token is checked before anything else is looked at: without it, nothing is done and
    // nothing is told (not even which paths exist).
    constexpr std::string_view kBearer = "Bearer ";
    const std::string& auth = req.authorization;
    const bool bearer = auth.size() > kBearer.size() && std::string_view(auth).substr(0, kBearer.size()) == kBearer;
    if (!bearer || !token_matches(std::string_view(auth).substr(kBearer.size()), settings.token)) {
      spdlog::warn("event=admin_unauthorized method={} path={} reason={}", req.method, req.target,
                   auth.empty() ? "no_token" : bearer ? "wrong_token" : "not_bearer");
      return text(401, "unauthorized: send Authorization: Bearer <server.admin_token>");
    }
    if (req.target == "/admin/replay") {
      if (req.method != "POST") return text(405, "method not allowed: POST /admin/replay");
      return start_replay(req);
    }
    if (req.target == "/admin/replays") {
      if (req.method != "GET" && req.method != "HEAD") return text(405, "method not allowed: GET /admin/replays");
      return list_replays();
    }
    return text(404, "not found: the admin API has POST /admin/replay and GET /admin/replays");
  }

  void stop_children() {
    reap();
    std::vector<pid_t> running;
    for (auto& [job, c] : children)
      if (!c.exit_code) {
        spdlog::info("event=admin_replay_stopping job={} pid={} action=\"finish the batch in flight; ask again to resume\"", job, c.pid);
        ::kill(c.pid, SIGTERM);
        running.push_back(c.pid);
      }
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
    for (pid_t pid : running) {
      while (waitpid(pid, nullptr, WNOHANG) == 0) {
        if (std::chrono::steady_clock::now() > deadline) {
          ::kill(pid, SIGKILL);
          waitpid(pid, nullptr, 0);
          break;
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
      }
    }
  }
};

AdminApi::AdminApi(Settings settings, Metrics* metrics) : impl_(std::make_shared<Impl>(std::move(settings), metrics)) {
  asio::post(impl_->pool, [self = impl_] { self->tick(); });
}

AdminApi::~AdminApi() {
  std::promise<void> done;
  asio::post(impl_->pool, [&] {
    impl_->timer.cancel();
    impl_->stop_children();
    done.set_value();
  });
  done.get_future().wait();
  impl_->pool.join();
}

asio::any_io_executor AdminApi::executor() { return impl_->pool.get_executor(); }

AdminReply AdminApi::handle(const AdminRequest& request) { return impl_->handle(request); }

}  // namespace chainidx::app

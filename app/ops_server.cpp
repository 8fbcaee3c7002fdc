#include "app/ops_server.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
// Boost.JSON, compiled into this translation unit only (Debian ships no libboost_json): the
// status document carries error messages, which need JSON escaping.
#include <boost/json/src.hpp>

#include <set>
#include <stdexcept>

#include <spdlog/spdlog.h>

#include "app/admin.hpp"
#include "app/live_status.hpp"
#include "app/metrics.hpp"

namespace chainidx::app {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using asio::ip::tcp;

namespace {

constexpr std::size_t kHeaderLimit = 8 * 1024;
constexpr std::size_t kBodyLimit = 64 * 1024;
constexpr auto kIdleTimeout = std::chrono::seconds(30);

boost::json::value optional_number(const std::optional<std::uint64_t>& v) {
  return v ? boost::json::value(*v) : boost::json::value(nullptr);
}

// What a chain's thread answered for one request: its status, the gauges updated from it.
struct Snapshot {
  std::optional<LiveStatus> status;  ///< nullopt: the chain's thread did not answer in time
  std::string name;
};

// A chain's thread that does not answer within this is reported as stuck (not healthy).
constexpr auto kSnapshotTimeout = std::chrono::seconds(3);

Verdict judge(const Snapshot& s, bool health, const ProbeSettings& probes) {
  if (!s.status) return {false, "the chain's thread has not answered for " + std::to_string(kSnapshotTimeout.count()) + " s (stuck)"};
  const auto now = LiveStatus::Clock::now();
  return health ? healthy(*s.status, probes, now) : ready(*s.status, probes, now);
}

std::string status_json(const Snapshot& snap, const ProbeSettings& probes) {
  boost::json::object o;
  if (!snap.status) {
    o["chain"] = snap.name;
    o["healthy"] = false;
    o["health"] = judge(snap, true, probes).reason;
    o["ready"] = false;
    o["readiness"] = o["health"];
    return boost::json::serialize(o);
  }
  const LiveStatus& s = *snap.status;
  const auto now = LiveStatus::Clock::now();
  const Verdict h = healthy(s, probes, now), r = ready(s, probes, now);
  o["chain"] = s.chain;
  if (s.confirm_tag.empty()) o["confirmations"] = s.confirmations;
  else o["confirmations"] = s.confirm_tag;
  o["head"] = optional_number(s.head);
  o["confirmed_top"] = optional_number(s.confirmed_top);
  o["cursor"] = optional_number(s.cursor);
  o["cursor_hash"] = s.cursor_hash.empty() ? boost::json::value(nullptr) : boost::json::value(s.cursor_hash);
  o["lag_blocks"] = s.lag();
  o["head_source"] = s.head_source;
  o["catching_up"] = s.catching_up;
  if (!s.starting.empty()) o["starting"] = s.starting;
  o["role"] = s.role.empty() ? boost::json::value(nullptr) : boost::json::value(s.role);
  if (s.role == "leader") o["epoch"] = s.epoch;
  if (s.role == "standby") o["leader"] = s.leader;
  o["healthy"] = h.ok;
  o["health"] = h.reason;
  o["ready"] = r.ok;
  o["readiness"] = r.reason;
  o["uptime_seconds"] = std::chrono::duration_cast<std::chrono::seconds>(now - s.started).count();
  if (!s.sink_problem.empty()) o["sink_problem"] = s.sink_problem;
  boost::json::array endpoints;
  for (const auto& e : s.endpoints) {
    boost::json::object j;
    j["name"] = e.name;
    j["state"] = e.state;
    j["head"] = optional_number(e.head);
    j["lagging"] = e.lagging;
    endpoints.push_back(std::move(j));
  }
  o["endpoints"] = std::move(endpoints);
  return boost::json::serialize(o);
}

constexpr const char* kText = "text/plain; charset=utf-8";

// Every answer's headers: no caching, the client's keep-alive honoured.
http::response<http::string_body> make_reply(const http::request<http::string_body>& req, http::status code, std::string body,
                                             const char* type) {
  http::response<http::string_body> res{code, req.version()};
  res.set(http::field::server, "chainidx");
  res.set(http::field::content_type, type);
  res.set(http::field::cache_control, "no-store");
  res.keep_alive(req.keep_alive());
  res.body() = std::move(body);
  res.prepare_payload();
  return res;
}

// One admin request, on the admin API's executor. A plain function rather than a capturing
// lambda: GCC 12 destroys a coroutine lambda's init-captures twice.
asio::awaitable<AdminReply> admin_call(AdminApi* admin, AdminRequest request) { co_return admin->handle(request); }

}  // namespace

struct OpsServer::Impl : std::enable_shared_from_this<Impl> {
  Impl(asio::io_context& io, std::vector<OpsServer::Chain> c, ProbeSettings p) : acceptor(io), chains(std::move(c)), probes(p) {}

  tcp::acceptor acceptor;
  std::vector<OpsServer::Chain> chains;
  ProbeSettings probes;
  std::set<beast::tcp_stream*> open;
  bool stopped = false;

  // Reads one chain's status on its own thread (refreshed, its gauges updated), or gives up
  // after kSnapshotTimeout.
  asio::awaitable<Snapshot> snapshot(const OpsServer::Chain& chain) {
    struct Pending {
      explicit Pending(asio::any_io_executor ex) : timer(ex) {}
      asio::steady_timer timer;
      std::optional<LiveStatus> status;
    };
    auto home = co_await asio::this_coro::executor;
    auto pending = std::make_shared<Pending>(home);
    pending->timer.expires_after(kSnapshotTimeout);
    // Only a weak reference travels: a reply that comes after the timeout, or after this server's
    // io_context stopped, finds nothing to fill.
    asio::post(chain.executor, [weak = std::weak_ptr<Pending>(pending), home, status = chain.status, metrics = chain.metrics] {
      if (status->refresh) status->refresh();
      if (metrics) metrics->update(*status);
      LiveStatus copy = *status;
      copy.refresh = nullptr;
      asio::post(home, [weak, copy = std::move(copy)]() mutable {
        if (auto p = weak.lock()) {
          p->status = std::move(copy);
          p->timer.cancel();
        }
      });
    });
    boost::system::error_code ec;
    co_await pending->timer.async_wait(asio::redirect_error(asio::use_awaitable, ec));
    co_return Snapshot{std::move(pending->status), chain.status->chain};
  }

  // "/healthz/base" -> the chain named "base" (nullptr when none is); `which` is what follows the
  // probe's path.
  const OpsServer::Chain* chain_named(std::string_view which) const {
    for (const auto& c : chains)
      if (c.status->chain == which) return &c;
    return nullptr;
  }

  std::string chain_names() const {
    std::string names;
    for (const auto& c : chains) names += (names.empty() ? "" : ", ") + c.status->chain;
    return names;
  }

  asio::awaitable<http::response<http::string_body>> answer(const http::request<http::string_body>& req) {
    auto reply = [&](http::status code, std::string body, const char* type = kText) { return make_reply(req, code, std::move(body), type); };
    std::string_view target = req.target();
    target = target.substr(0, target.find('?'));
    // /healthz/<chain>, /readyz/<chain>: one chain's verdict.
    std::string_view probe = target, which;
    for (std::string_view p : {"/healthz/", "/readyz/"})
      if (target.starts_with(p)) {
        probe = target.substr(0, p.size() - 1);
        which = target.substr(p.size());
      }
    const bool known = target == "/metrics" || probe == "/healthz" || probe == "/readyz" || target == "/status";
    if (!known)
      co_return reply(http::status::not_found,
                      "not found: this server answers GET /metrics, /healthz, /readyz (also /healthz/<chain>, /readyz/<chain>) and /status\n");
    if (req.method() != http::verb::get && req.method() != http::verb::head) {
      auto res = reply(http::status::method_not_allowed, "method not allowed: use GET\n");
      res.set(http::field::allow, "GET, HEAD");
      co_return res;
    }
    std::vector<const OpsServer::Chain*> asked;
    if (!which.empty()) {
      const OpsServer::Chain* one = chain_named(which);
      if (!one) co_return reply(http::status::not_found, "no chain \"" + std::string(which) + "\" here; the chains are " + chain_names() + "\n");
      asked.push_back(one);
    } else {
      for (const auto& c : chains) asked.push_back(&c);
    }
    std::vector<Snapshot> snaps;
    for (const auto* c : asked) snaps.push_back(co_await snapshot(*c));

    if (target == "/metrics") {
      std::vector<Metrics*> all;
      for (const auto* c : asked)
        if (c->metrics) all.push_back(c->metrics);
      co_return reply(http::status::ok, Metrics::text(all), "text/plain; version=0.0.4; charset=utf-8");
    }
    if (target == "/status") {
      if (chains.size() == 1) co_return reply(http::status::ok, status_json(snaps[0], probes) + "\n", "application/json");
      std::string body = "{\"chains\":[";
      for (std::size_t i = 0; i < snaps.size(); ++i) body += (i ? "," : "") + status_json(snaps[i], probes);
      co_return reply(http::status::ok, body + "]}\n", "application/json");
    }
    const bool health = probe == "/healthz";
    // One chain (the only one, or the one asked for): its verdict as it is. Several: ok when
    // every chain is, a line each.
    if (snaps.size() == 1) {
      const Verdict v = judge(snaps[0], health, probes);
      co_return reply(v.ok ? http::status::ok : http::status::service_unavailable, v.reason + "\n");
    }
    bool ok = true;
    std::string body;
    for (const auto& snap : snaps) {
      const Verdict v = judge(snap, health, probes);
      ok = ok && v.ok;
      body += snap.name + ": " + v.reason + "\n";
    }
    co_return reply(ok ? http::status::ok : http::status::service_unavailable, std::move(body));
  }

  // /admin/: answered on the admin API's thread (it waits for Postgres), never on this one. With
  // several chains, POST /admin/replay goes to the chain its body names (the first chain's API
  // answers a body that names none: after the token check, with the reason) and GET
  // /admin/replays lists every chain's jobs.
  asio::awaitable<http::response<http::string_body>> admin_answer(const http::request<http::string_body>& req, std::string_view path) {
    AdminReply r;
    if (!chains.front().admin) {
      r = {404, "the admin API is off: set server.admin_token (from the environment) to turn it on\n", false};
    } else {
      const OpsServer::Chain* to = &chains.front();
      if (chains.size() > 1 && req.method() == http::verb::post) {
        boost::system::error_code ec;
        const boost::json::value body = boost::json::parse(req.body(), ec);
        if (!ec && body.is_object())
          if (const auto* named = body.as_object().if_contains("chain"); named && named->is_string())
            if (const auto* c = chain_named(named->as_string())) to = c;
      }
      const bool all = chains.size() > 1 && path == "/admin/replays" && (req.method() == http::verb::get || req.method() == http::verb::head);
      boost::json::array listed;
      for (const auto& chain : chains) {
        if (!all && &chain != to) continue;
        // A replay stays at or below the chain's live cursor: only a POST needs it.
        std::optional<std::uint64_t> cursor;
        if (req.method() == http::verb::post) {
          const Snapshot snap = co_await snapshot(chain);
          if (snap.status) cursor = snap.status->cursor;
        }
        AdminRequest ar{std::string(req.method_string()), std::string(path), std::string(req[http::field::authorization]), req.body(),
                        cursor};
        r = co_await asio::co_spawn(chain.admin->executor(), admin_call(chain.admin, std::move(ar)), asio::use_awaitable);
        if (!all) break;
        if (r.status != 200) break;  // the token refused, or a chain's table unreadable: that answer
        boost::system::error_code ec;
        boost::json::value doc = boost::json::parse(r.body, ec);
        if (ec || !doc.is_object() || !doc.as_object().contains("replays")) break;
        for (auto& job : doc.as_object()["replays"].as_array()) listed.push_back(std::move(job));
      }
      if (all && r.status == 200) {
        boost::json::object doc;
        doc["replays"] = std::move(listed);
        r.body = boost::json::serialize(doc) + "\n";
      }
    }
    auto res = make_reply(req, static_cast<http::status>(r.status), std::move(r.body), r.json ? "application/json" : kText);
    if (r.status == 401) res.set(http::field::www_authenticate, "Bearer realm=\"chainidx\"");
    co_return res;
  }

  asio::awaitable<void> session(tcp::socket socket) {
    auto self = shared_from_this();
    beast::tcp_stream stream(std::move(socket));
    open.insert(&stream);
    beast::flat_buffer buffer;
    try {
      for (;;) {
        http::request_parser<http::string_body> parser;
        parser.header_limit(kHeaderLimit);
        parser.body_limit(kBodyLimit);
        stream.expires_after(kIdleTimeout);
        co_await http::async_read(stream, buffer, parser, asio::use_awaitable);
        const auto& req = parser.get();
        std::string_view path = req.target();
        path = path.substr(0, path.find('?'));
        // (Not a conditional expression: GCC 12 mishandles co_await inside one.)
        http::response<http::string_body> res;
        if (path == "/admin" || path.starts_with("/admin/")) res = co_await admin_answer(req, path);
        else res = co_await answer(req);
        if (req.method() == http::verb::head) res.body().clear();
        const bool keep = res.keep_alive();
        co_await http::async_write(stream, res, asio::use_awaitable);
        if (!keep) break;
      }
    } catch (const boost::system::system_error& e) {
      // A client that closed, timed out or sent too much: nothing to answer.
      if (e.code() == http::error::header_limit || e.code() == http::error::body_limit) {
        http::response<http::string_body> res{http::status::payload_too_large, 11};
        res.body() = "request too large\n";
        res.prepare_payload();
        boost::system::error_code ignored;
        http::write(stream, res, ignored);
      }
    }
    boost::system::error_code ignored;
    stream.socket().shutdown(tcp::socket::shutdown_both, ignored);
    open.erase(&stream);
  }

  asio::awaitable<void> accept() {
    auto self = shared_from_this();
    while (!stopped) {
      boost::system::error_code ec;
      tcp::socket socket = co_await acceptor.async_accept(asio::redirect_error(asio::use_awaitable, ec));
      if (ec) {
        if (stopped || ec == asio::error::operation_aborted) break;
        spdlog::warn("event=ops_accept_failed reason=\"{}\"", ec.message());
        continue;
      }
      socket.set_option(tcp::no_delay(true), ec);
      asio::co_spawn(acceptor.get_executor(), session(std::move(socket)), asio::detached);
    }
  }
};

OpsServer::OpsServer(asio::io_context& io, const std::string& listen, std::vector<Chain> chains, ProbeSettings probes)
    : impl_(std::make_shared<Impl>(io, std::move(chains), probes)) {
  if (impl_->chains.empty()) throw std::invalid_argument("OpsServer: no chain");
  const auto colon = listen.rfind(':');
  if (colon == std::string::npos) throw ListenError("server.listen: \"" + listen + "\" is not HOST:PORT");
  std::string host = listen.substr(0, colon);
  if (host.size() > 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
  try {
    tcp::resolver resolver(io);
    auto endpoints = resolver.resolve(host, listen.substr(colon + 1), tcp::resolver::passive | tcp::resolver::numeric_service);
    const tcp::endpoint at = *endpoints.begin();
    impl_->acceptor.open(at.protocol());
    impl_->acceptor.set_option(tcp::acceptor::reuse_address(true));
    impl_->acceptor.bind(at);
    impl_->acceptor.listen();
  } catch (const boost::system::system_error& e) {
    throw ListenError("server.listen: cannot listen on " + listen + ": " + e.code().message() +
                             " (choose a free port, or another address)");
  }
  spdlog::info("event=ops_server listen={} paths=\"/metrics /healthz /readyz /status /admin/\"", listen);
  asio::co_spawn(io, impl_->accept(), asio::detached);
}

OpsServer::~OpsServer() { stop(); }

unsigned short OpsServer::port() const { return impl_->acceptor.local_endpoint().port(); }

void OpsServer::stop() {
  if (impl_->stopped) return;
  impl_->stopped = true;
  boost::system::error_code ignored;
  impl_->acceptor.close(ignored);
  for (auto* stream : impl_->open) stream->socket().close(ignored);
}

}  // namespace chainidx::app

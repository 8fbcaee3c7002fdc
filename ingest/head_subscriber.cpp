#include "ingest/head_subscriber.hpp"

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/ssl.hpp>
#include <boost/beast/websocket.hpp>
#include <boost/beast/websocket/ssl.hpp>
#include <spdlog/spdlog.h>

#include <random>

#include "ingest/decode.hpp"
#include "ingest/tls_context.hpp"
#include "ingest/url.hpp"

namespace chainidx::ingest {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace websocket = beast::websocket;
using asio::use_awaitable;
using tcp = asio::ip::tcp;

struct HeadSubscriber::Impl {
  explicit Impl(asio::any_io_executor ex) : executor(ex) {}
  asio::any_io_executor executor;
  std::vector<Endpoint> endpoints;
  Options options;
  OnHead on_head;
  OnSubscription on_subscription;
  std::optional<std::size_t> live;  // the endpoint whose subscription is confirmed
  std::size_t index = 0;            // the endpoint being connected to
  std::string dropped;              // why drop() closed the socket
  std::uint64_t reconnects = 0;
  std::uint64_t heads = 0;
  std::uint64_t malformed = 0;
  unsigned attempt = 0;
  std::mt19937 rng{std::random_device{}()};
  bool stopping = false;
  std::function<void()> close_current;  // closes the live connection's socket, while there is one
  asio::steady_timer backoff_timer{executor};
  // The head-stall watchdog: a timer whose expiry closes the socket. `session` tells a stale
  // expiry (of a connection already gone) from the live one's.
  asio::steady_timer stall_timer{executor};
  std::uint64_t session = 0;
  bool stalled = false;
  const char* phase = "connect";  // what the connection was doing, for the reason it ended

  void arm_stall_timer() {
    stall_timer.expires_after(options.stall_timeout);
    stall_timer.async_wait([this, id = session](const boost::system::error_code& ec) {
      if (ec || id != session || !close_current) return;
      stalled = true;
      if (options.on_stall) options.on_stall();
      close_current();
    });
  }

  void went_live() {
    live = index;
    if (on_subscription) on_subscription(live);
  }

  template <class Stream>
  Task<void> session_loop(websocket::stream<Stream>& ws, const Url& url, const std::string& name) {
    auto& lowest = beast::get_lowest_layer(ws);
    close_current = [&lowest] { lowest.cancel(); };
    ++session;
    stalled = false;
    dropped.clear();
    struct Forget {
      Impl& s;
      ~Forget() {
        if (s.live) {
          s.live.reset();
          if (s.on_subscription) s.on_subscription(std::nullopt);
        }
        s.close_current = nullptr;
        ++s.session;
        s.stall_timer.cancel();
      }
    } forget{*this};
    if (stopping) co_return;
    // From here on the websocket's own timeouts apply, not the TCP stream's: the upgrade must
    // finish within the handshake timeout, and an idle socket is pinged after ping_interval
    // and counted dead after two intervals without any frame.
    lowest.expires_never();
    websocket::stream_base::timeout t{};
    t.handshake_timeout = options.handshake_timeout;
    t.idle_timeout = 2 * options.ping_interval;
    t.keep_alive_pings = true;
    ws.set_option(t);
    std::string host = url.host + ":" + url.port;
    if (!url.credentials.empty()) {
      ws.set_option(websocket::stream_base::decorator([auth = url.authorization()](websocket::request_type& req) {
        req.set(beast::http::field::authorization, auth);
      }));
    }
    phase = "websocket handshake";
    co_await ws.async_handshake(host, url.target, use_awaitable);
    ws.text(true);
    phase = "subscribe";
    co_await ws.async_write(asio::buffer(std::string_view(
                                R"({"jsonrpc":"2.0","id":1,"method":"eth_subscribe","params":["newHeads"]})")),
                            use_awaitable);
    // The subscription must be answered within the handshake timeout too.
    stall_timer.expires_after(options.handshake_timeout);
    stall_timer.async_wait([this, id = session](const boost::system::error_code& ec) {
      if (ec || id != session || !close_current) return;
      close_current();
    });
    bool subscribed = false;
    while (!stopping) {
      beast::flat_buffer buffer;
      co_await ws.async_read(buffer, use_awaitable);
      std::string_view msg(static_cast<const char*>(buffer.data().data()), buffer.size());
      auto head = decode_new_head(msg);
      if (!head.ok()) {
        // A hostile or broken frame: count it and go elsewhere rather than trust this socket.
        ++malformed;
        throw std::runtime_error("malformed newHeads message: " + head.error().message);
      }
      if (!head->has_value()) {
        if (!subscribed) {
          if (msg.find("\"error\"") != std::string_view::npos)
            throw std::runtime_error("eth_subscribe refused: " + std::string(msg.substr(0, 200)));
          subscribed = true;
          phase = "read";
          attempt = 0;  // subscribed and answering: the endpoint is healthy again
          arm_stall_timer();
          spdlog::info("event=ws_subscribed endpoint={}", name);
          went_live();
        }
        continue;
      }
      if (!subscribed) {
        subscribed = true;
        phase = "read";
        attempt = 0;
        spdlog::info("event=ws_subscribed endpoint={}", name);
        went_live();
      }
      arm_stall_timer();
      ++heads;
      on_head(**head);
      if (!dropped.empty()) throw std::runtime_error(dropped);  // drop() from within on_head
    }
  }

  Task<void> connect_and_follow(const Endpoint& endpoint) {
    auto url = parse_url(endpoint.url);
    const std::string& name = endpoint.name;
    if (!url) throw std::runtime_error("bad WebSocket URL " + name);
    phase = "resolve";
    tcp::resolver resolver(executor);
    auto addresses = co_await resolver.async_resolve(url->host, url->port, use_awaitable);
    if (url->tls()) {
      websocket::stream<beast::ssl_stream<beast::tcp_stream>> ws(executor, client_tls_context());
      if (!SSL_set_tlsext_host_name(ws.next_layer().native_handle(), url->host.c_str()))
        throw std::runtime_error("cannot set TLS SNI for " + name);
      ws.next_layer().set_verify_callback(asio::ssl::host_name_verification(url->host));
      phase = "connect";
      beast::get_lowest_layer(ws).expires_after(options.handshake_timeout);
      co_await beast::get_lowest_layer(ws).async_connect(addresses, use_awaitable);
      phase = "TLS handshake";
      beast::get_lowest_layer(ws).expires_after(options.handshake_timeout);
      co_await ws.next_layer().async_handshake(asio::ssl::stream_base::client, use_awaitable);
      co_await session_loop(ws, *url, name);
    } else {
      websocket::stream<beast::tcp_stream> ws(executor);
      phase = "connect";
      beast::get_lowest_layer(ws).expires_after(options.handshake_timeout);
      co_await beast::get_lowest_layer(ws).async_connect(addresses, use_awaitable);
      co_await session_loop(ws, *url, name);
    }
  }

  static std::string said(std::chrono::milliseconds d) {
    return d.count() % 1000 == 0 ? std::to_string(d.count() / 1000) + " s" : std::to_string(d.count()) + " ms";
  }

  // Why a connection ended, in words an operator can act on.
  std::string reason(const boost::system::error_code& ec) const {
    std::string p = phase;
    if (!dropped.empty()) return dropped;
    if (p == "read" && stalled) return "no new head for " + said(options.stall_timeout) + " (chain.head_stall_timeout_seconds)";
    if (p == "read" && (ec == beast::error::timeout || ec == websocket::error::closed))
      return "no answer to pings for " + said(2 * options.ping_interval) + ": dead socket (chain.ws_ping_interval_seconds)";
    if (p != "read" && (ec == beast::error::timeout || ec == asio::error::operation_aborted))
      return p + " did not complete within " + said(options.handshake_timeout) + " (chain.ws_handshake_timeout_seconds)";
    return p + ": " + ec.message();
  }
};

HeadSubscriber::HeadSubscriber(asio::any_io_executor executor, std::vector<Endpoint> endpoints, Options options, OnHead on_head)
    : impl_(std::make_unique<Impl>(executor)) {
  for (auto& e : endpoints)
    if (e.name.empty()) e.name = endpoint_label(e.url);
  impl_->endpoints = std::move(endpoints);
  impl_->options = options;
  impl_->on_head = std::move(on_head);
}

HeadSubscriber::~HeadSubscriber() = default;

std::uint64_t HeadSubscriber::reconnects() const { return impl_->reconnects; }
std::uint64_t HeadSubscriber::heads_received() const { return impl_->heads; }
std::uint64_t HeadSubscriber::malformed_messages() const { return impl_->malformed; }

asio::awaitable<void> HeadSubscriber::run() {
  Impl& s = *impl_;
  std::size_t index = 0;
  while (!s.stopping) {
    const Endpoint& endpoint = s.endpoints[index];
    s.index = index;
    std::string problem;
    try {
      co_await s.connect_and_follow(endpoint);
      problem = "connection ended";
    } catch (const boost::system::system_error& e) {
      problem = s.reason(e.code());
    } catch (const std::exception& e) {
      problem = e.what();
    }
    if (!s.dropped.empty()) {
      problem = s.dropped;
      s.dropped.clear();
    }
    if (s.stopping) co_return;
    ++s.reconnects;
    auto delay = s.options.backoff.delay(s.attempt++, std::uniform_real_distribution<double>(0, 1)(s.rng));
    index = (index + 1) % s.endpoints.size();
    spdlog::warn("event=ws_reconnect endpoint={} reason=\"{}\" next_endpoint={} backoff_ms={}", endpoint.name, problem,
                 s.endpoints[index].name, delay.count());
    s.backoff_timer.expires_after(delay);
    boost::system::error_code ec;
    co_await s.backoff_timer.async_wait(asio::redirect_error(use_awaitable, ec));
    if (s.stopping) co_return;
  }
}

void HeadSubscriber::drop(std::string reason) {
  if (!impl_->close_current) return;
  if (impl_->options.on_stall) impl_->options.on_stall();
  impl_->dropped = std::move(reason);
  impl_->close_current();
}

std::optional<std::size_t> HeadSubscriber::live_endpoint() const { return impl_->live; }

void HeadSubscriber::set_on_subscription(OnSubscription f) { impl_->on_subscription = std::move(f); }

void HeadSubscriber::stop() {
  impl_->stopping = true;
  if (impl_->close_current) impl_->close_current();
  impl_->backoff_timer.cancel();
}

}  // namespace chainidx::ingest

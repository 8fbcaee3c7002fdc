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
#include "schema/redact.hpp"

namespace chainidx::ingest {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace websocket = beast::websocket;
using asio::use_awaitable;
using tcp = asio::ip::tcp;

struct HeadSubscriber::Impl {
  explicit Impl(asio::any_io_executor ex) : executor(ex) {}
  asio::any_io_executor executor;
  std::vector<std::string> urls;
  Options options;
  OnHead on_head;
  std::uint64_t reconnects = 0;
  std::uint64_t heads = 0;
  std::uint64_t malformed = 0;
  unsigned attempt = 0;
  std::mt19937 rng{std::random_device{}()};
  bool stopping = false;
  std::function<void()> close_current;  // closes the live connection's socket, while there is one
  asio::steady_timer backoff_timer{executor};

  // One connection's life: subscribe, then read heads until something goes wrong. Every read
  // has a deadline of stall_timeout on the TCP stream, which is both the dead-socket detector
  // and the "node stopped producing heads" detector.
  template <class Stream>
  Task<void> session(websocket::stream<Stream>& ws, const Url& url, const std::string& name) {
    auto& lowest = beast::get_lowest_layer(ws);
    close_current = [&lowest] { lowest.cancel(); };
    struct Forget {
      std::function<void()>& f;
      ~Forget() { f = nullptr; }
    } forget{close_current};
    if (stopping) co_return;
    std::string host = url.host + ":" + url.port;
    lowest.expires_after(options.handshake_timeout);
    co_await ws.async_handshake(host, url.target, use_awaitable);
    ws.text(true);
    co_await ws.async_write(asio::buffer(std::string_view(
                                R"({"jsonrpc":"2.0","id":1,"method":"eth_subscribe","params":["newHeads"]})")),
                            use_awaitable);
    bool subscribed = false;
    while (!stopping) {
      lowest.expires_after(subscribed ? options.stall_timeout : options.handshake_timeout);
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
          spdlog::info("event=ws_subscribed endpoint={}", name);
        }
        continue;
      }
      subscribed = true;
      attempt = 0;  // a good head, not a mere connect, proves the endpoint healthy
      ++heads;
      on_head(**head);
    }
  }

  Task<void> connect_and_follow(const std::string& text) {
    auto url = parse_url(text);
    std::string name = schema::redact_url(text);
    if (!url) throw std::runtime_error("bad WebSocket URL " + name);
    tcp::resolver resolver(executor);
    auto endpoints = co_await resolver.async_resolve(url->host, url->port, use_awaitable);
    if (url->tls()) {
      websocket::stream<beast::ssl_stream<beast::tcp_stream>> ws(executor, client_tls_context());
      if (!SSL_set_tlsext_host_name(ws.next_layer().native_handle(), url->host.c_str()))
        throw std::runtime_error("cannot set TLS SNI for " + name);
      ws.next_layer().set_verify_callback(asio::ssl::host_name_verification(url->host));
      beast::get_lowest_layer(ws).expires_after(options.handshake_timeout);
      co_await beast::get_lowest_layer(ws).async_connect(endpoints, use_awaitable);
      beast::get_lowest_layer(ws).expires_after(options.handshake_timeout);
      co_await ws.next_layer().async_handshake(asio::ssl::stream_base::client, use_awaitable);
      co_await session(ws, *url, name);
    } else {
      websocket::stream<beast::tcp_stream> ws(executor);
      beast::get_lowest_layer(ws).expires_after(options.handshake_timeout);
      co_await beast::get_lowest_layer(ws).async_connect(endpoints, use_awaitable);
      co_await session(ws, *url, name);
    }
  }
};

HeadSubscriber::HeadSubscriber(asio::any_io_executor executor, std::vector<std::string> ws_urls, Options options, OnHead on_head)
    : impl_(std::make_unique<Impl>(executor)) {
  impl_->urls = std::move(ws_urls);
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
    const std::string& url = s.urls[index];
    std::string problem;
    try {
      co_await s.connect_and_follow(url);
      problem = "connection ended";
    } catch (const boost::system::system_error& e) {
      problem = e.code() == beast::error::timeout ? "no head within the stall timeout or a dead socket" : e.code().message();
    } catch (const std::exception& e) {
      problem = e.what();
    }
    if (s.stopping) co_return;
    ++s.reconnects;
    auto delay = s.options.backoff.delay(s.attempt++, std::uniform_real_distribution<double>(0, 1)(s.rng));
    index = (index + 1) % s.urls.size();
    spdlog::warn("event=ws_reconnect endpoint={} reason=\"{}\" next_endpoint={} backoff_ms={}", schema::redact_url(url),
                 problem, schema::redact_url(s.urls[index]), delay.count());
    s.backoff_timer.expires_after(delay);
    boost::system::error_code ec;
    co_await s.backoff_timer.async_wait(asio::redirect_error(use_awaitable, ec));
    if (s.stopping) co_return;
  }
}

void HeadSubscriber::stop() {
  impl_->stopping = true;
  if (impl_->close_current) impl_->close_current();
  impl_->backoff_timer.cancel();
}

}  // namespace chainidx::ingest

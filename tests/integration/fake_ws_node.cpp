#include "fake_ws_node.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/ssl.hpp>
#include <boost/beast/websocket.hpp>
#include <boost/beast/websocket/ssl.hpp>

#include <atomic>
#include <optional>
#include <stdexcept>
#include <thread>

#include "harness.hpp"

namespace chainidx::testing {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace websocket = beast::websocket;
using asio::use_awaitable;
using tcp = asio::ip::tcp;

struct FakeWsNode::Impl {
  Behaviour behaviour;
  asio::io_context io;
  std::optional<asio::ssl::context> tls;
  tcp::acceptor acceptor{io, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0)};
  std::atomic<int> connections{0};
  std::thread thread;

  static std::string head(int n) {
    char hash[67], parent[67];
    std::snprintf(hash, sizeof hash, "0x%064x", 0x1000 + n);
    std::snprintf(parent, sizeof parent, "0x%064x", 0x1000 + n - 1);
    return std::string(R"({"jsonrpc":"2.0","method":"eth_subscription","params":{"subscription":"0x1","result":{"number":"0x)") +
           std::to_string(n) + R"(","hash":")" + hash + R"(","parentHash":")" + parent + R"("}}})";
  }

  template <class Stream>
  asio::awaitable<void> talk(websocket::stream<Stream>& ws) {
    if (behaviour == Behaviour::kNoHandshake) {
      asio::steady_timer never(io, std::chrono::seconds(30));
      co_await never.async_wait(use_awaitable);
      co_return;
    }
    co_await ws.async_accept(use_awaitable);
    beast::flat_buffer buffer;
    co_await ws.async_read(buffer, use_awaitable);  // eth_subscribe
    ws.text(true);
    std::string reply = R"({"jsonrpc":"2.0","id":1,"result":"0x1"})";
    co_await ws.async_write(asio::buffer(reply), use_awaitable);
    asio::steady_timer t(io);
    if (behaviour == Behaviour::kIdle) {
      for (;;) co_await ws.async_read(buffer, use_awaitable);  // a read pending: pings get pongs
    }
    if (behaviour == Behaviour::kSubscribeThenClose) {
      t.expires_after(std::chrono::milliseconds(100));
      co_await t.async_wait(use_awaitable);
      co_await ws.async_close(websocket::close_code::going_away, use_awaitable);
      co_return;
    }
    for (int n = 1; n <= 1000; ++n) {
      t.expires_after(std::chrono::milliseconds(50));
      co_await t.async_wait(use_awaitable);
      if (behaviour == Behaviour::kSilent) continue;
      std::string msg = behaviour == Behaviour::kGarbage ? std::string(R"({"jsonrpc":"2.0","method":"eth_subscription","params":{"result":{"number":"0xZZ"}}})")
                                                          : head(n);
      co_await ws.async_write(asio::buffer(msg), use_awaitable);
    }
  }

  asio::awaitable<void> serve(tcp::socket socket) {
    ++connections;
    try {
      if (tls) {
        websocket::stream<beast::ssl_stream<beast::tcp_stream>> ws(std::move(socket), *tls);
        co_await ws.next_layer().async_handshake(asio::ssl::stream_base::server, use_awaitable);
        co_await talk(ws);
      } else {
        websocket::stream<beast::tcp_stream> ws(std::move(socket));
        co_await talk(ws);
      }
    } catch (const std::exception&) {
      // The client hung up or refused our certificate.
    }
  }

  asio::awaitable<void> accept_loop() {
    for (;;) {
      tcp::socket socket = co_await acceptor.async_accept(use_awaitable);
      asio::co_spawn(io, serve(std::move(socket)), asio::detached);
    }
  }
};

FakeWsNode::FakeWsNode(Behaviour behaviour, std::optional<Tls> tls) : impl_(std::make_unique<Impl>()) {
  impl_->behaviour = behaviour;
  if (tls) {
    impl_->tls.emplace(asio::ssl::context::tls_server);
    impl_->tls->use_certificate_chain_file(tls->cert_file);
    impl_->tls->use_private_key_file(tls->key_file, asio::ssl::context::pem);
  }
  // Test-only server: the io_context owns every connection coroutine and stop() ends them all.
  asio::co_spawn(impl_->io, impl_->accept_loop(), asio::detached);
  impl_->thread = std::thread([this] { impl_->io.run(); });
}

FakeWsNode::~FakeWsNode() {
  impl_->io.stop();
  impl_->thread.join();
}

int FakeWsNode::port() const { return impl_->acceptor.local_endpoint().port(); }
int FakeWsNode::connections() const { return impl_->connections.load(); }

FakeWsNode::Tls make_self_signed_cert(const std::string& dir, const std::string& host) {
  FakeWsNode::Tls t{dir + "/cert.pem", dir + "/key.pem"};
  int code = 0;
  std::string out = run_capture({"openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", t.key_file, "-out",
                                 t.cert_file, "-days", "1", "-subj", "/CN=" + host, "-addext", "subjectAltName=DNS:" + host},
                                &code);
  if (code != 0) throw std::runtime_error("openssl req failed: " + out);
  return t;
}

}  // namespace chainidx::testing

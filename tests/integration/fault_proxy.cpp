#include "fault_proxy.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

#include <thread>

namespace chainidx::testing {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using asio::use_awaitable;
using tcp = asio::ip::tcp;

struct FaultProxy::Impl {
  int upstream_port;
  Intercept intercept;
  Rewrite rewrite;
  asio::io_context io;
  tcp::acceptor acceptor{io, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0)};
  std::atomic<std::uint64_t> count{0};
  std::thread thread;

  asio::awaitable<std::string> forward(const http::request<http::string_body>& req) {
    beast::tcp_stream upstream(io);
    co_await upstream.async_connect(tcp::endpoint(asio::ip::make_address("127.0.0.1"), static_cast<unsigned short>(upstream_port)),
                                    use_awaitable);
    http::request<http::string_body> out{http::verb::post, "/", 11};
    out.set(http::field::host, "127.0.0.1");
    out.set(http::field::content_type, "application/json");
    out.body() = req.body();
    out.prepare_payload();
    co_await http::async_write(upstream, out, use_awaitable);
    beast::flat_buffer buffer;
    http::response<http::string_body> res;
    co_await http::async_read(upstream, buffer, res, use_awaitable);
    co_return res.body();
  }

  asio::awaitable<void> serve(tcp::socket socket) {
    beast::tcp_stream stream(std::move(socket));
    beast::flat_buffer buffer;
    try {
      for (;;) {
        http::request<http::string_body> req;
        co_await http::async_read(stream, buffer, req, use_awaitable);
        std::uint64_t n = ++count;
        http::response<http::string_body> res{http::status::ok, 11};
        res.set(http::field::content_type, "application/json");
        res.keep_alive(req.keep_alive());
        std::optional<Canned> canned = intercept ? intercept(req.body(), n) : std::nullopt;
        if (canned && canned->delay.count() > 0) {
          asio::steady_timer hang(io, canned->delay);
          co_await hang.async_wait(use_awaitable);
        }
        if (canned) {
          res.result(static_cast<unsigned>(canned->status));
          res.body() = canned->body;
          if (!canned->retry_after.empty()) res.set(http::field::retry_after, canned->retry_after);
        } else {
          std::string body = co_await forward(req);
          if (rewrite) rewrite(req.body(), body, n);
          res.body() = std::move(body);
        }
        res.prepare_payload();
        co_await http::async_write(stream, res, use_awaitable);
        if (!res.keep_alive()) break;
      }
    } catch (const std::exception&) {
      // The client went away; nothing to do.
    }
  }

  asio::awaitable<void> accept_loop() {
    for (;;) {
      tcp::socket socket = co_await acceptor.async_accept(use_awaitable);
      asio::co_spawn(io, serve(std::move(socket)), asio::detached);
    }
  }
};

FaultProxy::FaultProxy(int upstream_port, Intercept intercept, Rewrite rewrite) : impl_(std::make_unique<Impl>()) {
  impl_->upstream_port = upstream_port;
  impl_->intercept = std::move(intercept);
  impl_->rewrite = std::move(rewrite);
  asio::co_spawn(impl_->io, impl_->accept_loop(), asio::detached);
  impl_->thread = std::thread([this] { impl_->io.run(); });
}

FaultProxy::~FaultProxy() {
  impl_->io.stop();
  impl_->thread.join();
}

std::string FaultProxy::url() const { return "http://127.0.0.1:" + std::to_string(impl_->acceptor.local_endpoint().port()); }

std::uint64_t FaultProxy::requests() const { return impl_->count.load(); }

}  // namespace chainidx::testing

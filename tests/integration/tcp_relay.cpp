#include "tcp_relay.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>

#include <array>
#include <atomic>
#include <list>
#include <thread>

namespace chainidx::testing {

namespace asio = boost::asio;
using asio::use_awaitable;
using tcp = asio::ip::tcp;

struct TcpRelay::Impl {
  struct Pair {
    tcp::socket client;
    tcp::socket upstream;
  };
  int upstream_port;
  asio::io_context io;
  tcp::acceptor acceptor{io, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0)};
  Mode mode = Mode::kPass;  // on the io thread
  std::list<std::shared_ptr<Pair>> pairs;
  std::atomic<int> accepted{0};
  std::thread thread;

  // Copies one direction while passing; stalled, waits without reading; in a blackhole, reads and
  // throws away.
  asio::awaitable<void> pump(std::shared_ptr<Pair> p, bool from_client) {
    std::array<char, 16384> buf;
    tcp::socket& from = from_client ? p->client : p->upstream;
    tcp::socket& to = from_client ? p->upstream : p->client;
    try {
      for (;;) {
        while (mode == Mode::kStall) {  // nothing read: it waits in the kernel's buffers
          asio::steady_timer t(io, std::chrono::milliseconds(20));
          co_await t.async_wait(use_awaitable);
        }
        std::size_t n = co_await from.async_read_some(asio::buffer(buf), use_awaitable);
        while (mode == Mode::kStall) {  // read as the stall began: held until it ends
          asio::steady_timer t(io, std::chrono::milliseconds(20));
          co_await t.async_wait(use_awaitable);
        }
        if (mode == Mode::kBlackhole) continue;  // lost, as on a dead path
        co_await asio::async_write(to, asio::buffer(buf.data(), n), use_awaitable);
      }
    } catch (const std::exception&) {
    }
    close(*p);
  }

  void close(Pair& p) {
    boost::system::error_code ec;
    p.client.close(ec);
    p.upstream.close(ec);
  }

  asio::awaitable<void> accept_loop() {
    for (;;) {
      tcp::socket socket = co_await acceptor.async_accept(use_awaitable);
      ++accepted;
      if (mode == Mode::kDown) continue;  // closed at once
      auto p = std::make_shared<Pair>(Pair{std::move(socket), tcp::socket(io)});
      try {
        co_await p->upstream.async_connect(tcp::endpoint(asio::ip::make_address("127.0.0.1"), static_cast<unsigned short>(upstream_port)),
                                           use_awaitable);
      } catch (const std::exception&) {
        continue;
      }
      std::erase_if(pairs, [](const auto& q) { return !q->client.is_open(); });
      pairs.push_back(p);
      asio::co_spawn(io, pump(p, true), asio::detached);
      asio::co_spawn(io, pump(p, false), asio::detached);
    }
  }
};

TcpRelay::TcpRelay(int upstream_port) : impl_(std::make_unique<Impl>()) {
  impl_->upstream_port = upstream_port;
  asio::co_spawn(impl_->io, impl_->accept_loop(), asio::detached);
  impl_->thread = std::thread([this] { impl_->io.run(); });
}

TcpRelay::~TcpRelay() {
  impl_->io.stop();
  impl_->thread.join();
}

int TcpRelay::port() const { return impl_->acceptor.local_endpoint().port(); }

int TcpRelay::connections() const { return impl_->accepted.load(); }

void TcpRelay::set_mode(Mode mode) {
  asio::post(impl_->io, [this, mode] {
    impl_->mode = mode;
    if (mode == Mode::kDown) {
      for (auto& p : impl_->pairs) impl_->close(*p);
      impl_->pairs.clear();
    }
  });
}

}  // namespace chainidx::testing

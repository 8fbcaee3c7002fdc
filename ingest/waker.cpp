#include "ingest/waker.hpp"

#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <algorithm>

namespace chainidx::ingest {

namespace asio = boost::asio;

struct Waker::Waiter {
  asio::steady_timer timer;
};

Task<void> Waker::wait(std::optional<std::chrono::steady_clock::duration> timeout) {
  Waiter w{asio::steady_timer(executor_)};
  if (timeout) w.timer.expires_after(*timeout);
  else w.timer.expires_at(asio::steady_timer::time_point::max());
  waiting_.push_back(&w);
  boost::system::error_code ec;
  co_await w.timer.async_wait(asio::redirect_error(asio::use_awaitable, ec));
  std::erase(waiting_, &w);
}

void Waker::wake_all() {
  for (Waiter* w : waiting_) w->timer.cancel();
}

}  // namespace chainidx::ingest

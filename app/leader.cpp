#include "app/leader.hpp"

#include "app/logging.hpp"

#include <spdlog/spdlog.h>

#include <cmath>

namespace chainidx::app {

LeaderLease::LeaderLease(const std::string& postgres_url, const std::string& chain, Identity self, std::chrono::seconds lease)
    : session_(postgres_url, chain), self_(std::move(self)), lease_(lease) {}

LeaderLease::~LeaderLease() { stop(); }

sinks::PostgresSink::Leadership LeaderLease::try_lead() { return session_.try_lead(self_.instance, self_.host, self_.pid, lease_); }

void LeaderLease::keep(std::function<void(const std::string&)> lost) {
  keeper_ = std::thread([this, lost = std::move(lost), chain = log_chain()] {
    set_log_chain(chain);
    const auto every = std::chrono::duration_cast<std::chrono::milliseconds>(lease_) / 3;
    auto next = std::chrono::steady_clock::now() + every;
    std::unique_lock lock(mutex_);
    while (!wake_.wait_until(lock, next, [this] { return stopping_; })) {
      lock.unlock();
      auto wait = every;
      try {
        session_.renew_leadership(lease_);
      } catch (const sinks::SinkError& e) {
        if (e.kind() == sinks::SinkError::Kind::kFenced) {
          spdlog::error("event=leadership_lost message=\"{}\"", e.what());
          lost(e.what());
          return;
        }
        spdlog::warn("event=lease_renewal_failed lease_seconds={} reason=\"{}\" action=\"trying again in 1 s\"", lease_.count(), e.what());
        wait = std::min(wait, std::chrono::milliseconds(1000));
      }
      next = std::chrono::steady_clock::now() + wait;
      lock.lock();
    }
  });
}

void LeaderLease::stop() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  wake_.notify_all();
  if (keeper_.joinable()) keeper_.join();
}

std::string LeaderLease::describe(const sinks::PostgresSink::Leadership& l) {
  if (l.instance.empty()) return "no leader yet";
  const long left = std::lround(l.lease_left_seconds);
  return "leader " + l.instance + " (host " + l.host + ", pid " + std::to_string(l.pid) + ", epoch " + std::to_string(l.epoch) + ", " +
         (left >= 0 ? "lease ends in " + std::to_string(left) + " s" : "lease ran out " + std::to_string(-left) + " s ago") + ")";
}

}  // namespace chainidx::app

#pragma once
// Leader election for `chainidx run`: processes of one chain with the same Postgres elect one
// leader, which writes; the others wait as hot standbys and take over when the leader dies, exits
// or stops renewing its lease (paused, cut off). The election's state lives in Postgres (see
// PostgresSink::try_lead); this class gives it a session of its own and, while leading, a thread
// that renews the lease every third of it.

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <string>
#include <thread>

#include "sinks/postgres_sink.hpp"

namespace chainidx::app {

class LeaderLease {
 public:
  struct Identity {
    std::string instance;  ///< unique per process
    std::string host;
    int pid = 0;
  };
  LeaderLease(const std::string& postgres_url, const std::string& chain, Identity self, std::chrono::seconds lease);
  ~LeaderLease();
  LeaderLease(const LeaderLease&) = delete;
  LeaderLease& operator=(const LeaderLease&) = delete;

  /// One election attempt (blocking): who leads now; `.ours` when this process does. Throws
  /// sinks::SinkError on database trouble.
  sinks::PostgresSink::Leadership try_lead();

  /// While leading: renews the lease every third of it on a thread of its own. `lost` is called
  /// once, on that thread, with the reason when another instance leads now. A renewal that fails
  /// for database trouble is logged and tried again a second later: the writes' own epoch check
  /// keeps a replaced leader from writing meanwhile.
  void keep(std::function<void(const std::string&)> lost);
  /// Stops renewing (the session, and with it the lock, goes with the object).
  void stop();

  /// "instance (host h, pid p, epoch e, lease ends in N s)" for a standby's status and log.
  static std::string describe(const sinks::PostgresSink::Leadership& l);

 private:
  sinks::PostgresSink session_;
  Identity self_;
  std::chrono::seconds lease_;
  std::mutex mutex_;
  std::condition_variable wake_;
  bool stopping_ = false;
  std::thread keeper_;
};

}  // namespace chainidx::app

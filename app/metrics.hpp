#pragma once
// The indexer's Prometheus metrics. The registry and the text format are prometheus-cpp's (its
// core library); this header keeps it out of everything that includes it. Every series carries
// the chain's name as the `chain` label. Updated on the io thread; prometheus-cpp's metrics are
// thread-safe, so a scrape on the same thread or another reads them consistently.

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace chainidx::app {

struct LiveStatus;

class Metrics {
 public:
  Metrics(const std::string& chain, const std::string& version, const std::string& revision);
  ~Metrics();
  Metrics(const Metrics&) = delete;
  Metrics& operator=(const Metrics&) = delete;

  /// A batch written to one sink: its blocks, transactions and logs, and how long the write took.
  void written(std::string_view sink, std::uint64_t blocks, std::uint64_t transactions, std::uint64_t logs, double seconds);
  /// Decoded events of one contract's event in a batch written to every sink (0 declares the
  /// series, so that rate() sees it from the start).
  void events_written(std::string_view contract, std::string_view event, std::uint64_t count);
  /// Logs of one contract in a written batch that matched an event's topic0 but did not decode
  /// (the dead-letter table and topic hold them).
  void undecodable_written(std::string_view contract, std::uint64_t count);
  /// How many addresses a factory has made for a factory-made contract, as written.
  void factory_contracts(std::string_view contract, std::uint64_t count);
  /// A failed write attempt of one sink (retried).
  void sink_retry(std::string_view sink);
  /// From the head that confirmed a block to that block's write to every sink.
  void head_to_write(double seconds);
  void reorg(std::uint64_t depth);
  void ws_reconnect();
  /// A WebSocket dropped for bringing no usable heads (stalled, stale or lagging).
  void ws_stall();
  void unbacked_head();
  void staged_write_dropped();
  void cursor_rewound();
  void buffer_blocks(std::size_t blocks);
  /// A replay job's progress, from its chunk table (any thread).
  void replay_progress(std::string_view job, std::uint64_t blocks_done, std::uint64_t blocks, bool running);
  /// One JSON-RPC request (a call or a batch of `calls`) to an endpoint, and what it came to
  /// (ok, rpc_error, throttled, http_error, transport, malformed).
  void rpc(std::string_view endpoint, std::string_view method, std::string_view outcome, std::size_t calls, double seconds);

  /// The gauges that mirror `status` (ages against the wall clock), set from it. On the thread
  /// that owns `status`.
  void update(const LiveStatus& status);
  /// The text exposition format of these chains' metrics, one family per name (any thread).
  static std::string text(const std::vector<Metrics*>& all);
  /// update(status), then text({this}).
  std::string scrape(const LiveStatus& status);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace chainidx::app

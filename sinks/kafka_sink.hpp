#pragma once

#include <memory>
#include <string>

#include "sinks/sink.hpp"

namespace chainidx::sinks {

struct KafkaSinkConfig {
  std::string brokers;     ///< bootstrap.servers
  std::string chain_name;  ///< topic prefix
  std::uint64_t chain_id = 0;
  std::uint32_t partitions = 3;
  std::uint32_t replication_factor = 1;
  int delivery_timeout_ms = 60000;  ///< message.timeout.ms: how long a batch may wait for the broker
};

/// Publishes each confirmed block to <chain>.blocks, <chain>.transactions and <chain>.logs with
/// an idempotent producer (acks=all). write() returns only when the broker has acknowledged
/// every message of the batch, so the Postgres cursor, written after, never passes an
/// unacknowledged block: a crash may repeat messages, never lose them. librdkafka stays in the .cpp.
class KafkaSink final : public Sink {
 public:
  explicit KafkaSink(KafkaSinkConfig config);
  ~KafkaSink() override;

  /// Creates the three topics through the Admin API when missing. Throws SinkError.
  void ensure_topics();

  std::string_view name() const override { return "kafka"; }
  void write(std::span<const schema::Block> blocks) override;

  /// Messages handed to the broker and acknowledged, since start (for metrics and tests).
  std::uint64_t acknowledged() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace chainidx::sinks

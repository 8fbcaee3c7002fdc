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

/// Publishes each confirmed block to <chain>.blocks, <chain>.transactions and <chain>.logs, one
/// Kafka transaction per batch (idempotent, acks=all, transactional.id "chainidx-<chain>").
/// write() returns only once the transaction is committed, so the Postgres cursor, written after,
/// never passes an unpublished block; and a batch committed to Kafka just before a crash is not
/// published again on restart (see load_published_tip). librdkafka stays in the .cpp.
class KafkaSink final : public Sink {
 public:
  explicit KafkaSink(KafkaSinkConfig config);
  ~KafkaSink() override;

  /// Creates the three topics through the Admin API when missing. Throws SinkError.
  void ensure_topics();

  /// Reads the newest block a committed transaction put in <chain>.blocks, so that write()
  /// leaves out blocks an earlier run committed to Kafka but died before committing to Postgres.
  /// Call once at start, after ensure_topics(). Throws SinkError.
  void load_published_tip();

  std::string_view name() const override { return "kafka"; }
  void write(std::span<const schema::Block> blocks) override;

  /// Messages handed to the broker and acknowledged, since start (for metrics and tests).
  std::uint64_t acknowledged() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace chainidx::sinks

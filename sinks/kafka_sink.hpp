#pragma once

#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "schema/events.hpp"
#include "sinks/sink.hpp"

namespace chainidx::sinks {

struct KafkaSinkConfig {
  std::string brokers;     ///< bootstrap.servers
  std::string chain_name;  ///< topic prefix
  std::uint64_t chain_id = 0;
  std::uint32_t partitions = 3;
  std::uint32_t replication_factor = 1;
  /// transaction.timeout.ms, and message.timeout.ms with it: how long one batch's transaction
  /// may stay open (and its messages wait for the broker) before it is aborted and sent again.
  int transaction_timeout_ms = 60000;
  /// compression.codec for every topic: none, gzip, snappy, lz4 or zstd.
  std::string compression = "lz4";
  /// Topics are <topic_prefix>.blocks, ... (empty: the chain name).
  std::string topic_prefix;
  /// A replay's producer: its own transactional.id suffix (never fencing the live writer's),
  /// every message marked with a `chainidx_replay` header holding this value, and no block left
  /// out for having been published before. Empty: the live writer.
  std::string replay_job;
  /// Connection properties set on every client after chainidx's own: security (SASL, TLS) and
  /// [kafka.properties]. Values may be secrets: never logged.
  std::vector<std::pair<std::string, std::string>> client_properties;
  /// The configured contracts' event tables: decoded events go to <prefix>.events.<contract>,
  /// undecodable logs to <prefix>.undecodable (both topics made by ensure_topics). Empty: none.
  std::vector<schema::EventTable> event_tables;
  /// kafka.event_topics = "event": one topic per event, <prefix>.events.<contract>.<event>.
  bool topic_per_event = false;
  /// chain.index = "events": blocks are sparse (no block or transaction messages), so the
  /// published tip is read from <prefix>.logs, whose messages carry their block too (see raw_logs).
  bool sparse_blocks = false;
  /// chain.raw_logs = false: no <prefix>.logs messages; with sparse blocks the published tip is
  /// then read from the event topics and <prefix>.undecodable.
  bool raw_logs = true;
};

/// For a librdkafka property chainidx sets itself (or maps from a [kafka] key): how to set it
/// instead. nullptr for a property [kafka.properties] may pass through.
const char* kafka_property_owner(std::string_view name);
/// librdkafka's objection to `name = value` on a producer's configuration, if any.
std::optional<std::string> check_kafka_property(const std::string& name, const std::string& value);

/// Publishes each confirmed block to <chain>.blocks, <chain>.transactions and <chain>.logs, one
/// Kafka transaction per batch (idempotent, acks=all, transactional.id "chainidx-<chain>").
/// write() returns only once the transaction is committed, so the Postgres cursor, written after,
/// never passes an unpublished block; and a batch committed to Kafka just before a crash is not
/// published again on restart (see load_published_tip). librdkafka stays in the .cpp.
///
/// Broker trouble follows librdkafka's transactional contract: a commit that timed out is resumed
/// with the same batch, an abortable error aborts and the batch is sent again in a new
/// transaction, a fatal error rebuilds the producer, and a fenced producer (another instance took
/// the transactional.id) throws SinkError::Kind::kFenced from then on and is never recreated.
/// Every failed write throws, so the caller keeps the batch and stops taking new ones: memory
/// stays flat however long the broker is away.
class KafkaSink final : public Sink {
 public:
  explicit KafkaSink(KafkaSinkConfig config);
  ~KafkaSink() override;

  /// Initialises transactions (aborting what an earlier instance left open, fencing it).
  /// Throws SinkError: retryable while the broker is unreachable.
  void start();

  /// Creates the chain's topics (three, and with contracts the undecodable and events ones)
  /// through the Admin API when missing. Throws SinkError.
  void ensure_topics();

  /// Reads the newest block a committed transaction put in <chain>.blocks, so that write()
  /// leaves out blocks an earlier run committed to Kafka but died before committing to Postgres.
  /// Call once at start, after ensure_topics(). Throws SinkError.
  void load_published_tip();

  std::string_view name() const override { return "kafka"; }
  void write(std::span<const schema::Block> blocks) override;
  /// write() in two steps, for a write staged before its blocks are confirmed: prepare() begins
  /// the transaction, produces the batch and waits until the broker has it, so that
  /// commit_prepared() is only the commit (publishing the batch); abort_prepared() aborts it and
  /// nothing was published. Errors as write(); a commit that failed is resumed or redone by a
  /// write() of the same batch.
  void prepare(std::span<const schema::Block> blocks);
  void commit_prepared();
  void abort_prepared();

  /// Messages handed to the broker and acknowledged, since start (for metrics and tests).
  std::uint64_t acknowledged() const;
  /// Messages in the producer's queue (waiting to be sent or acknowledged). Any thread.
  std::uint64_t queue_depth() const;
  /// Messages whose delivery failed (each failure aborts its batch's transaction), since start.
  std::uint64_t delivery_failures() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace chainidx::sinks

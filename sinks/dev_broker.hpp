#pragma once

#include <memory>
#include <string>
#include <vector>

namespace chainidx::sinks {

/// A local Kafka-protocol broker for development and tests: librdkafka's mock cluster, which
/// speaks the Kafka wire protocol on loopback and accepts idempotent and transactional
/// producers. Not durable: messages live as long as the process.
class DevBroker {
 public:
  /// Starts `broker_count` mock brokers. Throws std::runtime_error when librdkafka cannot.
  explicit DevBroker(int broker_count = 1);
  ~DevBroker();
  DevBroker(const DevBroker&) = delete;
  DevBroker& operator=(const DevBroker&) = delete;

  /// "127.0.0.1:PORT[,...]" for bootstrap.servers.
  const std::string& bootstrap_servers() const;

  /// Creates a topic (the mock cluster has no CreateTopics API; clients that need a topic
  /// with a given partition count get it created here). Throws std::runtime_error.
  void create_topic(const std::string& name, int partitions);

  /// Fault injection, for tests (the mock cluster's own): a broker that is down closes its
  /// connections and refuses new ones until set up again. Brokers are numbered from 1.
  void set_broker_down(int broker_id);
  void set_broker_up(int broker_id);
  /// The next requests of Kafka API `api_key` (e.g. 26 for EndTxn, 0 for Produce) are answered
  /// with `errors` (Kafka protocol error codes, in order), one request each.
  void push_request_errors(int api_key, const std::vector<int>& errors);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace chainidx::sinks

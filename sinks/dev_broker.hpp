#pragma once

#include <memory>
#include <string>

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

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace chainidx::sinks

#pragma once
// The Kafka form of a confirmed block (DESIGN.md, "Kafka"; schemas in schema/kafka/*.json):
// JSON values in snake_case, hashes / addresses / data as 0x-hex; integers that cannot exceed
// 2^53 (block numbers, timestamps, indices, counts, chain id) as JSON numbers, 64-bit gas and
// nonce values and uint256 as decimal strings: a field's type never varies with its value
// (schema/kafka/README.md). Pure: no librdkafka here.

#include <string>
#include <vector>

#include "schema/block.hpp"

namespace chainidx::sinks {

/// The topics of a chain: <prefix>.blocks, .transactions, .logs; with contracts also
/// <prefix>.undecodable and one <prefix>.events.<contract> per contract (kEvents + its index).
enum class Topic { kBlocks = 0, kTransactions = 1, kLogs = 2, kUndecodable = 3, kEvents = 4 };
inline constexpr const char* kTopicSuffixes[] = {"blocks", "transactions", "logs", "undecodable"};

/// The configured contracts' event tables, and which contract's topic each goes to.
struct EventTopics {
  std::vector<schema::EventTable> tables;
  /// Distinct topic names below the prefix, in order (topic kEvents + i): "events.<contract>",
  /// or with `per_event` "events.<contract>.<event>" (the event as its table names it).
  std::vector<std::string> suffixes;
  std::vector<std::uint32_t> topic_of;  ///< per table: its topic's index in `suffixes`
  EventTopics() = default;
  explicit EventTopics(std::vector<schema::EventTable> tables, bool per_event = false);
  bool empty() const { return tables.empty(); }
};

/// Every topic of a chain whose topics are <prefix>.*, indexed by Topic (kEvents + contract).
std::vector<std::string> topic_names(const std::string& prefix, const EventTopics& events);

/// The JSON Schema (draft 2020-12) of the messages one contract event's table sends to
/// <prefix>.events.<contract>: the envelope with `contract`, `event` and `signature` fixed, and
/// `args` with each column's key and the schema of its value (`arg_schemas`, in column order).
std::string event_message_schema(const schema::EventTable& table, const std::vector<std::string>& arg_schemas);

struct KafkaMessage {
  Topic topic;
  std::uint32_t contract = 0;  ///< for Topic::kEvents: the index in EventTopics::suffixes
  /// Partition key: the chain name for blocks (one ordered stream), the sender for
  /// transactions (a sender's transactions stay in nonce order), the contract for logs
  /// (a contract's events stay in block order).
  std::string key;
  std::string value;
};

/// The block's messages: one for the block, one per transaction, one per log, in that order;
/// then, with `events`, one per decoded event (to its contract's topic, keyed by the contract's
/// address) and one per undecodable log (to <prefix>.undecodable, with the reason). Without
/// `raw_logs` (chain.raw_logs = false), no message per log.
std::vector<KafkaMessage> encode_block(const schema::Block& block, std::uint64_t chain_id, const std::string& chain_name,
                                       const EventTopics* events = nullptr, bool raw_logs = true);

}  // namespace chainidx::sinks

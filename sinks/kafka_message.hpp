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

enum class Topic { kBlocks = 0, kTransactions = 1, kLogs = 2 };
inline constexpr const char* kTopicSuffixes[] = {"blocks", "transactions", "logs"};

struct KafkaMessage {
  Topic topic;
  /// Partition key: the chain name for blocks (one ordered stream), the sender for
  /// transactions (a sender's transactions stay in nonce order), the contract for logs
  /// (a contract's events stay in block order).
  std::string key;
  std::string value;
};

/// The block's messages: one for the block, one per transaction, one per log, in that order.
std::vector<KafkaMessage> encode_block(const schema::Block& block, std::uint64_t chain_id, const std::string& chain_name);

}  // namespace chainidx::sinks

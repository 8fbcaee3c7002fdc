#pragma once

#include <span>

#include "schema/block.hpp"

namespace chainidx::ingest {

/// The 2048-bit bloom filter of a set of logs, as the block header's logsBloom commits to it:
/// for the address and every topic, three bits chosen by Keccak-256 of the bytes.
schema::Bloom logs_bloom(std::span<const schema::Log> logs);

/// Whether `bloom` (a header's logsBloom) has every bit the log sets: a log the block holds
/// always passes; a log it does not hold almost never does.
bool bloom_holds(const schema::Bloom& bloom, const schema::Log& log);

}  // namespace chainidx::ingest

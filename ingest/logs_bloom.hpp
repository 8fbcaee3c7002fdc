#pragma once

#include <span>

#include "schema/block.hpp"

namespace chainidx::ingest {

/// The 2048-bit bloom filter of a set of logs, as the block header's logsBloom commits to it:
/// for the address and every topic, three bits chosen by Keccak-256 of the bytes.
schema::Bloom logs_bloom(std::span<const schema::Log> logs);

}  // namespace chainidx::ingest

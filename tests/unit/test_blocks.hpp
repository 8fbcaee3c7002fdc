#pragma once
// Blocks for the pure-logic tests: a hash that encodes (number, branch), so that tests can name
// blocks and the branches they descend from.

#include <cstdint>

#include "schema/block.hpp"

namespace chainidx::test_blocks {

inline schema::Hash32 hash_of(std::uint64_t number, std::uint32_t branch) {
  schema::Hash32 h;
  for (int i = 0; i < 8; ++i) h.bytes[i] = static_cast<std::uint8_t>(number >> (56 - 8 * i));
  for (int i = 0; i < 4; ++i) h.bytes[8 + i] = static_cast<std::uint8_t>(branch >> (24 - 8 * i));
  h.bytes[31] = 0xAA;
  return h;
}

/// Block `number` of `branch`, child of block number - 1 of `parent_branch` (block 0 has none).
inline schema::Block make_block(std::uint64_t number, std::uint32_t branch = 0, std::uint32_t parent_branch = 0) {
  schema::Block b;
  b.number = number;
  b.hash = hash_of(number, branch);
  b.parent_hash = number == 0 ? schema::Hash32{} : hash_of(number - 1, parent_branch);
  return b;
}

}  // namespace chainidx::test_blocks

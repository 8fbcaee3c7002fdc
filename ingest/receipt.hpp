#pragma once

#include <cstdint>
#include <optional>
#include <vector>

#include "schema/block.hpp"

namespace chainidx::ingest {

/// A transaction receipt as JSON-RPC returns it; merged into schema::Transaction once checked
/// against its block (see attach_receipts).
struct Receipt {
  schema::Hash32 transaction_hash;
  std::uint32_t transaction_index = 0;
  schema::Hash32 block_hash;
  std::uint64_t block_number = 0;
  std::optional<schema::Address> from_address;  ///< absent in some old recordings
  std::optional<schema::Address> to_address;
  std::optional<std::uint8_t> status;    ///< absent or null before Byzantium
  std::optional<schema::Hash32> root;    ///< the intermediate state root, before Byzantium
  std::uint64_t gas_used = 0;
  std::uint64_t cumulative_gas_used = 0;
  std::optional<schema::U256> effective_gas_price;
  std::optional<schema::Address> contract_address;
  std::uint8_t type = 0;
  schema::Bloom logs_bloom;
  std::vector<schema::Log> logs;
};

}  // namespace chainidx::ingest

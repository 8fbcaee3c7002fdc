#pragma once

#include <optional>

#include "schema/block.hpp"

namespace chainidx::ingest {

/// Keccak-256 of the RLP-encoded header, i.e. what the block hash must be if the header fields
/// are the ones the chain committed to. Covers the header layouts from London to Prague: the
/// optional trailing fields (base fee, withdrawals root, blob gas, beacon root, requests hash)
/// are encoded when present. Chains with other header layouts (some L2s) do not match; the
/// check can be turned off for them (chain.verify_block_hash).
schema::Hash32 header_hash(const schema::Block& block);

/// The hash of a signed transaction, rebuilt from its fields: Keccak-256 of its RLP (legacy,
/// with v as given) or of type byte || RLP for EIP-2930 (1), EIP-1559 (2), EIP-4844 (3) and
/// EIP-7702 (4) transactions. nullopt for another type, or when the signature is missing.
std::optional<schema::Hash32> transaction_hash(const schema::Transaction& tx);

}  // namespace chainidx::ingest

#pragma once

#include <vector>

#include "ingest/receipt.hpp"
#include "schema/block.hpp"
#include "schema/result.hpp"

namespace chainidx::ingest {

/// Checks that `receipts` are exactly the receipts of `block` and merges them in: one per
/// transaction, in order, same transaction hashes, same block hash and number; logs numbered
/// 0, 1, 2, ... across the block and pointing at their block and transaction; the last
/// cumulative gas equals the header's gasUsed; and the bloom of all logs equals the header's
/// logsBloom, which catches a provider that drops logs. On success fills block.transactions'
/// receipt fields (and the transactions themselves, from the receipts, when the block was
/// fetched with hashes only) and block.logs. On failure `block` is unchanged.
schema::Status attach_receipts(schema::Block& block, std::vector<Receipt> receipts);

}  // namespace chainidx::ingest

#pragma once
// An EIP-4844 (type 3) transaction signed here, for a node to mine: nodes sign only the
// transaction types their eth_sendTransaction builds, and a blob transaction needs its blobs
// sent along, which only eth_sendRawTransaction takes.

#include <cstdint>
#include <string>

namespace chainidx::testing {

/// The JSON parameter of eth_sendRawTransaction (a quoted 0x string) for a blob transaction of
/// `chain_id` from the account of `private_key_hex` with `nonce`, sending `value` wei to `to`,
/// carrying one blob of zeros (whose KZG commitment and proof are both the point at infinity,
/// so no KZG library is needed). With `cell_proofs`, in the EIP-7594 form (128 cell proofs).
std::string raw_blob_transaction(const std::string& private_key_hex, std::uint64_t chain_id, std::uint64_t nonce, const std::string& to,
                                 std::uint64_t value, bool cell_proofs);

}  // namespace chainidx::testing

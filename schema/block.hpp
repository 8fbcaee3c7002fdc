#pragma once
// The decoded form of what chainidx indexes: a block, its transactions with their receipt
// fields, and its logs. Field names follow Ethereum's JSON-RPC names in snake_case.

#include <algorithm>
#include <array>
#include <cstdint>
#include <initializer_list>
#include <optional>
#include <span>
#include <stdexcept>
#include <vector>

#include "schema/events.hpp"
#include "schema/types.hpp"

namespace chainidx::schema {

/// A log's topics: 0 to 4 (LOG0..LOG4), kept inline so that a log's decoding allocates nothing
/// for them.
class Topics {
 public:
  static constexpr std::size_t kMax = 4;
  Topics() = default;
  Topics(std::initializer_list<Hash32> list) {
    for (const Hash32& h : list) push_back(h);
  }
  /// Appends a topic; the caller checks full() first (a fifth topic is not a log's).
  void push_back(const Hash32& h) { items_[size_++] = h; }
  bool full() const { return size_ == kMax; }
  std::size_t size() const { return size_; }
  bool empty() const { return size_ == 0; }
  const Hash32& operator[](std::size_t i) const { return items_[i]; }
  const Hash32& at(std::size_t i) const { return i < size_ ? items_[i] : throw std::out_of_range("topic index"); }
  const Hash32* begin() const { return items_.data(); }
  const Hash32* end() const { return items_.data() + size_; }
  operator std::span<const Hash32>() const { return {begin(), end()}; }
  bool operator==(const Topics& o) const { return std::equal(begin(), end(), o.begin(), o.end()); }

 private:
  std::array<Hash32, kMax> items_{};
  std::uint8_t size_ = 0;
};

struct Log {
  std::uint64_t block_number = 0;
  Hash32 block_hash;
  std::uint32_t log_index = 0;  ///< position in the block, as the node numbers it
  Hash32 transaction_hash;
  std::uint32_t transaction_index = 0;
  Address address;
  Topics topics;
  Bytes data;

  bool operator==(const Log&) const = default;
};

/// An EIP-2930 access list entry.
struct AccessListEntry {
  Address address;
  std::vector<Hash32> storage_keys;
  bool operator==(const AccessListEntry&) const = default;
};

/// An EIP-7702 authorization (a set-code transaction's list item).
struct Authorization {
  U256 chain_id;
  Address address;
  std::uint64_t nonce = 0;
  std::uint8_t y_parity = 0;
  U256 r;
  U256 s;
  bool operator==(const Authorization&) const = default;
};

struct Transaction {
  // From the block body.
  Hash32 hash;
  std::uint64_t block_number = 0;
  Hash32 block_hash;
  std::uint32_t transaction_index = 0;
  Address from_address;
  std::optional<Address> to_address;  ///< absent for contract creation
  U256 value;
  std::uint64_t gas = 0;
  std::optional<U256> gas_price;
  std::optional<U256> max_fee_per_gas;
  std::optional<U256> max_priority_fee_per_gas;
  Bytes input;
  std::uint64_t nonce = 0;
  std::uint8_t type = 0;
  // The signature and the typed-transaction fields, as the node returns them (absent where the
  // transaction type has none), so that the transaction's hash can be recomputed from them.
  std::optional<U256> v;
  std::optional<U256> r;
  std::optional<U256> s;
  std::optional<std::uint8_t> y_parity;          ///< typed transactions
  std::optional<std::uint64_t> chain_id;         ///< EIP-155 / typed transactions
  std::optional<std::vector<AccessListEntry>> access_list;  ///< types 1-4
  std::optional<U256> max_fee_per_blob_gas;      ///< type 3 (EIP-4844)
  std::vector<Hash32> blob_versioned_hashes;     ///< type 3
  std::optional<std::vector<Authorization>> authorization_list;  ///< type 4 (EIP-7702)
  // From the receipt.
  std::optional<std::uint8_t> status;  ///< absent (or null) before Byzantium: root instead
  std::optional<Hash32> root;          ///< pre-Byzantium receipts: the intermediate state root
  std::uint64_t gas_used = 0;
  std::uint64_t cumulative_gas_used = 0;
  std::optional<U256> effective_gas_price;
  std::optional<Address> contract_address;
  std::uint32_t log_count = 0;
  std::optional<Bloom> logs_bloom;  ///< the receipt's bloom of this transaction's logs

  bool operator==(const Transaction&) const = default;
};

/// A validator withdrawal (Shanghai, EIP-4895), as the block body lists it.
struct Withdrawal {
  std::uint64_t index = 0;            ///< the chain-wide withdrawal counter
  std::uint64_t validator_index = 0;
  Address address;
  std::uint64_t amount_gwei = 0;

  bool operator==(const Withdrawal&) const = default;
};

/// The identity of a block in a chain: enough to link it and to name it.
struct BlockRef {
  std::uint64_t number = 0;
  Hash32 hash;
  Hash32 parent_hash;

  bool operator==(const BlockRef&) const = default;
};

struct Block {
  std::uint64_t number = 0;
  Hash32 hash;
  Hash32 parent_hash;
  std::uint64_t timestamp = 0;
  Address miner;
  std::uint64_t gas_limit = 0;
  std::uint64_t gas_used = 0;
  std::optional<U256> base_fee_per_gas;
  U256 difficulty;
  Hash32 state_root;
  Hash32 transactions_root;
  Hash32 receipts_root;
  Bloom logs_bloom;
  Bytes extra_data;
  std::uint64_t size = 0;
  Hash32 sha3_uncles;
  Hash32 mix_hash;
  FixedBytes<8> nonce;
  std::optional<std::uint64_t> blob_gas_used;
  std::optional<std::uint64_t> excess_blob_gas;
  std::optional<Hash32> parent_beacon_block_root;
  std::optional<Hash32> withdrawals_root;
  std::optional<Hash32> requests_hash;  ///< Prague (EIP-7685)
  /// The chain's total difficulty up to this block, where the node returns it (proof-of-work
  /// era and nodes that still report it; above 2^64 on mainnet). Not part of the header hash.
  std::optional<U256> total_difficulty;
  std::uint32_t transaction_count = 0;

  /// Full transactions when fetched with full bodies; empty when only the header is known.
  std::vector<Transaction> transactions;
  /// The transaction hashes the header listed (always filled when the body was decoded).
  std::vector<Hash32> transaction_hashes;
  /// Every log of the block, in log_index order.
  std::vector<Log> logs;
  /// Validator withdrawals, in body order (empty before Shanghai).
  std::vector<Withdrawal> withdrawals;
  /// The logs of configured contracts, decoded against their ABI (app's decoding step fills
  /// these before the sinks see the block), in log order.
  std::vector<DecodedEvent> events;
  /// Only the configured contracts' logs are kept (chain.index = "events"): no block row, no
  /// transactions, and `logs` holds those contracts' logs only. A block from logs-only history
  /// (eth_getLogs) knows its number, hash, timestamp and logs alone: its parent_hash is zero,
  /// and it follows the block before it in number only (history trusts the node's chain below
  /// the confirmation depth); a block of the live path keeps its header and its links.
  bool sparse = false;

  /// Links to `before`: the next number with `before` as parent; for a sparse block without a
  /// parent hash, any later number.
  bool follows(const BlockRef& before) const {
    if (sparse && parent_hash == Hash32{}) return number > before.number;
    return number == before.number + 1 && parent_hash == before.hash;
  }

  BlockRef ref() const { return BlockRef{number, hash, parent_hash}; }
  bool operator==(const Block&) const = default;
};

}  // namespace chainidx::schema

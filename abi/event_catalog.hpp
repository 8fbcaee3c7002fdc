#pragma once
// The configured contracts' events of one chain: their tables (names, columns) and the decoding
// of a block's logs into schema::DecodedEvent. Pure: no I/O.

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <unordered_map>
#include <vector>

#include "abi/abi_type.hpp"
#include "schema/block.hpp"
#include "schema/events.hpp"
#include "schema/result.hpp"

namespace chainidx::abi {

/// Where a factory-made contract's addresses come from: an address parameter of another
/// configured contract's event (docs/events.md, "Factories").
struct FactoryRef {
  std::string contract;   ///< the factory's [[contracts]] name
  std::string event;      ///< one of the factory's chosen events, by name or full signature
  std::string parameter;  ///< the name of an `address` parameter of that event
  bool operator==(const FactoryRef&) const = default;
};

/// One [[contracts]] entry, resolved: its ABI read and its events chosen.
struct ContractEvents {
  std::string name;                        ///< [a-z_][a-z0-9_]*
  std::vector<schema::Address> addresses;  ///< the contract's addresses (none when `factory` is set)
  std::optional<FactoryRef> factory;       ///< the addresses are those the factory's event names
  std::vector<Event> events;               ///< the events indexed (a subset of the ABI's)
  /// topic0 of every non-anonymous event of the whole ABI: a log with one of these is never
  /// taken for an anonymous event.
  std::vector<schema::Hash32> abi_topics;
  std::uint64_t start_block = 0;  ///< logs of earlier blocks are not decoded
};

/// Column and key names (docs/events.md): a parameter's column is its name in snake_case without
/// leading underscores ("tokenId" -> token_id, "_value" -> value), `arg<i>` when unnamed, with
/// `_hash` appended for an indexed dynamic value and `_<i>` when it would repeat a column.
/// Columns the tables always have; a parameter never takes these names.
inline constexpr const char* kEventBaseColumns[] = {"block_number", "log_index", "block_hash", "block_timestamp",
                                                    "transaction_hash", "transaction_index", "contract_address"};
std::string snake_case(std::string_view name);

/// What contracts[child].factory names: the factory (an index in `contracts`), its event (an
/// index in the factory's events) and the address parameter (an index in the event's params).
struct FactoryTarget {
  std::uint32_t contract = 0, event = 0, parameter = 0;
};
/// Resolves contracts[child].factory; on failure `field` is the FactoryRef member that is wrong
/// ("contract", "event" or "parameter").
schema::Result<FactoryTarget> resolve_factory(const std::vector<ContractEvents>& contracts, std::uint32_t child, std::string& field);

/// One address a factory made: an instance of EventCatalog::contracts()[contract] from `block` on.
struct FactoryChild {
  schema::Address address;
  std::uint32_t contract = 0;
  std::uint64_t block = 0;
  bool operator==(const FactoryChild&) const = default;
};

/// The addresses factories have made so far, as written (EventCatalog::decode_children).
class FactoryChildren {
 public:
  /// Keeps the earliest block for an address made more than once for one contract.
  void add(const FactoryChild& child);
  void clear() {
    by_address_.clear();
    size_ = 0;
  }
  std::size_t size() const { return size_; }
  /// How many addresses are instances of `contract`.
  std::size_t count(std::uint32_t contract) const;
  /// Whether `address` was made as an instance of `contract` (at any block).
  bool has(const schema::Address& address, std::uint32_t contract) const;
  /// Every address made for `contract`, with its block.
  std::vector<FactoryChild> of(std::uint32_t contract) const;
  /// Appends to `out` the contracts `address` is an instance of at `block`.
  void instances(const schema::Address& address, std::uint64_t block, std::vector<std::uint32_t>& out) const;

 private:
  std::unordered_map<schema::Address, std::vector<std::pair<std::uint32_t, std::uint64_t>>, schema::FixedBytesHash> by_address_;
  std::size_t size_ = 0;
};

class EventCatalog {
 public:
  EventCatalog() = default;
  /// Fails when two tables would have one name, or a name is longer than Postgres allows (63),
  /// or a `factory` names no configured contract, none of its chosen events, no address
  /// parameter of that event, or a chain of factories that never reaches a contract with addresses.
  static schema::Result<EventCatalog> build(std::vector<ContractEvents> contracts);

  bool empty() const { return tables_.empty(); }
  const std::vector<schema::EventTable>& tables() const { return tables_; }
  const std::vector<ContractEvents>& contracts() const { return contracts_; }
  /// The ABI event tables()[table] was made for.
  const Event& event_of(std::size_t table) const {
    const auto [contract, event] = sources_.at(table);
    return contracts_[contract].events[event];
  }
  /// The JSON Schema of each argument of tables()[table] (abi::json_schema), in column order.
  std::vector<std::string> arg_json_schemas(std::size_t table) const;

  /// The eth_getLogs filter that fetches every log decode() and decode_children() could use:
  /// the configured addresses, and the chosen events' topic0s (none, meaning any topic, when an
  /// anonymous event is chosen: its logs have no topic0 to filter on). With factory-made
  /// contracts, no addresses (theirs are not known before their factory's events are written):
  /// the chosen events' topic0s of every contract.
  struct LogFilter {
    std::vector<schema::Address> addresses;
    std::vector<schema::Hash32> topic0s;
  };
  LogFilter log_filter() const;
  /// The filter's predicate: a log of a configured address that eth_getLogs with log_filter()
  /// returns, or with factories, one that may be a factory-made contract's (its topic0 is one
  /// of theirs; decode_children keeps those of the addresses made).
  bool wanted(const schema::Log& log) const;
  /// Trims a block to what chain.index = "events" keeps (schema::Block::sparse): only the
  /// wanted logs; no transactions or withdrawals.
  void keep_wanted_logs(schema::Block& block) const;

  /// Fills block.events (replacing what it held) from block.logs: every log of a configured
  /// address at or above the contract's start_block whose topic0 is one of its chosen events
  /// (or whose topic count fits an anonymous one) is decoded, or recorded with the reason it
  /// could not be.
  void decode(schema::Block& block) const;

  /// Factory-made contracts: for each, where its addresses are written (the column of the
  /// factory event's table).
  struct FactorySource {
    std::uint32_t child;   ///< index in contracts()
    std::uint32_t table;   ///< index in tables(): the factory's event
    std::uint32_t column;  ///< the address parameter's column in that table
  };
  const std::vector<FactorySource>& factory_sources() const { return factory_sources_; }
  bool has_factories() const { return !factory_sources_.empty(); }

  /// The factory step, run on blocks in order after decode() (when they are written, so that
  /// only confirmed blocks make addresses): for each block, the addresses its factory events
  /// name are instances of their contracts from that block on (the whole block: a contract's
  /// constructor logs come before its factory's event), and the logs of every instance are
  /// decoded into block.events, which is then in log order. Addresses made by factory-made
  /// factories are followed too. `known` holds the addresses made by blocks before `blocks`;
  /// the addresses made in `blocks` are returned (add them to `known` once written). Running it
  /// again on the same blocks gives the same result. With `drop_other_logs` (logs-only
  /// indexing) logs that are neither of a configured address nor of an instance are removed
  /// (wanted() let them through for their topic0).
  std::vector<FactoryChild> decode_children(std::span<schema::Block> blocks, const FactoryChildren& known,
                                            bool drop_other_logs) const;

 private:
  struct Candidate {
    std::uint32_t table;
    std::uint32_t event;  // index in the contract's events
  };
  struct Contract {
    std::unordered_map<schema::Hash32, std::vector<Candidate>, schema::FixedBytesHash> by_topic0;
    std::vector<Candidate> anonymous;
  };
  void index();
  schema::Status resolve_factories();
  // The event of contract `ci` that `log` (block.logs[li]) is, decoded or with why it is not;
  // nullopt when the log is none of its chosen events.
  std::optional<schema::DecodedEvent> decode_log(std::uint32_t ci, std::uint32_t li, const schema::Log& log) const;
  bool wanted_static(const schema::Log& log) const;

  std::vector<ContractEvents> contracts_;
  std::vector<schema::EventTable> tables_;
  std::vector<std::pair<std::uint32_t, std::uint32_t>> sources_;  // per table: (contract, event) indices
  std::vector<Contract> lookup_;  // parallel to contracts_
  std::unordered_map<schema::Address, std::vector<std::uint32_t>, schema::FixedBytesHash> by_address_;
  LogFilter filter_;
  std::vector<schema::Hash32> static_topic0s_;  // the chosen events' topic0s of contracts with addresses
  bool static_any_topic_ = false;               // one of them is anonymous
  std::vector<schema::Hash32> child_topic0s_;   // and of factory-made contracts
  bool child_any_topic_ = false;
  std::vector<FactorySource> factory_sources_;
  std::vector<bool> made_;  // parallel to contracts_: factory-made
};

}  // namespace chainidx::abi

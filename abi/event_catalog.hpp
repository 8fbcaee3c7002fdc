#pragma once
// The configured contracts' events of one chain: their tables (names, columns) and the decoding
// of a block's logs into schema::DecodedEvent. Pure: no I/O.

#include <cstdint>
#include <string>
#include <unordered_map>
#include <vector>

#include "abi/abi_type.hpp"
#include "schema/block.hpp"
#include "schema/events.hpp"
#include "schema/result.hpp"

namespace chainidx::abi {

/// One [[contracts]] entry, resolved: its ABI read and its events chosen.
struct ContractEvents {
  std::string name;                        ///< [a-z_][a-z0-9_]*
  std::vector<schema::Address> addresses;  ///< the contract's addresses
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

class EventCatalog {
 public:
  EventCatalog() = default;
  /// Fails when two tables would have one name, or a name is longer than Postgres allows (63).
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

  /// The eth_getLogs filter that fetches every log decode() could use: the configured
  /// addresses, and the chosen events' topic0s (none, meaning any topic, when an anonymous
  /// event is chosen: its logs have no topic0 to filter on).
  struct LogFilter {
    std::vector<schema::Address> addresses;
    std::vector<schema::Hash32> topic0s;
  };
  LogFilter log_filter() const;
  /// The filter's predicate: a log eth_getLogs with log_filter() returns.
  bool wanted(const schema::Log& log) const;
  /// Trims a block to what chain.index = "events" keeps (schema::Block::sparse): only the
  /// wanted logs; no transactions or withdrawals.
  void keep_wanted_logs(schema::Block& block) const;

  /// Fills block.events (replacing what it held) from block.logs: every log of a configured
  /// address at or above the contract's start_block whose topic0 is one of its chosen events
  /// (or whose topic count fits an anonymous one) is decoded, or recorded with the reason it
  /// could not be.
  void decode(schema::Block& block) const;

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

  std::vector<ContractEvents> contracts_;
  std::vector<schema::EventTable> tables_;
  std::vector<std::pair<std::uint32_t, std::uint32_t>> sources_;  // per table: (contract, event) indices
  std::vector<Contract> lookup_;  // parallel to contracts_
  std::unordered_map<schema::Address, std::vector<std::uint32_t>, schema::FixedBytesHash> by_address_;
  LogFilter filter_;
};

}  // namespace chainidx::abi

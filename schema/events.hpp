#pragma once
// Decoded contract events: the tables and topics they go to, and one decoded log. The abi
// library fills these from a contract's ABI and a block's logs; the sinks write them without
// knowing anything of the ABI.

#include <cstdint>
#include <string>
#include <vector>

#include "schema/types.hpp"

namespace chainidx::schema {

/// How one event parameter is stored: its Postgres column type and its JSON form in Kafka.
enum class ArgKind : std::uint8_t {
  kInteger,  ///< numeric(78,0); JSON number for types of at most 48 bits, else a decimal string
  kBool,     ///< boolean; JSON true / false
  kBytes,    ///< bytea; JSON 0x-hex (addresses, bytes, bytesN, the hash of an indexed dynamic value)
  kText,     ///< text; JSON string
  kJson,     ///< jsonb; the JSON of an array or a tuple, as is
};

/// One parameter of an event, as a column and as a key of the Kafka message's `args`.
struct EventColumn {
  std::string name;      ///< column name: the parameter's name in snake_case (see docs/events.md)
  std::string key;       ///< JSON key in `args`: the parameter's ABI name (`arg<i>` when unnamed)
  std::string abi_type;  ///< canonical ABI type, e.g. "uint256", "(address,bytes)[]"
  ArgKind kind = ArgKind::kBytes;
  bool json_number = false;  ///< kInteger whose every value fits a JSON number exactly
  bool indexed = false;
  bool hashed = false;  ///< an indexed dynamic value: the column holds its Keccak-256, not the value

  bool operator==(const EventColumn&) const = default;
};

/// One event of one configured contract: a table `<contract>_<event>` in the chain's schema and
/// messages in the topic `<chain>.events.<contract>`.
struct EventTable {
  std::string contract;   ///< [[contracts]] name
  std::string event;      ///< the ABI's event name
  std::string signature;  ///< e.g. "Transfer(address,address,uint256)"
  std::string table;      ///< e.g. "usdc_transfer"
  bool anonymous = false;
  std::vector<EventColumn> columns;

  bool operator==(const EventTable&) const = default;
};

/// One parameter's value, in the field its column's kind uses.
struct EventArg {
  std::string text;  ///< kInteger: decimal with an optional '-'; kText: UTF-8; kJson: JSON text
  Bytes bytes;       ///< kBytes
  bool boolean = false;

  bool operator==(const EventArg&) const = default;
};

/// A log of a configured contract that matched one of its events' topic0 (or, for anonymous
/// events, its topic count): decoded, or the reason it could not be.
struct DecodedEvent {
  std::uint32_t log = 0;    ///< position in Block::logs
  std::uint32_t table = 0;  ///< index into the chain's EventTable list (the first candidate when undecodable)
  std::vector<EventArg> args;  ///< one per column, when decoded
  std::string error;           ///< non-empty: undecodable, and why; goes to the dead-letter table and topic

  bool decoded() const { return error.empty(); }
  bool operator==(const DecodedEvent&) const = default;
};

}  // namespace chainidx::schema

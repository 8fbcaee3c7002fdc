#pragma once
// Solidity ABI types and events: parsed from a contract's JSON ABI or from a signature, with
// their canonical form, topic0 and head sizes. Pure: no I/O.

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

#include "schema/result.hpp"
#include "schema/types.hpp"

namespace chainidx::abi {

/// One ABI type. Arrays and tuples hold their element / component types.
struct Type {
  enum class Kind { kUint, kInt, kAddress, kBool, kFixedBytes, kBytes, kString, kArray, kTuple };
  Kind kind = Kind::kUint;
  unsigned bits = 256;  ///< kUint, kInt: M of uint<M> / int<M>
  unsigned size = 0;    ///< kFixedBytes: M of bytes<M>; kArray of fixed length: the length
  bool dynamic_length = false;      ///< kArray: T[] (true) or T[k]
  std::vector<Type> elements;       ///< kArray: the element type (one); kTuple: the components
  std::vector<std::string> names;   ///< kTuple: the components' names ("" when unnamed)

  /// Canonical form, as signatures use it: "uint256", "bytes32[2]", "(address,bytes)[]".
  std::string canonical() const;
  /// Encoded with an offset in its enclosing head (bytes, string, T[], and arrays / tuples of those).
  bool is_dynamic() const;
  /// Bytes this type takes in its enclosing head: 32 for a dynamic type, else its whole size.
  std::size_t head_size() const;
  /// Integers of at most 48 bits are exact in a JSON number (and below 2^53).
  bool fits_json_number() const { return (kind == Kind::kUint || kind == Kind::kInt) && bits <= 48; }
  bool operator==(const Type&) const = default;
};

/// Parses a type as a signature writes it: "uint", "int8", "address", "bytes32", "string",
/// "(uint8,bytes)[2][]", with optional parameter names inside tuples ("(uint8 a,bytes b)").
/// "function" is bytes24. Fixed-point types are refused (no compiler emits them).
schema::Result<Type> parse_type(std::string_view text);

struct EventParam {
  std::string name;  ///< "" when the ABI leaves it unnamed
  Type type;
  bool indexed = false;
  bool operator==(const EventParam&) const = default;
};

struct Event {
  std::string name;
  std::vector<EventParam> params;
  bool anonymous = false;

  /// "Transfer(address,address,uint256)".
  std::string signature() const;
  /// Keccak-256 of the signature: the log's topic0 (anonymous events have none).
  schema::Hash32 topic0() const;
  /// Topics a log of this event has: the indexed parameters, plus topic0 unless anonymous.
  std::size_t topic_count() const;
  bool operator==(const Event&) const = default;
};

/// The events of a standard Solidity JSON ABI (an array of entries, or an object with an "abi"
/// array as compilers' artifacts hold it). Other entries (functions, errors, ...) are skipped.
/// Errors name the entry and field.
schema::Result<std::vector<Event>> parse_abi_json(std::string_view json);

/// Parses "Name(type name, type indexed name, ...)" (names optional), for tests and tools.
schema::Result<Event> parse_event_signature(std::string_view text);

/// Keccak-256 of bytes (Ethereum's Keccak, not NIST SHA-3).
schema::Hash32 keccak256(std::string_view bytes);

}  // namespace chainidx::abi

#pragma once
// Decoding a log against an event of its contract's ABI. Pure; hostile input is expected: every
// offset and length is checked against the data, values must be clean (no stray high bits, bool
// 0 or 1), and a log cannot decode to more values or bytes than its data honestly holds.

#include <span>
#include <string>
#include <vector>

#include "abi/abi_type.hpp"
#include "schema/events.hpp"
#include "schema/result.hpp"
#include "schema/types.hpp"

namespace chainidx::abi {

/// A decoded value of an ABI type (the type is held beside it, not in it).
struct Value {
  std::string text;     ///< uint/int: decimal with an optional '-'; string: its UTF-8
  schema::Bytes bytes;  ///< address (20 bytes), bytes<M>, bytes; an indexed dynamic value's hash (32)
  bool boolean = false;
  std::vector<Value> items;  ///< arrays' elements, tuples' components
  bool operator==(const Value&) const = default;
};

/// The event's parameters in ABI order, decoded from a log's topics and data. An indexed
/// parameter of a dynamic type, an array or a tuple is its topic: the Keccak-256 of the value,
/// which the log does not hold (a 32-byte Value::bytes). Errors say what did not fit:
/// "topic count 3, the event has 4", "data too short for parameter 2 (value)", ...
/// `topic0`, when the caller has it, is the event's topic0 (Event::topic0() hashes the
/// signature on each call, which a decoder of millions of logs should not).
schema::Result<std::vector<Value>> decode_event(const Event& event, std::span<const schema::Hash32> topics,
                                                const schema::Bytes& data, const schema::Hash32* topic0 = nullptr);

/// The JSON of a value: integers as numbers when the type fits a JSON number exactly, else as
/// decimal strings; bytes and addresses as 0x-hex; strings escaped; arrays as arrays; tuples as
/// objects keyed by component name (by position, "0", "1", ..., where unnamed).
void append_json(std::string& out, const Type& type, const Value& value);

/// The JSON Schema (draft 2020-12) of append_json()'s output for `type`; for a hashed indexed
/// parameter (`hashed`), of its 32-byte topic in 0x-hex.
std::string json_schema(const Type& type, bool hashed = false);

/// A top-level parameter's value in the form of its column (schema::EventColumn::kind).
schema::EventArg to_event_arg(const Type& type, bool hashed, const Value& value);
/// The column kind a parameter's values take.
schema::ArgKind arg_kind(const Type& type, bool hashed);

}  // namespace chainidx::abi

#pragma once
// The list-valued transaction fields as JSON text, the same for Postgres (jsonb) and Kafka: hashes
// and addresses as 0x-hex, integers past 2^53 as decimal strings. Only hex, digits and JSON
// punctuation appear, so the text needs no escaping.

#include <string>
#include <string_view>
#include <vector>

#include "schema/block.hpp"

namespace chainidx::schema {

/// [{"address":"0x..","storage_keys":["0x..",...]},...]
std::string access_list_json(const std::vector<AccessListEntry>& list);
/// [{"chain_id":"1","address":"0x..","nonce":"5","y_parity":1,"r":"0x..","s":"0x.."},...]
std::string authorization_list_json(const std::vector<Authorization>& list);
/// ["0x..",...]
std::string hashes_json(std::span<const Hash32> hashes);
/// The same, appended to `out` in place.
void append_hashes_json(std::string& out, std::span<const Hash32> hashes);
/// [{"index":"N","validator_index":"N","address":"0x..","amount_gwei":"N"},...] (64-bit integers
/// as decimal strings, as the other 64-bit fields of the messages)
std::string withdrawals_json(const std::vector<Withdrawal>& list);

/// Appends `utf8` as a JSON string (quoted; '"', '\\' and control characters escaped). The
/// caller has checked that it is valid UTF-8.
void append_json_string(std::string& out, std::string_view utf8);

}  // namespace chainidx::schema

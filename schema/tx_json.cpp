#include "schema/tx_json.hpp"

namespace chainidx::schema {

namespace {
std::string quoted(const std::string& s) { return "\"" + s + "\""; }
}  // namespace

void append_hashes_json(std::string& out, std::span<const Hash32> hashes) {
  out.push_back('[');
  for (std::size_t i = 0; i < hashes.size(); ++i) {
    out.append(i ? ",\"0x" : "\"0x");
    append_hex_digits(out, hashes[i].data(), hashes[i].size());
    out.push_back('"');
  }
  out.push_back(']');
}

std::string hashes_json(std::span<const Hash32> hashes) {
  std::string out;
  append_hashes_json(out, hashes);
  return out;
}

std::string access_list_json(const std::vector<AccessListEntry>& list) {
  std::string out = "[";
  for (std::size_t i = 0; i < list.size(); ++i)
    out += std::string(i ? "," : "") + "{\"address\":" + quoted(to_hex(list[i].address)) +
           ",\"storage_keys\":" + hashes_json(list[i].storage_keys) + "}";
  return out + "]";
}

std::string authorization_list_json(const std::vector<Authorization>& list) {
  std::string out = "[";
  for (std::size_t i = 0; i < list.size(); ++i) {
    const Authorization& a = list[i];
    out += std::string(i ? "," : "") + "{\"chain_id\":" + quoted(a.chain_id.to_decimal()) + ",\"address\":" + quoted(to_hex(a.address)) +
           ",\"nonce\":" + quoted(std::to_string(a.nonce)) + ",\"y_parity\":" + std::to_string(a.y_parity) +
           ",\"r\":" + quoted(a.r.to_decimal()) + ",\"s\":" + quoted(a.s.to_decimal()) + "}";
  }
  return out + "]";
}

std::string withdrawals_json(const std::vector<Withdrawal>& list) {
  std::string out = "[";
  for (std::size_t i = 0; i < list.size(); ++i) {
    const Withdrawal& w = list[i];
    out += std::string(i ? "," : "") + "{\"index\":" + quoted(std::to_string(w.index)) +
           ",\"validator_index\":" + quoted(std::to_string(w.validator_index)) + ",\"address\":" + quoted(to_hex(w.address)) +
           ",\"amount_gwei\":" + quoted(std::to_string(w.amount_gwei)) + "}";
  }
  return out + "]";
}

}  // namespace chainidx::schema

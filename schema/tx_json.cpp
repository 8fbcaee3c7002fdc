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

void append_json_string(std::string& out, std::string_view utf8) {
  static constexpr char kHex[] = "0123456789abcdef";
  out.push_back('"');
  for (char c : utf8) {
    const auto u = static_cast<unsigned char>(c);
    if (c == '"' || c == '\\') {
      out.push_back('\\');
      out.push_back(c);
    } else if (c == '\n') {
      out.append("\\n");
    } else if (c == '\t') {
      out.append("\\t");
    } else if (c == '\r') {
      out.append("\\r");
    } else if (u < 0x20) {
      out.append("\\u00");
      out.push_back(kHex[u >> 4]);
      out.push_back(kHex[u & 15]);
    } else {
      out.push_back(c);
    }
  }
  out.push_back('"');
}

}  // namespace chainidx::schema

#include "schema/types.hpp"

#include <algorithm>
#include <stdexcept>

namespace chainidx::schema {
namespace {

constexpr char kHexDigits[] = "0123456789abcdef";

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

bool strip_prefix(std::string_view& hex) {
  if (hex.size() < 2 || hex[0] != '0' || (hex[1] != 'x' && hex[1] != 'X')) return false;
  hex.remove_prefix(2);
  return true;
}

bool decode_even(std::string_view digits, std::uint8_t* out) {
  for (std::size_t i = 0; i < digits.size() / 2; ++i) {
    int hi = hex_value(digits[2 * i]);
    int lo = hex_value(digits[2 * i + 1]);
    if (hi < 0 || lo < 0) return false;
    out[i] = static_cast<std::uint8_t>((hi << 4) | lo);
  }
  return true;
}

}  // namespace

std::string to_hex(const std::uint8_t* data, std::size_t size) {
  std::string s(2 + 2 * size, '0');
  s[1] = 'x';
  for (std::size_t i = 0; i < size; ++i) {
    s[2 + 2 * i] = kHexDigits[data[i] >> 4];
    s[3 + 2 * i] = kHexDigits[data[i] & 0xf];
  }
  return s;
}

std::string to_quantity_hex(std::uint64_t v) {
  if (v == 0) return "0x0";
  std::string digits;
  while (v != 0) {
    digits.push_back(kHexDigits[v & 0xf]);
    v >>= 4;
  }
  std::reverse(digits.begin(), digits.end());
  return "0x" + digits;
}

bool parse_data(std::string_view hex, Bytes& out) {
  if (!strip_prefix(hex) || hex.size() % 2 != 0) return false;
  out.resize(hex.size() / 2);
  return decode_even(hex, out.data());
}

template <std::size_t N>
bool parse_fixed(std::string_view hex, FixedBytes<N>& out) {
  if (!strip_prefix(hex) || hex.size() != 2 * N) return false;
  return decode_even(hex, out.data());
}
template bool parse_fixed<32>(std::string_view, FixedBytes<32>&);
template bool parse_fixed<20>(std::string_view, FixedBytes<20>&);
template bool parse_fixed<256>(std::string_view, FixedBytes<256>&);
template bool parse_fixed<8>(std::string_view, FixedBytes<8>&);

bool parse_quantity(std::string_view hex, std::uint64_t& out) {
  if (!strip_prefix(hex) || hex.empty() || hex.size() > 16) return false;
  std::uint64_t v = 0;
  for (char c : hex) {
    int d = hex_value(c);
    if (d < 0) return false;
    v = (v << 4) | static_cast<std::uint64_t>(d);
  }
  out = v;
  return true;
}

bool parse_quantity(std::string_view hex, U256& out) {
  if (!strip_prefix(hex) || hex.empty() || hex.size() > 64) return false;
  U256 v;
  std::size_t nibble = 0;
  for (auto it = hex.rbegin(); it != hex.rend(); ++it, ++nibble) {
    int d = hex_value(*it);
    if (d < 0) return false;
    v.limbs[nibble / 16] |= static_cast<std::uint64_t>(d) << (4 * (nibble % 16));
  }
  out = v;
  return true;
}

std::string U256::to_decimal() const {
  // Schoolbook long division by 10^9 over 32-bit words, nine digits per pass.
  std::array<std::uint32_t, 8> words{};
  for (int i = 0; i < 4; ++i) {
    words[2 * i] = static_cast<std::uint32_t>(limbs[i]);
    words[2 * i + 1] = static_cast<std::uint32_t>(limbs[i] >> 32);
  }
  std::string out;
  auto is_zero = [&] { return std::all_of(words.begin(), words.end(), [](auto w) { return w == 0; }); };
  if (is_zero()) return "0";
  while (!is_zero()) {
    std::uint64_t rem = 0;
    for (int i = 7; i >= 0; --i) {
      std::uint64_t cur = (rem << 32) | words[i];
      words[i] = static_cast<std::uint32_t>(cur / 1000000000u);
      rem = cur % 1000000000u;
    }
    for (int d = 0; d < 9; ++d) {
      out.push_back(static_cast<char>('0' + rem % 10));
      rem /= 10;
    }
  }
  while (out.size() > 1 && out.back() == '0') out.pop_back();
  std::reverse(out.begin(), out.end());
  return out;
}

Hash32 hash_from_hex(std::string_view hex) {
  Hash32 h;
  if (!parse_fixed(hex, h)) throw std::invalid_argument("not a 32-byte hex hash: " + std::string(hex));
  return h;
}

Address address_from_hex(std::string_view hex) {
  Address a;
  if (!parse_fixed(hex, a)) throw std::invalid_argument("not a 20-byte hex address: " + std::string(hex));
  return a;
}

}  // namespace chainidx::schema

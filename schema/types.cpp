#include "schema/types.hpp"

#include <algorithm>
#include <array>
#include <stdexcept>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

namespace chainidx::schema {
namespace {

constexpr char kHexDigits[] = "0123456789abcdef";

bool strip_prefix(std::string_view& hex) {
  if (hex.size() < 2 || hex[0] != '0' || (hex[1] != 'x' && hex[1] != 'X')) return false;
  hex.remove_prefix(2);
  return true;
}

// Hex digit values, 0x80 for anything that is not a hex digit (so that OR-ing every value of a
// run and testing the high bit once tells whether the whole run was valid).
constexpr std::array<std::uint8_t, 256> kHexValue = [] {
  std::array<std::uint8_t, 256> t{};
  for (auto& v : t) v = 0x80;
  for (int c = '0'; c <= '9'; ++c) t[c] = static_cast<std::uint8_t>(c - '0');
  for (int c = 'a'; c <= 'f'; ++c) t[c] = static_cast<std::uint8_t>(c - 'a' + 10);
  for (int c = 'A'; c <= 'F'; ++c) t[c] = static_cast<std::uint8_t>(c - 'A' + 10);
  return t;
}();

#if defined(__SSE2__)
// 32 hex digits to 16 bytes, with SSE2 (every x86-64 CPU has it). False when any is not a digit.
bool decode_32_digits(const char* in, std::uint8_t* out) {
  auto values = [](__m128i c, bool& ok) {
    const __m128i lower = _mm_or_si128(c, _mm_set1_epi8(0x20));
    // Signed compares: bytes >= 0x80 are negative, below '0', and so rejected.
    const __m128i digit = _mm_and_si128(_mm_cmpgt_epi8(c, _mm_set1_epi8('0' - 1)), _mm_cmplt_epi8(c, _mm_set1_epi8('9' + 1)));
    const __m128i alpha = _mm_and_si128(_mm_cmpgt_epi8(lower, _mm_set1_epi8('a' - 1)), _mm_cmplt_epi8(lower, _mm_set1_epi8('f' + 1)));
    ok = ok && _mm_movemask_epi8(_mm_or_si128(digit, alpha)) == 0xffff;
    const __m128i dv = _mm_and_si128(digit, _mm_sub_epi8(c, _mm_set1_epi8('0')));
    const __m128i av = _mm_and_si128(alpha, _mm_sub_epi8(lower, _mm_set1_epi8('a' - 10)));
    return _mm_or_si128(dv, av);
  };
  // In each 16-bit lane the first digit (the high nibble) is the low byte.
  auto pairs = [](__m128i v) {
    const __m128i hi = _mm_and_si128(v, _mm_set1_epi16(0x00ff));
    const __m128i lo = _mm_srli_epi16(v, 8);
    return _mm_or_si128(_mm_slli_epi16(hi, 4), lo);
  };
  bool ok = true;
  const __m128i a = values(_mm_loadu_si128(reinterpret_cast<const __m128i*>(in)), ok);
  const __m128i b = values(_mm_loadu_si128(reinterpret_cast<const __m128i*>(in + 16)), ok);
  _mm_storeu_si128(reinterpret_cast<__m128i*>(out), _mm_packus_epi16(pairs(a), pairs(b)));
  return ok;
}
#endif

bool decode_even(std::string_view digits, std::uint8_t* out) {
  const char* in = digits.data();
  std::size_t n = digits.size() / 2;  // bytes
#if defined(__SSE2__)
  for (; n >= 16; n -= 16, in += 32, out += 16)
    if (!decode_32_digits(in, out)) return false;
#endif
  std::uint8_t bad = 0;
  for (std::size_t i = 0; i < n; ++i) {
    const std::uint8_t hi = kHexValue[static_cast<unsigned char>(in[2 * i])];
    const std::uint8_t lo = kHexValue[static_cast<unsigned char>(in[2 * i + 1])];
    bad |= hi | lo;
    out[i] = static_cast<std::uint8_t>((hi << 4) | (lo & 0x0f));
  }
  return (bad & 0x80) == 0;
}

}  // namespace

void append_hex_digits(std::string& out, const std::uint8_t* data, std::size_t size) {
  const std::size_t at = out.size();
  out.resize(at + 2 * size);
  char* p = out.data() + at;
  std::size_t i = 0;
#if defined(__SSE2__)
  // 16 bytes to 32 digits: each nibble n becomes '0' + n, plus 'a' - '0' - 10 where n > 9.
  const __m128i low4 = _mm_set1_epi8(0x0f), nine = _mm_set1_epi8(9), zero = _mm_set1_epi8('0'), gap = _mm_set1_epi8('a' - '0' - 10);
  auto digits = [&](__m128i n) { return _mm_add_epi8(_mm_add_epi8(n, zero), _mm_and_si128(_mm_cmpgt_epi8(n, nine), gap)); };
  for (; i + 16 <= size; i += 16) {
    const __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(data + i));
    const __m128i hi = digits(_mm_and_si128(_mm_srli_epi16(v, 4), low4));
    const __m128i lo = digits(_mm_and_si128(v, low4));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(p + 2 * i), _mm_unpacklo_epi8(hi, lo));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(p + 2 * i + 16), _mm_unpackhi_epi8(hi, lo));
  }
#endif
  for (; i < size; ++i) {
    p[2 * i] = kHexDigits[data[i] >> 4];
    p[2 * i + 1] = kHexDigits[data[i] & 0xf];
  }
}

std::string to_hex(const std::uint8_t* data, std::size_t size) {
  std::string s;
  s.reserve(2 + 2 * size);
  s = "0x";
  append_hex_digits(s, data, size);
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
    const std::uint8_t d = kHexValue[static_cast<unsigned char>(c)];
    if (d & 0x80) return false;
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
    const std::uint8_t d = kHexValue[static_cast<unsigned char>(*it)];
    if (d & 0x80) return false;
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

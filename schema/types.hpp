#pragma once
// The primitive Ethereum value types every other part of chainidx speaks in.

#include <array>
#include <compare>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace chainidx::schema {

/// A fixed-size byte string: hashes, addresses, blooms. Value type, ordered, hashable.
template <std::size_t N>
struct FixedBytes {
  std::array<std::uint8_t, N> bytes{};

  static constexpr std::size_t size() { return N; }
  const std::uint8_t* data() const { return bytes.data(); }
  std::uint8_t* data() { return bytes.data(); }
  bool is_zero() const {
    for (auto b : bytes)
      if (b != 0) return false;
    return true;
  }
  auto operator<=>(const FixedBytes&) const = default;
};

using Hash32 = FixedBytes<32>;
using Address = FixedBytes<20>;
using Bloom = FixedBytes<256>;
using Bytes = std::vector<std::uint8_t>;

/// Unsigned 256-bit integer, as the EVM's quantities (value, prices, difficulty) need.
/// Limbs are little-endian: limbs[0] holds the least significant 64 bits.
struct U256 {
  std::array<std::uint64_t, 4> limbs{};

  static U256 from_u64(std::uint64_t v) { return U256{{v, 0, 0, 0}}; }
  bool fits_u64() const { return limbs[1] == 0 && limbs[2] == 0 && limbs[3] == 0; }
  /// Decimal digits, no leading zeros ("0" for zero). Used for Postgres numeric and Kafka.
  std::string to_decimal() const;
  auto operator<=>(const U256&) const = default;
};

/// Lower-case 0x-prefixed hex of a byte range.
std::string to_hex(const std::uint8_t* data, std::size_t size);
/// Appends the lower-case hex digits of a byte range (no prefix) to `out`, in place.
void append_hex_digits(std::string& out, const std::uint8_t* data, std::size_t size);
template <std::size_t N>
std::string to_hex(const FixedBytes<N>& v) { return to_hex(v.data(), N); }
inline std::string to_hex(const Bytes& v) { return to_hex(v.data(), v.size()); }

/// Hex of a quantity, minimal digits ("0x0" for zero), as JSON-RPC writes numbers.
std::string to_quantity_hex(std::uint64_t v);

/// Parsers for JSON-RPC hex strings. Each returns false (and leaves `out` unspecified)
/// on a missing 0x prefix, a non-hex digit, a wrong length or an overflow.
bool parse_data(std::string_view hex, Bytes& out);
template <std::size_t N>
bool parse_fixed(std::string_view hex, FixedBytes<N>& out);
bool parse_quantity(std::string_view hex, std::uint64_t& out);
bool parse_quantity(std::string_view hex, U256& out);

/// Hash32 / Address from a 0x-hex literal; throws std::invalid_argument when malformed.
/// For tests and constants, not for untrusted input.
Hash32 hash_from_hex(std::string_view hex);
Address address_from_hex(std::string_view hex);

struct FixedBytesHash {
  template <std::size_t N>
  std::size_t operator()(const FixedBytes<N>& v) const noexcept {
    // Hashes are already uniformly distributed; the first 8 bytes are enough.
    std::size_t h = 0;
    for (std::size_t i = 0; i < sizeof(h) && i < N; ++i) h = (h << 8) | v.bytes[i];
    return h;
  }
};

}  // namespace chainidx::schema

#pragma once
// Recursive-length-prefix encoding (Ethereum's yellow paper, appendix B): byte strings,
// big-endian integers without leading zeros, and nested lists. Enough to rebuild what a node
// hashes: block headers and signed transactions.

#include <cstddef>
#include <cstdint>
#include <vector>

#include "schema/types.hpp"

namespace chainidx::ingest {

class Rlp {
 public:
  void bytes(const std::uint8_t* data, std::size_t size) {
    if (size == 1 && data[0] < 0x80) {
      out_.push_back(data[0]);
      return;
    }
    prefix(0x80, size);
    out_.insert(out_.end(), data, data + size);
  }
  template <std::size_t N>
  void bytes(const schema::FixedBytes<N>& v) { bytes(v.data(), N); }
  void bytes(const schema::Bytes& v) { bytes(v.data(), v.size()); }
  /// Integers are big-endian without leading zeros; zero is the empty string.
  void uint(std::uint64_t v) { uint(schema::U256::from_u64(v)); }
  void uint(const schema::U256& v) {
    std::uint8_t be[32];
    for (int i = 0; i < 32; ++i) be[i] = static_cast<std::uint8_t>(v.limbs[3 - i / 8] >> (8 * (7 - i % 8)));
    std::size_t skip = 0;
    while (skip < 32 && be[skip] == 0) ++skip;
    bytes(be + skip, 32 - skip);
  }
  void empty() { out_.push_back(0x80); }
  /// Appends `inner`'s items as one nested list.
  void list(const Rlp& inner) {
    prefix(0xc0, inner.out_.size());
    out_.insert(out_.end(), inner.out_.begin(), inner.out_.end());
  }
  /// The items written so far, wrapped as one list.
  std::vector<std::uint8_t> as_list() const {
    Rlp l;
    l.list(*this);
    return l.out_;
  }

 private:
  void prefix(std::uint8_t base, std::size_t size) {
    if (size <= 55) {
      out_.push_back(static_cast<std::uint8_t>(base + size));
      return;
    }
    std::uint8_t len[8];
    int n = 0;
    for (std::size_t s = size; s != 0; s >>= 8) len[n++] = static_cast<std::uint8_t>(s);
    out_.push_back(static_cast<std::uint8_t>(base + 55 + n));
    while (n > 0) out_.push_back(len[--n]);
  }
  std::vector<std::uint8_t> out_;
};

}  // namespace chainidx::ingest

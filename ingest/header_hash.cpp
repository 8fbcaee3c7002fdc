#include "ingest/header_hash.hpp"

#include <cryptopp/keccak.h>

namespace chainidx::ingest {
namespace {

// Recursive-length-prefix encoding, just the parts a header needs: byte strings and one list.
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
  /// The items written so far, wrapped as one list.
  std::vector<std::uint8_t> as_list() const {
    Rlp l;
    l.prefix(0xc0, out_.size());
    l.out_.insert(l.out_.end(), out_.begin(), out_.end());
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

}  // namespace

schema::Hash32 header_hash(const schema::Block& b) {
  Rlp r;
  r.bytes(b.parent_hash);
  r.bytes(b.sha3_uncles);
  r.bytes(b.miner);
  r.bytes(b.state_root);
  r.bytes(b.transactions_root);
  r.bytes(b.receipts_root);
  r.bytes(b.logs_bloom);
  r.uint(b.difficulty);
  r.uint(b.number);
  r.uint(b.gas_limit);
  r.uint(b.gas_used);
  r.uint(b.timestamp);
  r.bytes(b.extra_data);
  r.bytes(b.mix_hash);
  r.bytes(b.nonce);
  // Each fork appends fields; a later one is only present when the earlier ones are.
  if (b.base_fee_per_gas) r.uint(*b.base_fee_per_gas);
  if (b.withdrawals_root) r.bytes(*b.withdrawals_root);
  if (b.blob_gas_used) r.uint(*b.blob_gas_used);
  if (b.excess_blob_gas) r.uint(*b.excess_blob_gas);
  if (b.parent_beacon_block_root) r.bytes(*b.parent_beacon_block_root);
  if (b.requests_hash) r.bytes(*b.requests_hash);
  std::vector<std::uint8_t> encoded = r.as_list();
  schema::Hash32 h;
  CryptoPP::Keccak_256().CalculateDigest(h.data(), encoded.data(), encoded.size());
  return h;
}

}  // namespace chainidx::ingest

#include "blob_transaction.hpp"

#include <crypto++/eccrypto.h>
#include <crypto++/ecp.h>
#include <crypto++/integer.h>
#include <crypto++/keccak.h>
#include <crypto++/oids.h>
#include <crypto++/osrng.h>
#include <crypto++/sha.h>

#include <stdexcept>
#include <vector>

#include "ingest/rlp.hpp"

namespace chainidx::testing {
namespace {

using ingest::Rlp;

schema::U256 u256_of(const CryptoPP::Integer& i) {
  schema::U256 v;
  for (int limb = 0; limb < 4; ++limb) {
    std::uint64_t x = 0;
    for (int b = 7; b >= 0; --b) x = (x << 8) | i.GetByte(static_cast<std::size_t>(limb * 8 + b));
    v.limbs[limb] = x;
  }
  return v;
}

struct Signature {
  CryptoPP::Integer r, s;
  bool y_odd = false;
};

// Plain secp256k1 ECDSA over a digest already taken (Keccak-256), with low s as Ethereum requires
// and the parity of R's y, from which a node recovers the sender.
Signature sign(const std::uint8_t (&digest)[32], const schema::Bytes& key) {
  const CryptoPP::DL_GroupParameters_EC<CryptoPP::ECP> curve(CryptoPP::ASN1::secp256k1());
  const CryptoPP::Integer& n = curve.GetSubgroupOrder();
  const CryptoPP::Integer d(key.data(), key.size()), z(digest, 32);
  CryptoPP::AutoSeededRandomPool rng;
  for (;;) {
    const CryptoPP::Integer k(rng, CryptoPP::Integer::One(), n - 1);
    const CryptoPP::ECP::Point R = curve.ExponentiateBase(k);
    Signature sig;
    sig.r = R.x % n;
    if (sig.r.IsZero() || R.x >= n) continue;
    sig.s = (k.InverseMod(n) * (z + sig.r * d)) % n;
    if (sig.s.IsZero()) continue;
    sig.y_odd = R.y.IsOdd();
    if (sig.s > (n >> 1)) {
      sig.s = n - sig.s;
      sig.y_odd = !sig.y_odd;
    }
    return sig;
  }
}

}  // namespace

std::string raw_blob_transaction(const std::string& private_key_hex, std::uint64_t chain_id, std::uint64_t nonce, const std::string& to,
                                 std::uint64_t value, bool cell_proofs) {
  schema::Bytes key;
  schema::Address recipient;
  if (!schema::parse_data(private_key_hex, key) || key.size() != 32 || !schema::parse_fixed(to, recipient))
    throw std::invalid_argument("raw_blob_transaction: bad key or address");
  // The commitment to the zero polynomial, and the proof of it, is the point at infinity.
  std::vector<std::uint8_t> infinity(48, 0);
  infinity[0] = 0xc0;
  schema::Hash32 versioned;
  CryptoPP::SHA256().CalculateDigest(versioned.data(), infinity.data(), infinity.size());
  versioned.data()[0] = 0x01;  // VERSIONED_HASH_VERSION_KZG
  auto fields = [&](Rlp& r) {
    r.uint(chain_id);
    r.uint(nonce);
    r.uint(1);           // max priority fee per gas
    r.uint(2000000000);  // max fee per gas
    r.uint(100000);      // gas
    r.bytes(recipient);
    r.uint(value);
    r.empty();  // input
    r.list(Rlp{});  // access list
    r.uint(1000000000);  // max fee per blob gas
    Rlp hashes;
    hashes.bytes(versioned);
    r.list(hashes);
  };
  Rlp unsigned_fields;
  fields(unsigned_fields);
  std::vector<std::uint8_t> payload = unsigned_fields.as_list();
  payload.insert(payload.begin(), 0x03);
  std::uint8_t digest[32];
  CryptoPP::Keccak_256().CalculateDigest(digest, payload.data(), payload.size());
  const Signature sig = sign(digest, key);
  Rlp body;
  fields(body);
  body.uint(sig.y_odd ? 1 : 0);
  body.uint(u256_of(sig.r));
  body.uint(u256_of(sig.s));
  // The network form: the signed transaction, then its blobs, commitments and proofs.
  Rlp wrapped;
  wrapped.list(body);
  if (cell_proofs) wrapped.uint(1);  // wrapper version 1 (EIP-7594)
  const std::vector<std::uint8_t> zeros(131072, 0);
  Rlp blobs, commitments, proofs;
  blobs.bytes(zeros.data(), zeros.size());
  commitments.bytes(infinity.data(), infinity.size());
  for (int i = 0; i < (cell_proofs ? 128 : 1); ++i) proofs.bytes(infinity.data(), infinity.size());
  wrapped.list(blobs);
  wrapped.list(commitments);
  wrapped.list(proofs);
  std::vector<std::uint8_t> raw = wrapped.as_list();
  raw.insert(raw.begin(), 0x03);
  std::string out = "\"0x";
  schema::append_hex_digits(out, raw.data(), raw.size());
  return out + "\"";
}

}  // namespace chainidx::testing

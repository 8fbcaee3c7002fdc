#include "ingest/header_hash.hpp"

#include <cryptopp/keccak.h>

#include "ingest/rlp.hpp"

namespace chainidx::ingest {
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

namespace {

schema::Hash32 keccak(const std::vector<std::uint8_t>& data) {
  schema::Hash32 h;
  CryptoPP::Keccak_256().CalculateDigest(h.data(), data.data(), data.size());
  return h;
}

void access_list(Rlp& out, const std::optional<std::vector<schema::AccessListEntry>>& list) {
  Rlp entries;
  if (list)
    for (const auto& e : *list) {
      Rlp entry, keys;
      entry.bytes(e.address);
      for (const auto& k : e.storage_keys) keys.bytes(k);
      entry.list(keys);
      entries.list(entry);
    }
  out.list(entries);
}

}  // namespace

std::optional<schema::Hash32> transaction_hash(const schema::Transaction& t) {
  if (!t.r || !t.s) return std::nullopt;
  auto to = [&](Rlp& r) {
    if (t.to_address) r.bytes(*t.to_address);
    else r.empty();
  };
  Rlp r;
  if (t.type == 0) {
    if (!t.v || !t.gas_price) return std::nullopt;
    r.uint(t.nonce);
    r.uint(*t.gas_price);
    r.uint(t.gas);
    to(r);
    r.uint(t.value);
    r.bytes(t.input);
    r.uint(*t.v);
    r.uint(*t.r);
    r.uint(*t.s);
    return keccak(r.as_list());
  }
  if (t.type > 4 || !t.chain_id) return std::nullopt;
  // y_parity, or v where only v is given (it is 0 or 1 for typed transactions).
  std::uint64_t parity = t.y_parity ? *t.y_parity : (t.v ? t.v->limbs[0] : 0);
  r.uint(*t.chain_id);
  r.uint(t.nonce);
  if (t.type == 1) {
    if (!t.gas_price) return std::nullopt;
    r.uint(*t.gas_price);
  } else {
    if (!t.max_priority_fee_per_gas || !t.max_fee_per_gas) return std::nullopt;
    r.uint(*t.max_priority_fee_per_gas);
    r.uint(*t.max_fee_per_gas);
  }
  r.uint(t.gas);
  to(r);
  r.uint(t.value);
  r.bytes(t.input);
  access_list(r, t.access_list);
  if (t.type == 3) {
    if (!t.max_fee_per_blob_gas) return std::nullopt;
    r.uint(*t.max_fee_per_blob_gas);
    Rlp hashes;
    for (const auto& h : t.blob_versioned_hashes) hashes.bytes(h);
    r.list(hashes);
  }
  if (t.type == 4) {
    Rlp auths;
    if (t.authorization_list)
      for (const auto& a : *t.authorization_list) {
        Rlp item;
        item.uint(a.chain_id);
        item.bytes(a.address);
        item.uint(a.nonce);
        item.uint(a.y_parity);
        item.uint(a.r);
        item.uint(a.s);
        auths.list(item);
      }
    r.list(auths);
  }
  r.uint(parity);
  r.uint(*t.r);
  r.uint(*t.s);
  std::vector<std::uint8_t> payload = r.as_list();
  payload.insert(payload.begin(), t.type);
  return keccak(payload);
}

}  // namespace chainidx::ingest

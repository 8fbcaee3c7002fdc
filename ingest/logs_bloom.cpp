#include "ingest/logs_bloom.hpp"

#include <cryptopp/keccak.h>

#include <array>
#include <unordered_map>

namespace chainidx::ingest {
namespace {

// The three bloom bits of one value (an address or a topic): from its Keccak-256.
using Bits = std::array<std::uint16_t, 3>;

Bits bloom_bits(const std::uint8_t* data, std::size_t size) {
  std::uint8_t digest[32];
  CryptoPP::Keccak_256 keccak;
  keccak.CalculateDigest(digest, data, size);
  Bits bits;
  for (int i = 0; i < 3; ++i) bits[i] = static_cast<std::uint16_t>(((static_cast<unsigned>(digest[2 * i]) << 8) | digest[2 * i + 1]) & 2047u);
  return bits;
}

void set(schema::Bloom& bloom, const Bits& bits) {
  for (std::uint16_t bit : bits) bloom.bytes[255 - bit / 8] |= static_cast<std::uint8_t>(1u << (bit % 8));
}

}  // namespace

schema::Bloom logs_bloom(std::span<const schema::Log> logs) {
  // A block's logs repeat their values (an event's topic0, a token's address, the same senders):
  // each distinct value is hashed once.
  std::unordered_map<schema::Address, Bits, schema::FixedBytesHash> addresses;
  std::unordered_map<schema::Hash32, Bits, schema::FixedBytesHash> topics;
  schema::Bloom bloom;
  for (const auto& log : logs) {
    auto [a, fresh] = addresses.try_emplace(log.address);
    if (fresh) a->second = bloom_bits(log.address.data(), log.address.size());
    set(bloom, a->second);
    for (const auto& topic : log.topics) {
      auto [t, new_topic] = topics.try_emplace(topic);
      if (new_topic) t->second = bloom_bits(topic.data(), topic.size());
      set(bloom, t->second);
    }
  }
  return bloom;
}

bool bloom_holds(const schema::Bloom& bloom, const schema::Log& log) {
  const schema::Bloom own = logs_bloom(std::span(&log, 1));
  for (std::size_t i = 0; i < own.bytes.size(); ++i)
    if ((own.bytes[i] & bloom.bytes[i]) != own.bytes[i]) return false;
  return true;
}

}  // namespace chainidx::ingest

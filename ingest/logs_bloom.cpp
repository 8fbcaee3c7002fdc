#include "ingest/logs_bloom.hpp"

#include <cryptopp/keccak.h>

namespace chainidx::ingest {
namespace {

void add_to_bloom(schema::Bloom& bloom, const std::uint8_t* data, std::size_t size) {
  std::uint8_t digest[32];
  CryptoPP::Keccak_256 keccak;
  keccak.CalculateDigest(digest, data, size);
  for (int i = 0; i < 6; i += 2) {
    unsigned bit = ((static_cast<unsigned>(digest[i]) << 8) | digest[i + 1]) & 2047u;
    bloom.bytes[255 - bit / 8] |= static_cast<std::uint8_t>(1u << (bit % 8));
  }
}

}  // namespace

schema::Bloom logs_bloom(std::span<const schema::Log> logs) {
  schema::Bloom bloom;
  for (const auto& log : logs) {
    add_to_bloom(bloom, log.address.data(), log.address.size());
    for (const auto& topic : log.topics) add_to_bloom(bloom, topic.data(), topic.size());
  }
  return bloom;
}

}  // namespace chainidx::ingest

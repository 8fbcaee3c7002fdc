// Decoding throughput on the real mainnet block 21925176 (202 receipts, 463 logs).
// Run: build/bench/decode_bench --benchmark_counters_tabular=true

#include <benchmark/benchmark.h>
#include <simdjson.h>

#include <fstream>
#include <sstream>
#include <stdexcept>

#include "ingest/attach_receipts.hpp"
#include "ingest/decode.hpp"
#include "ingest/header_hash.hpp"
#include "ingest/logs_bloom.hpp"

namespace {

using namespace chainidx;

std::string fixture(const std::string& name) {
  std::ifstream in(std::string(CHAINIDX_FIXTURES_DIR) + "/mainnet-21925176/" + name);
  if (!in) throw std::runtime_error("fixture not found: " + name);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// The text as an RpcReply holds a result: with the parser's padding to spare, read in place.
std::string padded(std::string text) {
  text.reserve(text.size() + ingest::kJsonPadding);
  return text;
}

void BM_DecodeReceipts(benchmark::State& state) {
  const std::string json = padded(fixture("receipts.json"));
  std::size_t logs = 0;
  for (auto _ : state) {
    auto r = ingest::decode_receipts(json);
    if (!r.ok() || !r->has_value() || (*r)->size() != 202) {
      state.SkipWithError("decode failed");
      return;
    }
    for (auto& receipt : **r) logs += receipt.logs.size();
    benchmark::DoNotOptimize(r);
  }
  if (logs != 463 * static_cast<std::size_t>(state.iterations())) state.SkipWithError("wrong log count");
  state.SetBytesProcessed(static_cast<std::int64_t>(json.size() * state.iterations()));
  state.counters["logs/s"] = benchmark::Counter(static_cast<double>(logs), benchmark::Counter::kIsRate);
  state.SetLabel(std::string("simdjson kernel: ") + simdjson::builtin_implementation()->name());
}
BENCHMARK(BM_DecodeReceipts)->Unit(benchmark::kMicrosecond);

void BM_DecodeBlockHeader(benchmark::State& state) {
  const std::string json = padded(fixture("block.json"));
  for (auto _ : state) {
    auto b = ingest::decode_block(json);
    if (!b.ok() || !b->has_value()) {
      state.SkipWithError("decode failed");
      return;
    }
    benchmark::DoNotOptimize(b);
  }
  state.SetBytesProcessed(static_cast<std::int64_t>(json.size() * state.iterations()));
}
BENCHMARK(BM_DecodeBlockHeader)->Unit(benchmark::kMicrosecond);

// Validation of a decoded block: counts, hashes, log numbering and the bloom (463 logs,
// about 1,500 Keccak-256 hashes).
void BM_AttachReceiptsWithBloomCheck(benchmark::State& state) {
  auto block = **ingest::decode_block(fixture("block.json"));
  auto receipts = **ingest::decode_receipts(fixture("receipts.json"));
  for (auto _ : state) {
    state.PauseTiming();
    schema::Block b = block;
    auto r = receipts;
    state.ResumeTiming();
    auto status = ingest::attach_receipts(b, std::move(r));
    if (!status.ok()) {
      state.SkipWithError(status.error().message.c_str());
      return;
    }
    benchmark::DoNotOptimize(b);
  }
  state.counters["logs/s"] = benchmark::Counter(463.0 * static_cast<double>(state.iterations()), benchmark::Counter::kIsRate);
}
BENCHMARK(BM_AttachReceiptsWithBloomCheck)->Unit(benchmark::kMicrosecond);

// Keccak of the RLP-encoded header: the check that the header fields are the hashed ones.
void BM_HeaderHash(benchmark::State& state) {
  auto block = **ingest::decode_block(fixture("block.json"));
  for (auto _ : state) {
    auto h = ingest::header_hash(block);
    if (h != block.hash) {
      state.SkipWithError("header hash mismatch");
      return;
    }
    benchmark::DoNotOptimize(h);
  }
}
BENCHMARK(BM_HeaderHash)->Unit(benchmark::kMicrosecond);

}  // namespace

BENCHMARK_MAIN();

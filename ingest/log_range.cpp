#include "ingest/log_range.hpp"

#include <algorithm>
#include <regex>
#include <string>
#include <vector>

namespace chainidx::ingest {
namespace {

// A decimal number as providers write them: "10000", "10,000" or "10.000".
std::optional<std::uint64_t> number_of(const std::string& text) {
  std::string digits;
  for (char c : text)
    if (c >= '0' && c <= '9') digits.push_back(c);
  if (digits.empty() || digits.size() > 18) return std::nullopt;
  return std::stoull(digits);
}

std::optional<std::uint64_t> hex_of(const std::string& text) {
  if (text.empty() || text.size() > 15) return std::nullopt;
  return std::stoull(text, nullptr, 16);
}


struct Patterns {
  std::regex suggested_hex{R"(range[^\[]*\[\s*0x([0-9a-f]+)\s*,\s*0x([0-9a-f]+)\s*\])", std::regex::icase};
  std::regex suggested_decimal{R"(retry with the range (\d+)\s*-\s*(\d+))", std::regex::icase};
  // Each names the provider's limit in blocks in its first group.
  std::vector<std::regex> limits{
      std::regex(R"(up to an? (\d[\d,.]*) block range)", std::regex::icase),                    // Alchemy
      std::regex(R"(limited to an? (\d[\d,.]*)( block)? range)", std::regex::icase),           // QuickNode
      std::regex(R"(limited to (\d[\d,.]*) blocks?)", std::regex::icase),                      // BlockPI
      std::regex(R"(range \d+ exceeds limit of (\d[\d,.]*))", std::regex::icase),               // Infura
      std::regex(R"(bigger than range limit (\d[\d,.]*))", std::regex::icase),                 // Tenderly
      std::regex(R"(max(?:imum)? block range(?: is)?\s*[:=]?\s*(\d[\d,.]*))", std::regex::icase),  // reth, PublicNode, geth-likes
      std::regex(R"(block range exceeds server limit, narrow your filter: (\d+))", std::regex::icase),  // erigon
      std::regex(R"(limit the query to at most (\d[\d,.]*) blocks)", std::regex::icase),       // Coinbase
      std::regex(R"(block range is too wide \(maximum (\d[\d,.]*)\))", std::regex::icase),    // Moonbeam
      std::regex(R"(maximum \[from, to\] blocks distance: (\d+))", std::regex::icase),       // Ankr (some chains)
      std::regex(R"(maximum is set to (\d[\d,.]*))", std::regex::icase),                      // Avalanche
      std::regex(R"(maximum allowed number of requested blocks is (\d[\d,.]*))", std::regex::icase),  // thirdweb
      std::regex(R"(max range: (\d[\d,.]*))", std::regex::icase),                              // Cloudflare
      std::regex(R"(range allowed for your plan \(\d+ > (\d+)\))", std::regex::icase),       // Blast
      std::regex(R"(block range greater than (\d[\d,.]*) max)", std::regex::icase),
      std::regex(R"(block range exceeds (\d[\d,.]*))", std::regex::icase),
  };
  // Too many results or too big an answer, without a number to go by.
  std::regex narrower{
      R"(query returned more than \d+ results|query exceeds max results|too many (logs|results)|log response size exceeded|)"
      R"(response size (should not|exceed)|response (is )?too (large|big)|logs matched by query exceeds|)"
      R"(block range (is )?too (wide|large)|range is too large|block range limit exceeded|query timeout exceeded|)"
      R"(exceeded? maximum block range|query returns too many logs)",
      std::regex::icase};
};

const Patterns& patterns() {
  static const Patterns p;
  return p;
}

}  // namespace

std::string log_filter_members(const std::vector<schema::Address>& addresses, const std::vector<schema::Hash32>& topic0s) {
  std::string out;
  if (!addresses.empty()) {
    out = "\"address\":[";
    for (std::size_t i = 0; i < addresses.size(); ++i) out += (i ? ",\"" : "\"") + schema::to_hex(addresses[i]) + "\"";
    out += "]";
  }
  if (topic0s.empty()) return out.empty() ? "\"topics\":[]" : out;
  out += out.empty() ? "\"topics\":[[" : ",\"topics\":[[";
  for (std::size_t i = 0; i < topic0s.size(); ++i) out += (i ? ",\"" : "\"") + schema::to_hex(topic0s[i]) + "\"";
  return out + "]]";
}

LogRangeAdvice advise_log_range(std::string_view message_view, BlockRange asked, int http_status) {
  using K = LogRangeAdvice::Kind;
  const std::string message(message_view);
  const Patterns& p = patterns();
  std::smatch m;
  if (std::regex_search(message, m, p.suggested_hex) || std::regex_search(message, m, p.suggested_decimal)) {
    const bool hex = m.str(0).find("0x") != std::string::npos || m.str(0).find("0X") != std::string::npos;
    const auto from = hex ? hex_of(m.str(1)) : number_of(m.str(1));
    const auto to = hex ? hex_of(m.str(2)) : number_of(m.str(2));
    if (from && to && *to >= *from) {
      const std::uint64_t width = *to - *from + 1;
      // A suggestion as wide as what was refused says nothing new (some nodes repeat the query).
      if (width < asked.size()) return {K::kSuggested, width};
      return {K::kNarrower, 0};
    }
  }
  for (const std::regex& limit : p.limits) {
    if (!std::regex_search(message, m, limit)) continue;
    const auto n = number_of(m.str(1));
    if (!n || *n == 0) continue;
    // Some providers count the limit as to - from, others as blocks: n blocks fits either way.
    if (*n < asked.size()) return {K::kLimit, *n};
    return {K::kNarrower, 0};
  }
  if (std::regex_search(message, p.narrower) || http_status == 413) return {K::kNarrower, 0};
  return {};
}

LogRangeSizer::LogRangeSizer(std::uint64_t initial, std::uint64_t ceiling)
    : blocks_(std::max<std::uint64_t>(1, std::min(initial, ceiling))), ceiling_(std::max<std::uint64_t>(1, ceiling)) {}

std::optional<std::uint64_t> LogRangeSizer::refused(const LogRangeAdvice& advice, BlockRange asked) {
  using K = LogRangeAdvice::Kind;
  if (advice.kind == K::kNotAboutRange || asked.size() <= 1) return std::nullopt;
  std::uint64_t width = asked.size() / 2;
  if (advice.kind == K::kLimit || advice.kind == K::kSuggested) width = std::min(advice.max_blocks, asked.size() - 1);
  if (advice.kind == K::kLimit) limit_ = limit_ ? std::min(*limit_, advice.max_blocks) : advice.max_blocks;
  blocks_ = std::max<std::uint64_t>(1, width);
  return blocks_;
}

void LogRangeSizer::too_big(BlockRange asked) { blocks_ = std::max<std::uint64_t>(1, std::min(blocks_, asked.size() / 2)); }

void LogRangeSizer::answered(BlockRange asked, bool small) {
  if (asked.size() < blocks_ || !small) return;
  const std::uint64_t cap = limit_ ? std::min(ceiling_, *limit_) : ceiling_;
  blocks_ = std::min(cap, blocks_ + std::max<std::uint64_t>(1, blocks_ / 4));
}

}  // namespace chainidx::ingest

#pragma once
// How wide an eth_getLogs query an endpoint accepts. Providers refuse wide queries with texts of
// their own: some name their limit ("up to a 2000 block range", "range 1000000 exceeds limit of
// 10000"), some name a range that works ("Try with this block range [0x10, 0x4f]"), others say
// only that the answer was too big ("query returned more than 10000 results"). advise_log_range
// reads them; LogRangeSizer keeps each endpoint's width: cut to what the provider said (or
// halved), grown again after answers that came back well under it. Pure: no I/O, no clock.

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "ingest/range_plan.hpp"
#include "schema/types.hpp"

namespace chainidx::ingest {

/// The "address" and "topics" members of an eth_getLogs filter object (no braces, never empty):
/// these addresses (any address when there are none: no "address" member), and any of these
/// topic0s (no topic condition when there are none).
std::string log_filter_members(const std::vector<schema::Address>& addresses, const std::vector<schema::Hash32>& topic0s);

/// What an eth_getLogs refusal says about the width to ask for instead.
struct LogRangeAdvice {
  enum class Kind {
    kNotAboutRange,  ///< an error of another kind: retried or failed over as any error
    kLimit,          ///< the provider named its limit: at most `max_blocks` blocks per query
    kSuggested,      ///< the provider named a range from the query's start that works
    kNarrower,       ///< too many results or too big an answer, no number given: halve
  };
  Kind kind = Kind::kNotAboutRange;
  std::uint64_t max_blocks = 0;  ///< kLimit, and kSuggested (the suggested range's width)
};

/// Reads a JSON-RPC error message (or an HTTP status) of an eth_getLogs query over `asked`.
/// `http_status` is the HTTP status of a refusal that had no JSON-RPC error (413: too big).
LogRangeAdvice advise_log_range(std::string_view message, BlockRange asked, int http_status = 0);

/// One endpoint's eth_getLogs width, in blocks.
class LogRangeSizer {
 public:
  /// Starts at `initial` blocks; never grows past `ceiling`.
  LogRangeSizer(std::uint64_t initial, std::uint64_t ceiling);

  std::uint64_t blocks() const { return blocks_; }
  /// The provider's limit, once it named one: never asked for more again.
  std::optional<std::uint64_t> limit() const { return limit_; }

  /// A refusal of a query over `asked`: the new width (smaller than asked, at least 1), or
  /// nullopt when the advice is not about the range (or `asked` was one block already).
  std::optional<std::uint64_t> refused(const LogRangeAdvice& advice, BlockRange asked);
  /// An answer to a query over `asked`: the width grows by a quarter when the query used the
  /// whole width and the answer was `small` (well under the answer size aimed at).
  void answered(BlockRange asked, bool small);
  /// An answer too big to hold comfortably (over the answer size aimed at): the width halves.
  void too_big(BlockRange asked);

 private:
  std::uint64_t blocks_;
  std::uint64_t ceiling_;
  std::optional<std::uint64_t> limit_;
};

}  // namespace chainidx::ingest

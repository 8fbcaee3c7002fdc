#pragma once
// What one request's failures across the endpoints add up to: try again (elsewhere), or stop
// because no retry can work. Pure; the endpoint pool keeps one per request (or block range).
//
// - An answer that will not change on a retry (a refused method or parameters, 401/403) ends
//   only that endpoint's part; when every endpoint has refused, the request is refused for good.
// - An answer that fails validation (malformed, hostile, inconsistent) is retried elsewhere;
//   when every endpoint has given such an answer `undecodable_after_rounds` times, the data is
//   not passing trouble and the request is undecodable. It is never skipped.

#include <cstddef>
#include <string>
#include <vector>

#include "ingest/rpc_error.hpp"

namespace chainidx::ingest {

class FailureTally {
 public:
  enum class Verdict { kRetry, kRefusedEverywhere, kUndecodable };

  /// `endpoints` names each endpoint (for the messages).
  FailureTally(std::vector<std::string> endpoints, unsigned undecodable_after_rounds)
      : names_(std::move(endpoints)), refusals_(names_.size()), malformed_(names_.size()),
        after_rounds_(undecodable_after_rounds) {}

  /// Endpoint `at` failed with `e`.
  Verdict record(std::size_t at, const RpcError& e) {
    if (!e.retryable()) {
      if (refusals_[at].empty()) ++refused_;
      refusals_[at] = e.what();
      if (refused_ == names_.size()) return Verdict::kRefusedEverywhere;
    }
    if (e.kind() == RpcError::Kind::kMalformed) {
      malformed_[at] = e.what();
      bool round = true;
      for (std::size_t i = 0; i < names_.size(); ++i) round &= !malformed_[i].empty() || !refusals_[i].empty();
      if (round) {
        last_round_.clear();
        for (const auto& m : malformed_)
          if (!m.empty()) last_round_ += (last_round_.empty() ? "" : "; ") + m;
        if (++malformed_rounds_ >= after_rounds_) return Verdict::kUndecodable;
        for (auto& m : malformed_) m.clear();
      }
    }
    return Verdict::kRetry;
  }

  /// Whether endpoint `at` refused this request for good (ask another).
  bool refused(std::size_t at) const { return !refusals_[at].empty(); }
  unsigned malformed_rounds() const { return malformed_rounds_; }

  /// For kRefusedEverywhere: "every endpoint refused WHAT, which no retry changes (...)".
  std::string refused_message(const std::string& what) const {
    std::string answers;
    for (std::size_t i = 0; i < names_.size(); ++i) answers += (i ? "; " : "") + names_[i] + " answered: " + refusals_[i];
    return "every endpoint refused " + what + ", which no retry changes (" + answers + "); add an endpoint that serves it";
  }
  /// For kUndecodable: names `subject`, the rounds and the answers of the last round.
  std::string undecodable_message(const std::string& subject) const {
    return subject + " failed validation on every endpoint " + std::to_string(malformed_rounds_) +
           " times (chain.undecodable_after_rounds), last: " + last_round_ +
           ". Not skipped: the cursor stays before it; report the block and these answers";
  }

 private:
  std::vector<std::string> names_;
  std::vector<std::string> refusals_;
  std::vector<std::string> malformed_;  // this round's invalid answers
  std::size_t refused_ = 0;
  unsigned malformed_rounds_ = 0;
  unsigned after_rounds_;
  std::string last_round_;
};

}  // namespace chainidx::ingest

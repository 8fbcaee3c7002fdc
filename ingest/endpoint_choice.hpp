#pragma once
// Which endpoint a request goes to: pure, over the endpoints' health, so a test can lay out any
// mix of open circuits, lag and latency and see the choice.

#include <cstdint>
#include <limits>
#include <optional>
#include <span>
#include <vector>

#include "ingest/endpoint_health.hpp"

namespace chainidx::ingest {

struct EndpointChoice {
  /// Endpoints this request must not go to (refused it for good, or already tried this round).
  std::vector<bool> excluded;
  /// The endpoint the last request went to: kept while it scores within `stickiness` of the best,
  /// so that load does not flap between endpoints of about the same quality (and keeps its
  /// connections warm). Ties go to the lower index, as configured.
  std::optional<std::size_t> current;
  /// The block the request needs, when it needs one by number: an endpoint whose head is known
  /// to be below it is used only when no other can be.
  std::optional<std::uint64_t> needs_block;
  double stickiness = 1.5;
  /// How long each endpoint's rate limit would hold a request now, in ms (empty: none): added to
  /// its score, so that load spreads by rate limit as well as by quality.
  std::vector<double> rate_wait_ms;
};

/// The newest head any endpoint reported (0 when none did).
inline std::uint64_t best_head(std::span<const EndpointHealth* const> health) {
  std::uint64_t best = 0;
  for (const auto* h : health)
    if (h->head()) best = std::max(best, *h->head());
  return best;
}

/// The endpoint to send to now, or nullopt when every endpoint not excluded has its circuit open
/// (the caller waits for the earliest cool-down to end: earliest_probe()).
inline std::optional<std::size_t> choose_endpoint(std::span<const EndpointHealth* const> health, EndpointHealth::Clock::time_point now,
                                                  const EndpointChoice& c) {
  const std::uint64_t best = best_head(health);
  double known = 0;  // mean latency of the endpoints that answered, the guess for those that did not
  std::size_t answered = 0;
  for (const auto* h : health)
    if (h->samples() > 0) known += h->latency_ms(), ++answered;
  const double unknown = answered ? known / static_cast<double>(answered) : 0;
  auto usable = [&](std::size_t i, bool need_head) {
    if (i < c.excluded.size() && c.excluded[i]) return false;
    if (!health[i]->available(now)) return false;
    if (need_head && c.needs_block && health[i]->head() && *health[i]->head() < *c.needs_block) return false;
    return true;
  };
  // A probe that is due goes first: one request decides whether the endpoint is back, and
  // without it an endpoint that scored badly during its outage would never be asked again.
  for (std::size_t i = 0; i < health.size(); ++i)
    if (usable(i, true) && health[i]->probe_due(now)) return i;
  for (bool need_head : {true, false}) {
    std::optional<std::size_t> pick;
    double pick_score = std::numeric_limits<double>::infinity();
    auto score = [&](std::size_t i) {
      return health[i]->score(best, unknown) + (i < c.rate_wait_ms.size() ? c.rate_wait_ms[i] : 0.0);
    };
    for (std::size_t i = 0; i < health.size(); ++i) {
      if (!usable(i, need_head)) continue;
      const double s = score(i);
      if (s < pick_score) pick = i, pick_score = s;
    }
    if (!pick) continue;
    if (c.current && *c.current != *pick && usable(*c.current, need_head) &&
        score(*c.current) <= pick_score * c.stickiness + 2.0)
      return c.current;
    return pick;
  }
  return std::nullopt;
}

/// When the first open circuit among the endpoints not excluded lets its probe through.
inline std::optional<EndpointHealth::Clock::time_point> earliest_probe(std::span<const EndpointHealth* const> health,
                                                                       const std::vector<bool>& excluded) {
  std::optional<EndpointHealth::Clock::time_point> t;
  for (std::size_t i = 0; i < health.size(); ++i) {
    if (i < excluded.size() && excluded[i]) continue;
    const auto s = health[i]->state(0);
    if (s != EndpointState::kOpen) continue;
    if (!t || health[i]->open_until() < *t) t = health[i]->open_until();
  }
  return t;
}

}  // namespace chainidx::ingest

#pragma once
// Checks shared by the fault tests: what Postgres and the topics hold against what anvil has.

#include <atomic>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "harness.hpp"

namespace chainidx::testing {

/// anvil with the Transfer emitter deployed, and a dev broker with the chain's topics, in one
/// temporary directory.
struct TestChain {
  TempDir dir;
  Anvil anvil{dir.path()};
  DevBroker broker{dir.path(), "anvil"};
  std::string emitter = anvil.deploy_emitter();
};

/// The cursor's block number in `schema` (a chain's name); 0 before the schema exists.
std::uint64_t cursor_of(const std::string& url, const std::string& schema = "anvil");

/// The value of one series of a /metrics scrape (its name with its labels, as exposed), or -1
/// when absent.
double metric_sample(const std::string& exposition, const std::string& series);

/// Hashes of blocks 0..cursor as Postgres has them equal anvil's, with logs present and counted.
void expect_postgres_hashes_equal_anvil(const std::string& url, const Anvil& anvil);

/// Mines `rounds` blocks with two Transfer-emitting calls each (anvil.deploy_emitter() first).
void mine_transfers(const Anvil& anvil, int rounds, unsigned seed = 11);

/// The blocks topic's messages hold blocks 0..`through` once each, with Postgres' hashes.
/// Blocks in [`repeat_from`, `repeat_to`] may appear twice: the dev broker (librdkafka's mock
/// cluster) shows the messages of an aborted transaction to read_committed consumers too, where
/// a real cluster hides them; a test that makes a transaction fail names its blocks here.
void expect_each_block_published_once(const std::vector<std::string>& block_messages, const std::string& db_url,
                                      std::uint64_t through, std::uint64_t repeat_from = 1, std::uint64_t repeat_to = 0);

/// Answers a request (one call or a batch) call by call: with `answer(method, params)`'s text
/// (`"result":...` or `"error":{...}`) where it gives one, else as `anvil` would. For a
/// FaultProxy's intercept.
std::string answer_calls(const Anvil& anvil, const std::string& request,
                         const std::function<std::optional<std::string>(const std::string& method, const std::string& params)>& answer);

/// Answers a request (one call or a batch) as `anvil` would, except that each call for which
/// `refuse(method, params)` holds gets the JSON-RPC error (`code`, `message`), as a node without
/// that method (or that form of it) answers it; those calls are counted in `refused`. For a
/// FaultProxy's intercept.
std::string answer_refusing(const Anvil& anvil, const std::string& request,
                            const std::function<bool(const std::string& method, const std::string& params)>& refuse, int code,
                            const std::string& message, std::atomic<int>& refused);

/// answer_refusing() for every call of one method.
std::string answer_without_method(const Anvil& anvil, const std::string& request, const std::string& method, int code,
                                  const std::string& message, std::atomic<int>& refused);

}  // namespace chainidx::testing

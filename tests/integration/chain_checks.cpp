#include "chain_checks.hpp"

#include <gtest/gtest.h>
#include <pqxx/pqxx>
#include <simdjson.h>

#include <map>
#include <random>
#include <sstream>
#include <thread>

namespace chainidx::testing {

std::uint64_t cursor_of(const std::string& url, const std::string& schema) {
  try {
    pqxx::connection c(url);
    pqxx::read_transaction tx(c);
    auto r = tx.exec("SELECT block_number FROM " + schema + ".cursor");
    return r.empty() ? 0 : r[0][0].as<std::uint64_t>();
  } catch (const pqxx::failure&) {
    return 0;
  }
}

double metric_sample(const std::string& exposition, const std::string& series) {
  std::istringstream lines(exposition);
  for (std::string line; std::getline(lines, line);)
    if (line.rfind(series + " ", 0) == 0) return std::stod(line.substr(series.size() + 1));
  return -1;
}

void expect_postgres_hashes_equal_anvil(const std::string& url, const Anvil& anvil) {
  pqxx::connection c(url);
  pqxx::read_transaction tx(c);
  auto rows = tx.exec("SELECT number, '0x' || encode(hash, 'hex') FROM anvil.blocks ORDER BY number");
  ASSERT_EQ(rows.size(), cursor_of(url) + 1);
  for (const auto& r : rows) EXPECT_EQ(r[1].as<std::string>(), anvil.block_hash(r[0].as<std::uint64_t>()));
  auto logs = tx.exec("SELECT count(*) FROM anvil.logs")[0][0].as<std::uint64_t>();
  auto log_txs = tx.exec("SELECT coalesce(sum(log_count), 0) FROM anvil.transactions")[0][0].as<std::uint64_t>();
  EXPECT_GT(logs, 0u);
  EXPECT_EQ(logs, log_txs);
}

void mine_transfers(const Anvil& anvil, int rounds, unsigned seed) {
  std::mt19937 rng(seed);
  for (int r = 0; r < rounds; ++r) {
    for (int i = 0; i < 2; ++i) anvil.send_transfer(static_cast<int>(rng() % 10), 1 + rng() % 1000);
    anvil.mine();
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

void expect_each_block_published_once(const std::vector<std::string>& block_messages, const std::string& db_url,
                                      std::uint64_t through, std::uint64_t repeat_from, std::uint64_t repeat_to) {
  std::map<std::string, int> seen;  // "number hash" -> count
  for (const auto& m : block_messages) {
    auto n_at = m.find("\"block_number\":");
    auto h_at = m.find("\"block_hash\":\"");
    ASSERT_NE(n_at, std::string::npos) << m;
    ASSERT_NE(h_at, std::string::npos) << m;
    std::string number = m.substr(n_at + 15, m.find_first_of(",}", n_at) - n_at - 15);
    seen[number + " " + m.substr(h_at + 14, 66)]++;
  }
  pqxx::connection c(db_url);
  pqxx::read_transaction tx(c);
  auto rows = tx.exec("SELECT number, '0x' || encode(hash, 'hex') FROM anvil.blocks WHERE number <= " + std::to_string(through) +
                      " ORDER BY number");
  ASSERT_EQ(rows.size(), through + 1);
  std::size_t expected_total = 0;
  for (const auto& r : rows) {
    std::string key = r[0].as<std::string>() + " " + r[1].as<std::string>();
    std::uint64_t n = r[0].as<std::uint64_t>();
    if (n >= repeat_from && n <= repeat_to) {
      EXPECT_GE(seen[key], 1) << "block " << key << " missing";
      EXPECT_LE(seen[key], 2) << "block " << key << " published " << seen[key] << " times";
      expected_total += static_cast<std::size_t>(seen[key]);
    } else {
      EXPECT_EQ(seen[key], 1) << "block " << key << " published " << seen[key] << " times";
      expected_total += 1;
    }
  }
  std::size_t total = 0;
  for (auto& [k, n] : seen) total += static_cast<std::size_t>(n);
  EXPECT_EQ(total, expected_total) << "the topic holds blocks beyond " << through << " or off the chain";
}

std::string answer_calls(const Anvil& anvil, const std::string& request,
                         const std::function<std::optional<std::string>(const std::string& method, const std::string& params)>& answer) {
  simdjson::dom::parser parser;
  simdjson::dom::element parsed = parser.parse(request);
  auto one = [&](simdjson::dom::element call) {
    const std::string id = simdjson::minify(call["id"]);
    const std::string name(call["method"].get_string().value());
    const std::string params = simdjson::minify(call["params"]);
    const std::string body = answer(name, params).value_or("\"result\":" + anvil.rpc(name, params));
    return "{\"jsonrpc\":\"2.0\",\"id\":" + id + "," + body + "}";
  };
  if (!parsed.is_array()) return one(parsed);
  std::string out = "[";
  for (simdjson::dom::element call : parsed.get_array()) out += (out.size() > 1 ? "," : "") + one(call);
  return out + "]";
}

std::string answer_refusing(const Anvil& anvil, const std::string& request,
                            const std::function<bool(const std::string& method, const std::string& params)>& refuse, int code,
                            const std::string& message, std::atomic<int>& refused) {
  return answer_calls(anvil, request, [&](const std::string& method, const std::string& params) -> std::optional<std::string> {
    if (!refuse(method, params)) return std::nullopt;
    ++refused;
    return "\"error\":{\"code\":" + std::to_string(code) + ",\"message\":\"" + message + "\"}";
  });
}

std::string answer_without_method(const Anvil& anvil, const std::string& request, const std::string& method, int code,
                                  const std::string& message, std::atomic<int>& refused) {
  return answer_refusing(anvil, request, [&](const std::string& m, const std::string&) { return m == method; }, code, message, refused);
}

}  // namespace chainidx::testing

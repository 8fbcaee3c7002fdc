#include "abi/event_catalog.hpp"

#include <algorithm>
#include <cctype>
#include <set>

#include "abi/event_decoder.hpp"

namespace chainidx::abi {
namespace {

using schema::Error;

constexpr std::size_t kMaxIdentifier = 63;  // Postgres' NAMEDATALEN - 1

bool hashed_when_indexed(const Type& t) {
  return t.kind == Type::Kind::kBytes || t.kind == Type::Kind::kString || t.kind == Type::Kind::kArray ||
         t.kind == Type::Kind::kTuple;
}

}  // namespace

std::string snake_case(std::string_view name) {
  while (name.size() > 1 && name.front() == '_') name.remove_prefix(1);
  std::string out;
  for (std::size_t i = 0; i < name.size(); ++i) {
    const char c = name[i];
    const bool upper = std::isupper(static_cast<unsigned char>(c));
    if (upper && i > 0 && !out.empty() && out.back() != '_') {
      const char prev = name[i - 1];
      const bool prev_lower_or_digit = std::islower(static_cast<unsigned char>(prev)) || std::isdigit(static_cast<unsigned char>(prev));
      const bool next_lower = i + 1 < name.size() && std::islower(static_cast<unsigned char>(name[i + 1]));
      if (prev_lower_or_digit || (std::isupper(static_cast<unsigned char>(prev)) && next_lower)) out.push_back('_');
    }
    out.push_back(c == '$' ? '_' : static_cast<char>(std::tolower(static_cast<unsigned char>(c))));
  }
  return out;
}

schema::Result<EventCatalog> EventCatalog::build(std::vector<ContractEvents> contracts) {
  EventCatalog c;
  std::set<std::string> table_names;
  for (std::uint32_t ci = 0; ci < contracts.size(); ++ci) {
    const ContractEvents& contract = contracts[ci];
    for (std::uint32_t ei = 0; ei < contract.events.size(); ++ei) {
      const Event& e = contract.events[ei];
      schema::EventTable t;
      t.contract = contract.name;
      t.event = e.name;
      t.signature = e.signature();
      t.anonymous = e.anonymous;
      t.table = contract.name + "_" + snake_case(e.name);
      if (t.table.size() > kMaxIdentifier)
        return Error{"contract " + contract.name + ", event " + e.name + ": table name " + t.table + " is longer than 63 characters; choose a shorter contract name"};
      if (!table_names.insert(t.table).second)
        return Error{"contract " + contract.name + ": two events would both be stored in table " + t.table +
                     " (an overloaded event, or names that differ only in case): choose one of them in `events` by its full signature"};
      std::set<std::string> columns(std::begin(kEventBaseColumns), std::end(kEventBaseColumns));
      std::set<std::string> keys;
      for (std::size_t i = 0; i < e.params.size(); ++i) {
        const EventParam& p = e.params[i];
        schema::EventColumn col;
        col.indexed = p.indexed;
        col.hashed = p.indexed && hashed_when_indexed(p.type);
        col.abi_type = p.type.canonical();
        col.kind = arg_kind(p.type, col.hashed);
        col.json_number = !col.hashed && p.type.fits_json_number();
        const std::string base = p.name.empty() ? "arg" + std::to_string(i) : p.name;
        col.key = base + (col.hashed ? "_hash" : "");
        col.name = (p.name.empty() ? base : snake_case(p.name)) + (col.hashed ? "_hash" : "");
        if (!columns.insert(col.name).second) {
          col.name += "_" + std::to_string(i);
          if (!columns.insert(col.name).second) return Error{"event " + t.signature + ": parameter names collide at " + col.name};
        }
        if (!keys.insert(col.key).second) col.key += "_" + std::to_string(i);
        if (col.name.size() > kMaxIdentifier)
          return Error{"event " + t.signature + ": column name " + col.name + " is longer than 63 characters"};
        t.columns.push_back(std::move(col));
      }
      c.tables_.push_back(std::move(t));
      c.sources_.emplace_back(ci, ei);
    }
  }
  c.contracts_ = std::move(contracts);
  c.index();
  return c;
}

std::vector<std::string> EventCatalog::arg_json_schemas(std::size_t table) const {
  const Event& e = event_of(table);
  std::vector<std::string> out;
  for (std::size_t i = 0; i < e.params.size(); ++i) out.push_back(json_schema(e.params[i].type, tables_[table].columns[i].hashed));
  return out;
}

EventCatalog::LogFilter EventCatalog::log_filter() const { return filter_; }

bool EventCatalog::wanted(const schema::Log& log) const {
  if (!by_address_.contains(log.address)) return false;
  if (filter_.topic0s.empty()) return true;
  return !log.topics.empty() && std::find(filter_.topic0s.begin(), filter_.topic0s.end(), log.topics[0]) != filter_.topic0s.end();
}

void EventCatalog::keep_wanted_logs(schema::Block& block) const {
  std::erase_if(block.logs, [this](const schema::Log& log) { return !wanted(log); });
  block.transactions.clear();
  block.transaction_hashes.clear();
  block.withdrawals.clear();
  block.sparse = true;
}

void EventCatalog::index() {
  lookup_.assign(contracts_.size(), {});
  by_address_.clear();
  filter_ = {};
  bool any_anonymous = false;
  for (const auto& c : contracts_)
    for (const Event& e : c.events) {
      if (e.anonymous) {
        any_anonymous = true;
      } else if (std::find(filter_.topic0s.begin(), filter_.topic0s.end(), e.topic0()) == filter_.topic0s.end()) {
        filter_.topic0s.push_back(e.topic0());
      }
    }
  if (any_anonymous) filter_.topic0s.clear();
  std::uint32_t table = 0;
  for (std::uint32_t i = 0; i < contracts_.size(); ++i) {
    for (std::uint32_t ei = 0; ei < contracts_[i].events.size(); ++ei, ++table) {
      const Event& e = contracts_[i].events[ei];
      if (e.anonymous) lookup_[i].anonymous.push_back({table, ei});
      else lookup_[i].by_topic0[e.topic0()].push_back({table, ei});
    }
    for (const auto& a : contracts_[i].addresses) {
      if (!by_address_.contains(a)) filter_.addresses.push_back(a);
      auto& list = by_address_[a];
      if (std::find(list.begin(), list.end(), i) == list.end()) list.push_back(i);
    }
  }
}

void EventCatalog::decode(schema::Block& block) const {
  block.events.clear();
  if (by_address_.empty()) return;
  for (std::uint32_t li = 0; li < block.logs.size(); ++li) {
    const schema::Log& log = block.logs[li];
    auto found = by_address_.find(log.address);
    if (found == by_address_.end()) continue;
    for (std::uint32_t ci : found->second) {
      const ContractEvents& contract = contracts_[ci];
      if (block.number < contract.start_block) continue;
      const Contract& look = lookup_[ci];
      std::vector<Candidate> candidates;
      if (!log.topics.empty()) {
        auto named = look.by_topic0.find(log.topics[0]);
        if (named != look.by_topic0.end()) candidates = named->second;
      }
      const bool known_topic = !log.topics.empty() && std::find(contract.abi_topics.begin(), contract.abi_topics.end(),
                                                                log.topics[0]) != contract.abi_topics.end();
      if (candidates.empty() && !known_topic)
        for (const Candidate& a : look.anonymous)
          if (contract.events[a.event].topic_count() == log.topics.size()) candidates.push_back(a);
      if (candidates.empty()) continue;

      schema::DecodedEvent out;
      out.log = li;
      out.table = candidates.front().table;
      for (const Candidate& cand : candidates) {
        const Event& event = contract.events[cand.event];
        auto values = decode_event(event, log.topics, log.data);
        if (!values) {
          if (!out.error.empty()) out.error += "; ";
          out.error += (candidates.size() > 1 ? event.signature() + ": " : std::string()) + values.error().message;
          continue;
        }
        out.table = cand.table;
        out.error.clear();
        out.args.reserve(values->size());
        for (std::size_t i = 0; i < values->size(); ++i)
          out.args.push_back(to_event_arg(event.params[i].type, tables_[cand.table].columns[i].hashed, (*values)[i]));
        break;
      }
      block.events.push_back(std::move(out));
    }
  }
}

}  // namespace chainidx::abi

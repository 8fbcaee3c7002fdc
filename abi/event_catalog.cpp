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
  if (auto resolved = c.resolve_factories(); !resolved) return resolved.error();
  c.index();
  return c;
}

schema::Result<FactoryTarget> resolve_factory(const std::vector<ContractEvents>& contracts, std::uint32_t child, std::string& field) {
  const FactoryRef& f = *contracts.at(child).factory;
  field = "contract";
  if (!contracts[child].addresses.empty()) return Error{"a contract has either addresses or a factory, not both"};
  auto factory = std::find_if(contracts.begin(), contracts.end(), [&](const ContractEvents& c) { return c.name == f.contract; });
  if (factory == contracts.end()) return Error{"no contract is named \"" + f.contract + "\""};
  if (factory->name == contracts[child].name) return Error{"a contract cannot be its own factory"};
  FactoryTarget out{static_cast<std::uint32_t>(factory - contracts.begin()), 0, 0};
  field = "event";
  std::optional<std::uint32_t> event;
  for (std::uint32_t e = 0; e < factory->events.size(); ++e)
    if (factory->events[e].name == f.event || factory->events[e].signature() == f.event) {
      if (event) return Error{f.event + " is overloaded in " + f.contract + "'s ABI: name it by its full signature"};
      event = e;
    }
  if (!event) return Error{"\"" + f.event + "\" is not one of the events chosen for " + f.contract};
  out.event = *event;
  const Event& e = factory->events[out.event];
  field = "parameter";
  auto param = std::find_if(e.params.begin(), e.params.end(), [&](const EventParam& p) { return p.name == f.parameter; });
  if (param == e.params.end()) return Error{e.signature() + " has no parameter named \"" + f.parameter + "\""};
  if (param->type.kind != Type::Kind::kAddress)
    return Error{"the parameter " + f.parameter + " of " + e.signature() + " is a " + param->type.canonical() + ", not an address"};
  out.parameter = static_cast<std::uint32_t>(param - e.params.begin());
  field.clear();
  return out;
}

schema::Status EventCatalog::resolve_factories() {
  made_.assign(contracts_.size(), false);
  factory_sources_.clear();
  for (std::uint32_t ci = 0; ci < contracts_.size(); ++ci) {
    if (!contracts_[ci].factory) continue;
    made_[ci] = true;
    std::string field;
    auto target = resolve_factory(contracts_, ci, field);
    if (!target) return Error{"contract " + contracts_[ci].name + ", factory." + field + ": " + target.error().message};
    const auto table = std::find(sources_.begin(), sources_.end(), std::make_pair(target->contract, target->event)) - sources_.begin();
    factory_sources_.push_back({ci, static_cast<std::uint32_t>(table), target->parameter});
  }
  // Each factory-made contract's chain of factories must reach a contract with addresses.
  for (std::uint32_t ci = 0; ci < contracts_.size(); ++ci) {
    std::uint32_t at = ci;
    for (std::size_t steps = 0; made_[at]; ++steps) {
      if (steps > contracts_.size())
        return Error{"contract " + contracts_[ci].name + ", factory: its factories make each other and none has addresses"};
      const auto source = std::find_if(factory_sources_.begin(), factory_sources_.end(), [&](const FactorySource& s) { return s.child == at; });
      at = sources_[source->table].first;
    }
  }
  return schema::Ok{};
}

std::vector<std::string> EventCatalog::arg_json_schemas(std::size_t table) const {
  const Event& e = event_of(table);
  std::vector<std::string> out;
  for (std::size_t i = 0; i < e.params.size(); ++i) out.push_back(json_schema(e.params[i].type, tables_[table].columns[i].hashed));
  return out;
}

EventCatalog::LogFilter EventCatalog::log_filter() const { return filter_; }

namespace {
bool has_topic0(const std::vector<schema::Hash32>& topic0s, const schema::Log& log) {
  return !log.topics.empty() && std::find(topic0s.begin(), topic0s.end(), log.topics[0]) != topic0s.end();
}
}  // namespace

bool EventCatalog::wanted_static(const schema::Log& log) const {
  return by_address_.contains(log.address) && (static_any_topic_ || has_topic0(static_topic0s_, log));
}

bool EventCatalog::wanted(const schema::Log& log) const {
  if (wanted_static(log)) return true;
  return has_factories() && (child_any_topic_ || has_topic0(child_topic0s_, log));
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
  static_topic0s_.clear();
  child_topic0s_.clear();
  static_any_topic_ = child_any_topic_ = false;
  for (std::uint32_t ci = 0; ci < contracts_.size(); ++ci) {
    auto& topic0s = made_[ci] ? child_topic0s_ : static_topic0s_;
    auto& any_topic = made_[ci] ? child_any_topic_ : static_any_topic_;
    for (const Event& e : contracts_[ci].events) {
      if (e.anonymous) any_topic = true;
      else if (std::find(topic0s.begin(), topic0s.end(), e.topic0()) == topic0s.end()) topic0s.push_back(e.topic0());
      if (!e.anonymous && std::find(filter_.topic0s.begin(), filter_.topic0s.end(), e.topic0()) == filter_.topic0s.end())
        filter_.topic0s.push_back(e.topic0());
    }
  }
  if (static_any_topic_ || child_any_topic_) filter_.topic0s.clear();
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
  if (has_factories()) filter_.addresses.clear();
}

std::optional<schema::DecodedEvent> EventCatalog::decode_log(std::uint32_t ci, std::uint32_t li, const schema::Log& log) const {
  const ContractEvents& contract = contracts_[ci];
  const Contract& look = lookup_[ci];
  // The events the log may be: those of its topic0 (found by it, so it is theirs), else the
  // anonymous ones of its topic count unless its topic0 is another event of the ABI.
  std::span<const Candidate> candidates;
  const schema::Hash32* topic0 = nullptr;
  if (!log.topics.empty()) {
    auto named = look.by_topic0.find(log.topics[0]);
    if (named != look.by_topic0.end()) {
      candidates = named->second;
      topic0 = &named->first;
    }
  }
  std::vector<Candidate> anonymous;
  if (candidates.empty() && !has_topic0(contract.abi_topics, log)) {
    for (const Candidate& a : look.anonymous)
      if (contract.events[a.event].topic_count() == log.topics.size()) anonymous.push_back(a);
    candidates = anonymous;
  }
  if (candidates.empty()) return std::nullopt;

  schema::DecodedEvent out;
  out.log = li;
  out.table = candidates.front().table;
  for (const Candidate& cand : candidates) {
    const Event& event = contract.events[cand.event];
    auto values = decode_event(event, log.topics, log.data, event.anonymous ? nullptr : topic0);
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
  return out;
}

void EventCatalog::decode(schema::Block& block) const {
  block.events.clear();
  if (by_address_.empty()) return;
  for (std::uint32_t li = 0; li < block.logs.size(); ++li) {
    const schema::Log& log = block.logs[li];
    auto found = by_address_.find(log.address);
    if (found == by_address_.end()) continue;
    for (std::uint32_t ci : found->second) {
      if (block.number < contracts_[ci].start_block) continue;
      if (auto event = decode_log(ci, li, log)) block.events.push_back(std::move(*event));
    }
  }
}

std::vector<FactoryChild> EventCatalog::decode_children(std::span<schema::Block> blocks, const FactoryChildren& known,
                                                        bool drop_other_logs) const {
  std::vector<FactoryChild> made;
  if (!has_factories()) return made;
  FactoryChildren batch;  // the addresses made in `blocks` so far
  std::vector<std::uint32_t> instances;
  auto instances_of = [&](const schema::Address& a, std::uint64_t block) {
    instances.clear();
    known.instances(a, block, instances);
    batch.instances(a, block, instances);
    return !instances.empty();
  };
  auto of_made_contract = [this](const schema::DecodedEvent& e) { return made_[sources_[e.table].first]; };
  for (schema::Block& block : blocks) {
    // The factory events of the block name addresses; the instances' events may be factory
    // events too: until no new address is named.
    std::erase_if(block.events, of_made_contract);
    for (bool first = true;; first = false) {
      bool named = false;
      for (const schema::DecodedEvent& e : block.events) {
        if (!e.decoded()) continue;
        for (const FactorySource& s : factory_sources_) {
          if (s.table != e.table || e.args.at(s.column).bytes.size() != schema::Address::size()) continue;
          schema::Address a;
          std::copy(e.args[s.column].bytes.begin(), e.args[s.column].bytes.end(), a.bytes.begin());
          if (known.has(a, s.child) || batch.has(a, s.child)) continue;
          const FactoryChild child{a, s.child, block.number};
          batch.add(child);
          made.push_back(child);
          named = true;
        }
      }
      if (!named && !first) break;
      std::erase_if(block.events, of_made_contract);
      for (std::uint32_t li = 0; li < block.logs.size(); ++li) {
        const schema::Log& log = block.logs[li];
        if (!instances_of(log.address, block.number)) continue;
        for (std::uint32_t ci : instances) {
          if (block.number < contracts_[ci].start_block) continue;
          if (auto event = decode_log(ci, li, log)) block.events.push_back(std::move(*event));
        }
      }
      if (!named) break;
    }
    std::stable_sort(block.events.begin(), block.events.end(),
                     [](const schema::DecodedEvent& a, const schema::DecodedEvent& b) { return a.log < b.log; });
    if (!drop_other_logs) continue;
    std::vector<std::uint32_t> position(block.logs.size(), 0);
    std::vector<schema::Log> kept;
    kept.reserve(block.logs.size());
    for (std::uint32_t li = 0; li < block.logs.size(); ++li) {
      if (!wanted_static(block.logs[li]) && !instances_of(block.logs[li].address, block.number)) continue;
      position[li] = static_cast<std::uint32_t>(kept.size());
      kept.push_back(std::move(block.logs[li]));
    }
    for (schema::DecodedEvent& e : block.events) e.log = position[e.log];
    block.logs = std::move(kept);
  }
  return made;
}

void FactoryChildren::add(const FactoryChild& child) {
  auto& list = by_address_[child.address];
  for (auto& [contract, block] : list)
    if (contract == child.contract) {
      block = std::min(block, child.block);
      return;
    }
  list.emplace_back(child.contract, child.block);
  ++size_;
}

std::size_t FactoryChildren::count(std::uint32_t contract) const {
  std::size_t n = 0;
  for (const auto& [address, list] : by_address_)
    for (const auto& entry : list) n += entry.first == contract;
  return n;
}

std::vector<FactoryChild> FactoryChildren::of(std::uint32_t contract) const {
  std::vector<FactoryChild> out;
  for (const auto& [address, list] : by_address_)
    for (const auto& [c, block] : list)
      if (c == contract) out.push_back({address, c, block});
  return out;
}

bool FactoryChildren::has(const schema::Address& address, std::uint32_t contract) const {
  auto found = by_address_.find(address);
  if (found == by_address_.end()) return false;
  return std::any_of(found->second.begin(), found->second.end(), [&](const auto& entry) { return entry.first == contract; });
}

void FactoryChildren::instances(const schema::Address& address, std::uint64_t block, std::vector<std::uint32_t>& out) const {
  auto found = by_address_.find(address);
  if (found == by_address_.end()) return;
  for (const auto& [contract, from] : found->second)
    if (from <= block && std::find(out.begin(), out.end(), contract) == out.end()) out.push_back(contract);
}

}  // namespace chainidx::abi

#include "abi/abi_type.hpp"

#include <cryptopp/keccak.h>
#include <simdjson.h>

#include <cctype>
#include <charconv>

namespace chainidx::abi {
namespace {

using schema::Error;
using schema::Result;

bool is_word(std::string_view s) {
  if (s.empty() || std::isdigit(static_cast<unsigned char>(s[0]))) return false;
  for (char c : s)
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '_' && c != '$') return false;
  return true;
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.front()))) s.remove_prefix(1);
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.remove_suffix(1);
  return s;
}

bool parse_number(std::string_view s, unsigned& out) {
  if (s.empty() || (s.size() > 1 && s[0] == '0')) return false;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
  return ec == std::errc() && p == s.data() + s.size();
}

// An elementary type's name: "uint256", "bytes", "address", ...
Result<Type> elementary(std::string_view base) {
  using K = Type::Kind;
  Type t;
  auto sized = [&](std::string_view prefix, K kind, unsigned def, unsigned step, unsigned max) -> Result<Type> {
    std::string_view digits = base.substr(prefix.size());
    t.kind = kind;
    if (digits.empty()) {
      if (def == 0) return Error{"type " + std::string(base) + " needs a size"};
      t.bits = def;
      return t;
    }
    unsigned m = 0;
    if (!parse_number(digits, m) || m == 0 || m > max || m % step != 0)
      return Error{"type " + std::string(base) + ": the size must be a multiple of " + std::to_string(step) + " from " +
                   std::to_string(step) + " to " + std::to_string(max)};
    if (kind == K::kFixedBytes) t.size = m;
    else t.bits = m;
    return t;
  };
  if (base == "address") return Type{K::kAddress};
  if (base == "bool") return Type{K::kBool};
  if (base == "string") return Type{K::kString};
  if (base == "bytes") return Type{K::kBytes};
  if (base == "function") {
    t.kind = K::kFixedBytes;
    t.size = 24;
    return t;
  }
  if (base.starts_with("uint")) return sized("uint", K::kUint, 256, 8, 256);
  if (base.starts_with("int")) return sized("int", K::kInt, 256, 8, 256);
  if (base.starts_with("bytes")) return sized("bytes", K::kFixedBytes, 0, 1, 32);
  if (base.starts_with("fixed") || base.starts_with("ufixed"))
    return Error{"type " + std::string(base) + ": fixed-point types are not supported (no compiler emits them)"};
  return Error{"unknown type \"" + std::string(base) + "\""};
}

// Applies "[2][]..." to `t`, innermost first.
Result<Type> with_array_suffix(Type t, std::string_view suffix) {
  while (!suffix.empty()) {
    if (suffix[0] != '[') return Error{"unexpected \"" + std::string(suffix) + "\" after the type"};
    auto close = suffix.find(']');
    if (close == std::string_view::npos) return Error{"unclosed [ in \"" + std::string(suffix) + "\""};
    std::string_view len = suffix.substr(1, close - 1);
    Type a;
    a.kind = Type::Kind::kArray;
    a.dynamic_length = len.empty();
    if (!len.empty() && (!parse_number(len, a.size) || a.size == 0))
      return Error{"array length \"" + std::string(len) + "\" is not a positive number"};
    a.elements.push_back(std::move(t));
    t = std::move(a);
    suffix.remove_prefix(close + 1);
  }
  return t;
}

// Splits "a,b,(c,d)" at top-level commas.
std::vector<std::string_view> split_top(std::string_view s) {
  std::vector<std::string_view> parts;
  int depth = 0;
  std::size_t start = 0;
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '(') ++depth;
    else if (s[i] == ')') --depth;
    else if (s[i] == ',' && depth == 0) {
      parts.push_back(s.substr(start, i - start));
      start = i + 1;
    }
  }
  if (!trim(s).empty()) parts.push_back(s.substr(start));
  return parts;
}

// "type [indexed] [name]" inside a signature's or a tuple's parentheses.
struct Declared {
  Type type;
  std::string name;
  bool indexed = false;
};

Result<Declared> parse_declared(std::string_view text, bool allow_indexed) {
  text = trim(text);
  // The type ends at the first space outside parentheses.
  int depth = 0;
  std::size_t end = text.size();
  for (std::size_t i = 0; i < text.size(); ++i) {
    if (text[i] == '(') ++depth;
    else if (text[i] == ')') --depth;
    else if (std::isspace(static_cast<unsigned char>(text[i])) && depth == 0) {
      end = i;
      break;
    }
  }
  Declared d;
  auto t = parse_type(text.substr(0, end));
  if (!t) return t.error();
  d.type = std::move(*t);
  std::string_view rest = trim(text.substr(end));
  if (allow_indexed && (rest == "indexed" || rest.starts_with("indexed "))) {
    d.indexed = true;
    rest = trim(rest.substr(7));
  }
  if (!rest.empty()) {
    if (!is_word(rest)) return Error{"\"" + std::string(rest) + "\" is not a parameter name"};
    d.name = std::string(rest);
  }
  return d;
}

Result<Type> type_of_json(simdjson::dom::element param, const std::string& where);

Result<std::vector<EventParam>> params_of_json(simdjson::dom::array list, const std::string& where, bool event) {
  std::vector<EventParam> params;
  std::size_t i = 0;
  for (simdjson::dom::element p : list) {
    const std::string at = where + "[" + std::to_string(i++) + "]";
    if (!p.is_object()) return Error{at + ": not an object"};
    EventParam ep;
    std::string_view name;
    if (!p["name"].get(name)) ep.name = std::string(name);
    if (!ep.name.empty() && !is_word(ep.name)) return Error{at + ".name: \"" + ep.name + "\" is not an identifier"};
    bool indexed = false;
    if (event && !p["indexed"].get(indexed)) ep.indexed = indexed;
    auto t = type_of_json(p, at);
    if (!t) return t.error();
    ep.type = std::move(*t);
    params.push_back(std::move(ep));
  }
  return params;
}

Result<Type> type_of_json(simdjson::dom::element param, const std::string& where) {
  std::string_view text;
  if (param["type"].get(text)) return Error{where + ".type: missing or not a string"};
  if (!text.starts_with("tuple")) {
    auto t = parse_type(text);
    if (!t) return Error{where + ".type: " + t.error().message};
    return t;
  }
  simdjson::dom::array components;
  if (param["components"].get(components)) return Error{where + ".components: a tuple needs its components"};
  auto list = params_of_json(components, where + ".components", false);
  if (!list) return list.error();
  Type tuple;
  tuple.kind = Type::Kind::kTuple;
  for (auto& c : *list) {
    tuple.elements.push_back(std::move(c.type));
    tuple.names.push_back(std::move(c.name));
  }
  auto t = with_array_suffix(std::move(tuple), text.substr(5));
  if (!t) return Error{where + ".type: " + t.error().message};
  return t;
}

}  // namespace

std::string Type::canonical() const {
  switch (kind) {
    case Kind::kUint: return "uint" + std::to_string(bits);
    case Kind::kInt: return "int" + std::to_string(bits);
    case Kind::kAddress: return "address";
    case Kind::kBool: return "bool";
    case Kind::kFixedBytes: return "bytes" + std::to_string(size);
    case Kind::kBytes: return "bytes";
    case Kind::kString: return "string";
    case Kind::kArray: return elements[0].canonical() + (dynamic_length ? "[]" : "[" + std::to_string(size) + "]");
    case Kind::kTuple: {
      std::string s = "(";
      for (std::size_t i = 0; i < elements.size(); ++i) s += (i ? "," : "") + elements[i].canonical();
      return s + ")";
    }
  }
  return "?";
}

bool Type::is_dynamic() const {
  switch (kind) {
    case Kind::kBytes:
    case Kind::kString: return true;
    case Kind::kArray: return dynamic_length || elements[0].is_dynamic();
    case Kind::kTuple:
      for (const auto& e : elements)
        if (e.is_dynamic()) return true;
      return false;
    default: return false;
  }
}

std::size_t Type::head_size() const {
  if (is_dynamic()) return 32;
  if (kind == Kind::kArray) return size * elements[0].head_size();
  if (kind == Kind::kTuple) {
    std::size_t n = 0;
    for (const auto& e : elements) n += e.head_size();
    return n;
  }
  return 32;
}

Result<Type> parse_type(std::string_view text) {
  text = trim(text);
  if (text.empty()) return Error{"empty type"};
  if (text.front() != '(') {
    auto bracket = text.find('[');
    auto base = elementary(text.substr(0, bracket));
    if (!base) return base;
    return with_array_suffix(std::move(*base), bracket == std::string_view::npos ? std::string_view() : text.substr(bracket));
  }
  int depth = 0;
  std::size_t close = std::string_view::npos;
  for (std::size_t i = 0; i < text.size(); ++i) {
    if (text[i] == '(') ++depth;
    else if (text[i] == ')' && --depth == 0) {
      close = i;
      break;
    }
  }
  if (close == std::string_view::npos) return Error{"unclosed ( in \"" + std::string(text) + "\""};
  Type tuple;
  tuple.kind = Type::Kind::kTuple;
  for (std::string_view part : split_top(text.substr(1, close - 1))) {
    auto d = parse_declared(part, false);
    if (!d) return d.error();
    tuple.elements.push_back(std::move(d->type));
    tuple.names.push_back(std::move(d->name));
  }
  if (tuple.elements.empty()) return Error{"empty tuple \"()\""};
  return with_array_suffix(std::move(tuple), text.substr(close + 1));
}

std::string Event::signature() const {
  std::string s = name + "(";
  for (std::size_t i = 0; i < params.size(); ++i) s += (i ? "," : "") + params[i].type.canonical();
  return s + ")";
}

schema::Hash32 Event::topic0() const { return keccak256(signature()); }

std::size_t Event::topic_count() const {
  std::size_t n = anonymous ? 0 : 1;
  for (const auto& p : params) n += p.indexed ? 1 : 0;
  return n;
}

schema::Hash32 keccak256(std::string_view bytes) {
  schema::Hash32 h;
  CryptoPP::Keccak_256().CalculateDigest(h.data(), reinterpret_cast<const CryptoPP::byte*>(bytes.data()), bytes.size());
  return h;
}

Result<Event> parse_event_signature(std::string_view text) {
  text = trim(text);
  if (text.starts_with("event ")) text = trim(text.substr(6));
  auto open = text.find('(');
  if (open == std::string_view::npos || text.back() != ')') return Error{"\"" + std::string(text) + "\" is not Name(type, ...)"};
  Event e;
  e.name = std::string(trim(text.substr(0, open)));
  if (!is_word(e.name)) return Error{"\"" + e.name + "\" is not an event name"};
  for (std::string_view part : split_top(text.substr(open + 1, text.size() - open - 2))) {
    auto d = parse_declared(part, true);
    if (!d) return Error{"event " + e.name + ": " + d.error().message};
    e.params.push_back(EventParam{std::move(d->name), std::move(d->type), d->indexed});
  }
  return e;
}

Result<std::vector<Event>> parse_abi_json(std::string_view json) {
  simdjson::dom::parser parser;
  simdjson::dom::element root;
  if (auto err = parser.parse(json.data(), json.size()).get(root))
    return Error{std::string("not valid JSON (") + simdjson::error_message(err) + ")"};
  simdjson::dom::array entries;
  if (root.is_object()) {
    if (root["abi"].get(entries)) return Error{"an object without an \"abi\" array: expected a JSON ABI (an array of entries)"};
  } else if (root.get(entries)) {
    return Error{"expected a JSON ABI: an array of entries"};
  }
  std::vector<Event> events;
  std::size_t i = 0;
  for (simdjson::dom::element entry : entries) {
    const std::string at = "entry " + std::to_string(i++);
    std::string_view type;
    if (!entry.is_object() || entry["type"].get(type)) return Error{at + ": not an object with a \"type\""};
    if (type != "event") continue;
    Event e;
    std::string_view name;
    if (entry["name"].get(name) || !is_word(name)) return Error{at + ".name: an event needs a name that is an identifier"};
    e.name = std::string(name);
    const std::string where = at + " (event " + e.name + ").inputs";
    bool anonymous = false;
    if (!entry["anonymous"].get(anonymous)) e.anonymous = anonymous;
    simdjson::dom::array inputs;
    if (entry["inputs"].get(inputs)) return Error{where + ": missing"};
    auto params = params_of_json(inputs, where, true);
    if (!params) return params.error();
    e.params = std::move(*params);
    std::size_t indexed = 0;
    for (const auto& p : e.params) indexed += p.indexed ? 1 : 0;
    if (indexed > (e.anonymous ? 4u : 3u))
      return Error{where + ": " + std::to_string(indexed) + " indexed parameters; a log has room for " + (e.anonymous ? "4" : "3")};
    events.push_back(std::move(e));
  }
  return events;
}

}  // namespace chainidx::abi

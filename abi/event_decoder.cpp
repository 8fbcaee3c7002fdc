#include "abi/event_decoder.hpp"

#include <simdjson.h>

#include <algorithm>
#include <cstdint>

#include "schema/tx_json.hpp"

namespace chainidx::abi {
namespace {

using K = Type::Kind;
using schema::Error;
using schema::Result;

// An indexed parameter of these types is stored as the hash of its encoding.
bool hashed_when_indexed(const Type& t) {
  return t.kind == K::kBytes || t.kind == K::kString || t.kind == K::kArray || t.kind == K::kTuple;
}

std::string decimal(const std::uint8_t* word, bool negate) {
  schema::U256 v;
  for (int limb = 0; limb < 4; ++limb)
    for (int b = 0; b < 8; ++b) v.limbs[limb] |= std::uint64_t{word[31 - (limb * 8 + b)]} << (8 * b);
  if (negate) {  // two's complement: the magnitude is ~v + 1
    bool carry = true;
    for (auto& l : v.limbs) {
      l = ~l;
      if (carry) carry = ++l == 0;
    }
  }
  return negate ? "-" + v.to_decimal() : v.to_decimal();
}

// Reads values out of one log's data. Offsets are relative to the start of the enclosing tuple
// or array (`base`), as the ABI lays them out.
class Reader {
 public:
  explicit Reader(const schema::Bytes& data)
      : data_(data), values_left_(data.size() / 32 + 8), bytes_left_(data.size()) {}

  // The value of `t` whose head is at `at` in a tuple starting at `base`.
  Result<Value> read(const Type& t, std::size_t base, std::size_t at, const std::string& what) {
    if (t.is_dynamic()) {
      auto offset = word_as_size(at, what + " offset");
      if (!offset) return offset.error();
      if (*offset > data_.size() - base) return Error{what + ": offset " + std::to_string(*offset) + " points past the data"};
      return read_in_place(t, base + *offset, what);
    }
    return read_in_place(t, at, what);
  }

  // The value of `t` whose encoding starts at `at` (the tail, for a dynamic type).
  Result<Value> read_in_place(const Type& t, std::size_t at, const std::string& what) {
    switch (t.kind) {
      case K::kArray: {
        std::size_t count = t.size;
        std::size_t start = at;
        if (t.dynamic_length) {
          auto n = word_as_size(at, what + " length");
          if (!n) return n.error();
          count = *n;
          start = at + 32;
          if (!spend_value(what)) return budget_error(what);
          // Each element takes at least one head word: a longer count cannot be honest.
          if (count > (data_.size() - start) / std::max<std::size_t>(t.elements[0].head_size(), 32))
            return Error{what + ": length " + std::to_string(count) + " does not fit in the data"};
        }
        Value v;
        v.items.reserve(count);
        std::size_t head = start;
        for (std::size_t i = 0; i < count; ++i) {
          auto e = read(t.elements[0], start, head, what + "[" + std::to_string(i) + "]");
          if (!e) return e;
          v.items.push_back(std::move(*e));
          head += t.elements[0].head_size();
        }
        return v;
      }
      case K::kTuple: {
        Value v;
        std::size_t head = at;
        for (std::size_t i = 0; i < t.elements.size(); ++i) {
          auto e = read(t.elements[i], at, head, what + "." + (t.names[i].empty() ? std::to_string(i) : t.names[i]));
          if (!e) return e;
          v.items.push_back(std::move(*e));
          head += t.elements[i].head_size();
        }
        return v;
      }
      case K::kBytes:
      case K::kString: {
        auto n = word_as_size(at, what + " length");
        if (!n) return n.error();
        if (*n > data_.size() - at - 32) return Error{what + ": length " + std::to_string(*n) + " runs past the data"};
        if (!spend_value(what) || *n > bytes_left_) return budget_error(what);
        bytes_left_ -= *n;
        const auto* p = data_.data() + at + 32;
        Value v;
        if (t.kind == K::kBytes) {
          v.bytes.assign(p, p + *n);
          return v;
        }
        v.text.assign(reinterpret_cast<const char*>(p), *n);
        if (!simdjson::validate_utf8(v.text.data(), v.text.size())) return Error{what + ": the string is not valid UTF-8"};
        if (v.text.find('\0') != std::string::npos)
          return Error{what + ": the string holds a NUL character, which Postgres text cannot store"};
        return v;
      }
      default: {
        if (at > data_.size() || data_.size() - at < 32) return Error{what + ": the data ends before it"};
        if (!spend_value(what)) return budget_error(what);
        return word(t, data_.data() + at, what);
      }
    }
  }

  // A value type from one 32-byte word (also a topic's).
  static Result<Value> word(const Type& t, const std::uint8_t* w, const std::string& what) {
    auto zeros = [&](std::size_t from, std::size_t to) { return std::all_of(w + from, w + to, [](auto b) { return b == 0; }); };
    Value v;
    switch (t.kind) {
      case K::kUint:
        if (!zeros(0, 32 - t.bits / 8)) return Error{what + ": value does not fit uint" + std::to_string(t.bits)};
        v.text = decimal(w, false);
        return v;
      case K::kInt: {
        const std::size_t first = 32 - t.bits / 8;
        const bool negative = (w[first] & 0x80) != 0;
        const std::uint8_t fill = negative ? 0xff : 0x00;
        if (!std::all_of(w, w + first, [&](auto b) { return b == fill; }))
          return Error{what + ": value does not fit int" + std::to_string(t.bits)};
        v.text = decimal(w, negative);
        return v;
      }
      case K::kAddress:
        if (!zeros(0, 12)) return Error{what + ": an address with non-zero upper bytes"};
        v.bytes.assign(w + 12, w + 32);
        return v;
      case K::kBool:
        if (!zeros(0, 31) || w[31] > 1) return Error{what + ": a bool that is neither 0 nor 1"};
        v.boolean = w[31] == 1;
        return v;
      case K::kFixedBytes:
        if (!zeros(t.size, 32)) return Error{what + ": bytes" + std::to_string(t.size) + " with non-zero padding"};
        v.bytes.assign(w, w + t.size);
        return v;
      default: return Error{what + ": not a value type"};
    }
  }

 private:
  Result<std::size_t> word_as_size(std::size_t at, const std::string& what) {
    if (at > data_.size() || data_.size() - at < 32) return Error{what + ": the data ends before it"};
    const auto* w = data_.data() + at;
    if (!std::all_of(w, w + 24, [](auto b) { return b == 0; })) return Error{what + ": too large"};
    std::uint64_t n = 0;
    for (int i = 24; i < 32; ++i) n = (n << 8) | w[i];
    if (n > data_.size()) return Error{what + ": " + std::to_string(n) + " is past the data's " + std::to_string(data_.size()) + " bytes"};
    return static_cast<std::size_t>(n);
  }
  bool spend_value(const std::string&) {
    if (values_left_ == 0) return false;
    --values_left_;
    return true;
  }
  static Error budget_error(const std::string& what) {
    return Error{what + ": the data decodes to more values than it holds (offsets pointing at shared parts)"};
  }

  const schema::Bytes& data_;
  std::size_t values_left_;
  std::size_t bytes_left_;
};

std::string param_name(const Event& e, std::size_t i) {
  const auto& p = e.params[i];
  return "parameter " + std::to_string(i) + (p.name.empty() ? "" : " (" + p.name + ")");
}

void append_hex(std::string& out, const schema::Bytes& b) {
  out.append("\"0x");
  schema::append_hex_digits(out, b.data(), b.size());
  out.push_back('"');
}

}  // namespace

Result<std::vector<Value>> decode_event(const Event& event, std::span<const schema::Hash32> topics, const schema::Bytes& data,
                                        const schema::Hash32* topic0) {
  if (topics.size() != event.topic_count())
    return Error{"topic count " + std::to_string(topics.size()) + ", the event has " + std::to_string(event.topic_count())};
  if (!event.anonymous && topics[0] != (topic0 ? *topic0 : event.topic0())) return Error{"topic0 is not the event's"};
  std::vector<Value> values(event.params.size());
  std::size_t topic = event.anonymous ? 0 : 1;
  Reader reader(data);
  std::size_t head = 0;
  for (std::size_t i = 0; i < event.params.size(); ++i) {
    const auto& p = event.params[i];
    if (p.indexed) {
      const schema::Hash32& w = topics[topic++];
      if (hashed_when_indexed(p.type)) {
        values[i].bytes.assign(w.bytes.begin(), w.bytes.end());
        continue;
      }
      auto v = Reader::word(p.type, w.data(), param_name(event, i));
      if (!v) return v.error();
      values[i] = std::move(*v);
      continue;
    }
    auto v = reader.read(p.type, 0, head, param_name(event, i));
    if (!v) return v.error();
    values[i] = std::move(*v);
    head += p.type.head_size();
  }
  return values;
}

void append_json(std::string& out, const Type& type, const Value& value) {
  switch (type.kind) {
    case K::kUint:
    case K::kInt:
      if (type.fits_json_number()) {
        out.append(value.text);
      } else {
        out.push_back('"');
        out.append(value.text);
        out.push_back('"');
      }
      return;
    case K::kBool: out.append(value.boolean ? "true" : "false"); return;
    case K::kAddress:
    case K::kFixedBytes:
    case K::kBytes: append_hex(out, value.bytes); return;
    case K::kString: schema::append_json_string(out, value.text); return;
    case K::kArray:
      out.push_back('[');
      for (std::size_t i = 0; i < value.items.size(); ++i) {
        if (i) out.push_back(',');
        append_json(out, type.elements[0], value.items[i]);
      }
      out.push_back(']');
      return;
    case K::kTuple:
      out.push_back('{');
      for (std::size_t i = 0; i < value.items.size(); ++i) {
        if (i) out.push_back(',');
        schema::append_json_string(out, type.names[i].empty() ? std::to_string(i) : type.names[i]);
        out.push_back(':');
        append_json(out, type.elements[i], value.items[i]);
      }
      out.push_back('}');
      return;
  }
}

namespace {

std::string hex_schema(const std::string& digits, const std::string& description) {
  return R"({"type":"string","pattern":"^0x)" + digits + R"($","description":")" + description + R"("})";
}

// The extreme of an M-bit integer in decimal (2^(M-1) or 2^M, less `minus`), for M <= 48.
std::int64_t power_of_two(unsigned bits) { return std::int64_t{1} << bits; }

}  // namespace

std::string json_schema(const Type& type, bool hashed) {
  if (hashed)
    return hex_schema("[0-9a-f]{64}", "keccak256 of the value: an indexed " + type.canonical() + " is stored in the log as its hash");
  switch (type.kind) {
    case K::kUint:
      if (type.fits_json_number())
        return R"({"type":"integer","minimum":0,"maximum":)" + std::to_string(power_of_two(type.bits) - 1) + "}";
      return R"({"type":"string","pattern":"^(0|[1-9][0-9]*)$","description":")" + type.canonical() + R"( as a decimal string"})";
    case K::kInt:
      if (type.fits_json_number())
        return R"({"type":"integer","minimum":)" + std::to_string(-power_of_two(type.bits - 1)) + R"(,"maximum":)" +
               std::to_string(power_of_two(type.bits - 1) - 1) + "}";
      return R"({"type":"string","pattern":"^(0|-?[1-9][0-9]*)$","description":")" + type.canonical() + R"( as a decimal string"})";
    case K::kAddress: return hex_schema("[0-9a-f]{40}", "address, lower-case hex");
    case K::kBool: return R"({"type":"boolean"})";
    case K::kFixedBytes: return hex_schema("[0-9a-f]{" + std::to_string(2 * type.size) + "}", type.canonical());
    case K::kBytes: return hex_schema("([0-9a-f]{2})*", "bytes");
    case K::kString: return R"({"type":"string"})";
    case K::kArray: {
      std::string s = R"({"type":"array","items":)" + json_schema(type.elements[0]);
      if (!type.dynamic_length) s += R"(,"minItems":)" + std::to_string(type.size) + R"(,"maxItems":)" + std::to_string(type.size);
      return s + "}";
    }
    case K::kTuple: {
      std::string properties, required;
      for (std::size_t i = 0; i < type.elements.size(); ++i) {
        std::string key;
        schema::append_json_string(key, type.names[i].empty() ? std::to_string(i) : type.names[i]);
        properties += (i ? "," : "") + key + ":" + json_schema(type.elements[i]);
        required += (i ? "," : "") + key;
      }
      return R"({"type":"object","properties":{)" + properties + R"(},"required":[)" + required + R"(],"additionalProperties":false})";
    }
  }
  return "{}";
}

schema::ArgKind arg_kind(const Type& type, bool hashed) {
  using A = schema::ArgKind;
  if (hashed) return A::kBytes;
  switch (type.kind) {
    case K::kUint:
    case K::kInt: return A::kInteger;
    case K::kBool: return A::kBool;
    case K::kString: return A::kText;
    case K::kArray:
    case K::kTuple: return A::kJson;
    default: return A::kBytes;
  }
}

schema::EventArg to_event_arg(const Type& type, bool hashed, const Value& value) {
  schema::EventArg a;
  switch (arg_kind(type, hashed)) {
    case schema::ArgKind::kInteger:
    case schema::ArgKind::kText: a.text = value.text; break;
    case schema::ArgKind::kBool: a.boolean = value.boolean; break;
    case schema::ArgKind::kBytes: a.bytes = value.bytes; break;
    case schema::ArgKind::kJson: append_json(a.text, type, value); break;
  }
  return a;
}

}  // namespace chainidx::abi

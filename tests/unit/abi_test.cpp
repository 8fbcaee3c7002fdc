// The ABI library: types and signatures, decoding checked against encodings made by foundry's
// cast (tests/data/abi), a randomised encode / decode round trip, hostile data, and the catalog
// that turns a block's logs into decoded events.

#include <gtest/gtest.h>
#include <simdjson.h>

#include <fstream>
#include <random>
#include <set>
#include <sstream>

#include "abi/abi_type.hpp"
#include "abi/event_catalog.hpp"
#include "abi/event_decoder.hpp"

namespace chainidx::abi {
namespace {

using K = Type::Kind;
using schema::Bytes;
using schema::Hash32;

Bytes bytes_of(std::string_view hex) {
  Bytes b;
  EXPECT_TRUE(schema::parse_data(hex, b)) << hex;
  return b;
}

Event event(std::string_view signature) {
  auto e = parse_event_signature(signature);
  EXPECT_TRUE(e.ok()) << (e.ok() ? "" : e.error().message);
  return e.ok() ? *e : Event{};
}

std::string hex(const Bytes& b) { return schema::to_hex(b); }

// --- types and signatures -----------------------------------------------------------------------

TEST(AbiType, CanonicalFormsOfEveryKindOfType) {
  for (auto [in, out] : std::vector<std::pair<std::string, std::string>>{
           {"uint", "uint256"}, {"int", "int256"}, {"uint8", "uint8"}, {"bytes32", "bytes32"}, {"function", "bytes24"},
           {"address[]", "address[]"}, {"uint8[2][]", "uint8[2][]"}, {"(uint8 a, bytes b)[]", "(uint8,bytes)[]"},
           {"((address,string)[2],bool)", "((address,string)[2],bool)"}}) {
    auto t = parse_type(in);
    ASSERT_TRUE(t.ok()) << in << ": " << t.error().message;
    EXPECT_EQ(t->canonical(), out) << in;
  }
  for (std::string bad : {"uint7", "uint264", "bytes0", "bytes33", "fixed128x18", "foo", "uint8[0]", "uint8[", "(uint8", "()"})
    EXPECT_FALSE(parse_type(bad).ok()) << bad;
}

TEST(AbiType, DynamicTypesAndHeadSizes) {
  EXPECT_FALSE(parse_type("uint256[3]")->is_dynamic());
  EXPECT_EQ(parse_type("uint256[3]")->head_size(), 96u);
  EXPECT_EQ(parse_type("(uint8,bytes32)[2]")->head_size(), 128u);
  EXPECT_TRUE(parse_type("string[2]")->is_dynamic());
  EXPECT_EQ(parse_type("string[2]")->head_size(), 32u);
  EXPECT_TRUE(parse_type("(uint8,bytes)")->is_dynamic());
  EXPECT_TRUE(parse_type("uint8[]")->is_dynamic());
}

TEST(AbiType, Topic0IsTheKeccakOfTheCanonicalSignature) {
  // `cast sig-event "Transfer(address indexed from,address indexed to,uint256 value)"`
  EXPECT_EQ(schema::to_hex(event("Transfer(address indexed from, address indexed to, uint value)").topic0()),
            "0xddf252ad1be2c89b69c2b068fc378daa952ba7f163c4a11628f55a4df523b3ef");
  EXPECT_EQ(event("Transfer(address indexed from, address indexed to, uint value)").signature(),
            "Transfer(address,address,uint256)");
  EXPECT_EQ(event("E((uint8 a,bytes b)[] x)").signature(), "E((uint8,bytes)[])");
}

TEST(AbiType, JsonAbiGivesItsEventsWithTupleComponentsAndSkipsTheRest) {
  const char* json = R"([
    {"type":"function","name":"transfer","inputs":[{"name":"to","type":"address"}],"outputs":[]},
    {"type":"event","name":"Transfer","anonymous":false,"inputs":[
      {"name":"from","type":"address","indexed":true},{"name":"to","type":"address","indexed":true},
      {"name":"value","type":"uint256","indexed":false}]},
    {"type":"event","name":"Swapped","anonymous":true,"inputs":[
      {"name":"legs","type":"tuple[]","indexed":false,"components":[
        {"name":"token","type":"address"},{"name":"amounts","type":"uint128[2]"}]}]}
  ])";
  auto events = parse_abi_json(json);
  ASSERT_TRUE(events.ok()) << events.error().message;
  ASSERT_EQ(events->size(), 2u);
  EXPECT_EQ((*events)[0].signature(), "Transfer(address,address,uint256)");
  EXPECT_TRUE((*events)[0].params[0].indexed);
  EXPECT_FALSE((*events)[0].params[2].indexed);
  EXPECT_TRUE((*events)[1].anonymous);
  EXPECT_EQ((*events)[1].signature(), "Swapped((address,uint128[2])[])");
  EXPECT_EQ((*events)[1].params[0].type.elements[0].names, (std::vector<std::string>{"token", "amounts"}));
  // A compiler artifact's object with an "abi" array is accepted too.
  EXPECT_TRUE(parse_abi_json(std::string("{\"abi\":") + json + "}").ok());
}

TEST(AbiType, JsonAbiErrorsNameTheEntryAndField) {
  auto e = parse_abi_json(R"([{"type":"event","name":"E","inputs":[{"name":"x","type":"uint7"}]}])");
  ASSERT_FALSE(e.ok());
  EXPECT_NE(e.error().message.find("entry 0 (event E).inputs[0].type"), std::string::npos) << e.error().message;
  e = parse_abi_json(R"([{"type":"event","name":"E","inputs":[{"name":"x","type":"tuple"}]}])");
  ASSERT_FALSE(e.ok());
  EXPECT_NE(e.error().message.find("components"), std::string::npos) << e.error().message;
  EXPECT_FALSE(parse_abi_json("{not json").ok());
  EXPECT_FALSE(parse_abi_json(R"({"contractName":"X"})").ok());
  e = parse_abi_json(R"([{"type":"event","name":"E","inputs":[
    {"name":"a","type":"uint8","indexed":true},{"name":"b","type":"uint8","indexed":true},
    {"name":"c","type":"uint8","indexed":true},{"name":"d","type":"uint8","indexed":true}]}])");
  ASSERT_FALSE(e.ok());
  EXPECT_NE(e.error().message.find("4 indexed"), std::string::npos) << e.error().message;
}

// --- decoding against cast ----------------------------------------------------------------------

// Both sides in one shape: integers as decimal, bytes and addresses as lower-case hex, strings as
// themselves, arrays and tuples as arrays.
void cast_shape(std::string& out, const Type& t, const Value& v) {
  switch (t.kind) {
    case K::kUint:
    case K::kInt: out += v.text; break;
    case K::kBool: out += v.boolean ? "true" : "false"; break;
    case K::kString: out += "'" + v.text + "'"; break;
    case K::kArray:
    case K::kTuple:
      out += "[";
      for (std::size_t i = 0; i < v.items.size(); ++i) {
        if (i) out += ",";
        cast_shape(out, t.kind == K::kArray ? t.elements[0] : t.elements[i], v.items[i]);
      }
      out += "]";
      break;
    default: out += hex(v.bytes);
  }
}

void cast_shape(std::string& out, simdjson::dom::element e) {
  switch (e.type()) {
    case simdjson::dom::element_type::ARRAY: {
      out += "[";
      bool first = true;
      for (auto item : e.get_array()) {
        if (!first) out += ",";
        first = false;
        cast_shape(out, item);
      }
      out += "]";
      break;
    }
    case simdjson::dom::element_type::INT64: out += std::to_string(int64_t(e)); break;
    case simdjson::dom::element_type::UINT64: out += std::to_string(uint64_t(e)); break;
    case simdjson::dom::element_type::BOOL: out += bool(e) ? "true" : "false"; break;
    case simdjson::dom::element_type::STRING: {
      std::string s{std::string_view(e)};
      if (s.starts_with("0x")) {
        for (auto& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
        out += s;
      } else if (!s.empty() && (std::isdigit(static_cast<unsigned char>(s[0])) || s[0] == '-') &&
                 s.find_first_not_of("-0123456789") == std::string::npos) {
        out += s;  // an integer too large for a JSON number
      } else {
        out += "'" + s + "'";
      }
      break;
    }
    default: out += "?";
  }
}

TEST(AbiDecode, EveryCastVectorDecodesToWhatCastDecodes) {
  std::ifstream in(std::string(CHAINIDX_FIXTURES_DIR) + "/abi/cast_vectors.jsonl");
  ASSERT_TRUE(in) << "tests/data/abi/cast_vectors.jsonl";
  simdjson::dom::parser parser;
  std::string line;
  int cases = 0;
  while (std::getline(in, line)) {
    simdjson::dom::element v = parser.parse(line);
    Event e = event(std::string_view(v["event"]));
    std::vector<Hash32> topics{e.topic0()};
    auto values = decode_event(e, topics, bytes_of(std::string_view(v["data"])));
    ASSERT_TRUE(values.ok()) << line << ": " << values.error().message;
    std::string ours = "[";
    for (std::size_t i = 0; i < values->size(); ++i) {
      if (i) ours += ",";
      cast_shape(ours, e.params[i].type, (*values)[i]);
    }
    ours += "]";
    std::string theirs;
    cast_shape(theirs, v["cast"]);
    EXPECT_EQ(ours, theirs) << std::string_view(v["event"]);
    ++cases;
  }
  EXPECT_GE(cases, 12);
}

TEST(AbiDecode, IndexedValuesComeFromTopicsAndIndexedDynamicValuesAreTheirHashes) {
  Event e = event("Named(address indexed owner, string indexed label, int16 indexed delta, uint256 value)");
  Hash32 owner = schema::hash_from_hex("0x000000000000000000000000a0b86991c6218b36c1d19d4a2e9eb0ce3606eb48");
  Hash32 label = keccak256("vitalik");
  Hash32 delta = schema::hash_from_hex("0xfffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffe");
  std::vector<Hash32> topics{e.topic0(), owner, label, delta};
  auto values = decode_event(e, topics, bytes_of("0x000000000000000000000000000000000000000000000000000000000000002a"));
  ASSERT_TRUE(values.ok()) << values.error().message;
  EXPECT_EQ(hex((*values)[0].bytes), "0xa0b86991c6218b36c1d19d4a2e9eb0ce3606eb48");
  EXPECT_EQ(hex((*values)[1].bytes), schema::to_hex(label));
  EXPECT_EQ((*values)[2].text, "-2");
  EXPECT_EQ((*values)[3].text, "42");
}

TEST(AbiDecode, AnonymousEventsHaveNoTopic0) {
  Event e = event("Anon(uint8 indexed a, bool b)");
  e.anonymous = true;
  auto values = decode_event(e, std::vector<Hash32>{schema::hash_from_hex("0x0000000000000000000000000000000000000000000000000000000000000007")},
                             bytes_of("0x0000000000000000000000000000000000000000000000000000000000000001"));
  ASSERT_TRUE(values.ok()) << values.error().message;
  EXPECT_EQ((*values)[0].text, "7");
  EXPECT_TRUE((*values)[1].boolean);
}

TEST(AbiDecode, JsonOfValuesKeepsBigIntegersExactAndNamesTupleComponents) {
  auto t = parse_type("(uint48 small, uint64 big, int8 neg, string s, bytes2 b, bool f)[]");
  ASSERT_TRUE(t.ok());
  Value v;
  Value item;
  item.items.resize(6);
  item.items[0].text = "281474976710655";
  item.items[1].text = "18446744073709551615";
  item.items[2].text = "-5";
  item.items[3].text = "a \"quote\"\n";
  item.items[4].bytes = {0xab, 0xcd};
  item.items[5].boolean = false;
  v.items.push_back(item);
  std::string json;
  append_json(json, *t, v);
  EXPECT_EQ(json, R"([{"small":281474976710655,"big":"18446744073709551615","neg":-5,"s":"a \"quote\"\n","b":"0xabcd","f":false}])");
}

TEST(AbiDecode, JsonSchemaOfATypeDescribesItsJsonForm) {
  auto schema_of = [](const std::string& type, bool hashed = false) {
    auto t = parse_type(type);
    EXPECT_TRUE(t.ok()) << type;
    return json_schema(*t, hashed);
  };
  EXPECT_EQ(schema_of("int8"), R"({"type":"integer","minimum":-128,"maximum":127})");
  EXPECT_EQ(schema_of("uint48"), R"({"type":"integer","minimum":0,"maximum":281474976710655})");
  EXPECT_EQ(schema_of("int48"), R"({"type":"integer","minimum":-140737488355328,"maximum":140737488355327})");
  EXPECT_NE(schema_of("uint56").find(R"("type":"string","pattern":"^(0|[1-9][0-9]*)$")"), std::string::npos);
  EXPECT_NE(schema_of("int256").find(R"("pattern":"^(0|-?[1-9][0-9]*)$")"), std::string::npos);
  EXPECT_NE(schema_of("address").find(R"("pattern":"^0x[0-9a-f]{40}$")"), std::string::npos);
  EXPECT_NE(schema_of("bytes3").find(R"("pattern":"^0x[0-9a-f]{6}$")"), std::string::npos);
  EXPECT_NE(schema_of("bytes").find(R"("pattern":"^0x([0-9a-f]{2})*$")"), std::string::npos);
  EXPECT_EQ(schema_of("bool[2]"), R"({"type":"array","items":{"type":"boolean"},"minItems":2,"maxItems":2})");
  EXPECT_EQ(schema_of("(string a,bool)"),
            R"({"type":"object","properties":{"a":{"type":"string"},"1":{"type":"boolean"}},"required":["a","1"],"additionalProperties":false})");
  // An indexed string is its hash.
  EXPECT_NE(schema_of("string", true).find(R"("pattern":"^0x[0-9a-f]{64}$")"), std::string::npos);
  // Each is valid JSON.
  simdjson::dom::parser parser;
  for (const char* t : {"(uint8 a,(bytes32[2] p,int256 q)[] r)[3]", "string[]", "uint256"})
    EXPECT_FALSE(parser.parse(schema_of(t)).error()) << t;
}

// --- hostile data -------------------------------------------------------------------------------

std::string word(std::uint64_t v) {
  char buf[65];
  std::snprintf(buf, sizeof buf, "%064llx", static_cast<unsigned long long>(v));
  return buf;
}

std::string error_of(const Event& e, std::span<const Hash32> topics, std::string_view data_hex) {
  auto r = decode_event(e, topics, bytes_of(data_hex));
  return r.ok() ? std::string("decoded") : r.error().message;
}

TEST(AbiDecode, HostileDataIsRefusedWithAReason) {
  Event str = event("S(string s)");
  std::vector<Hash32> t{str.topic0()};
  EXPECT_NE(error_of(str, t, "0x" + word(0x40)).find("past the data"), std::string::npos);  // offset past the data
  EXPECT_NE(error_of(str, t, "0x" + word(0x1000) + word(0)).find("past the data"), std::string::npos);
  EXPECT_NE(error_of(str, t, "0x" + word(0x20) + word(40) + word(0)).find("runs past"), std::string::npos);  // length past the data
  EXPECT_NE(error_of(str, t, "0x" + word(0x20) + "ff" + word(1).substr(2) + word(0)).find("too large"), std::string::npos);
  EXPECT_NE(error_of(str, t, "0x" + word(0x20) + word(2) + "c328" + std::string(60, '0')).find("UTF-8"), std::string::npos);
  EXPECT_NE(error_of(str, t, "0x" + word(0x20) + word(2) + "6100" + std::string(60, '0')).find("NUL"), std::string::npos);

  Event small = event("N(uint8 a, bool b, address c, bytes2 d, int8 e)");
  std::vector<Hash32> t2{small.topic0()};
  const std::string ok = word(1) + word(1) + word(2) + ("abcd" + std::string(60, '0')) + std::string(62, 'f') + "ff";
  EXPECT_EQ(error_of(small, t2, "0x" + ok), "decoded");
  EXPECT_NE(error_of(small, t2, "0x" + word(256) + ok.substr(64)).find("does not fit uint8"), std::string::npos);
  EXPECT_NE(error_of(small, t2, "0x" + word(1) + word(2) + ok.substr(128)).find("neither 0 nor 1"), std::string::npos);
  EXPECT_NE(error_of(small, t2, "0x" + ok.substr(0, 128) + ("01" + std::string(62, '0')) + ok.substr(192)).find("upper bytes"),
            std::string::npos);
  EXPECT_NE(error_of(small, t2, "0x" + ok.substr(0, 192) + ("abcd01" + std::string(58, '0')) + ok.substr(256)).find("padding"),
            std::string::npos);
  EXPECT_NE(error_of(small, t2, "0x" + ok.substr(0, 256) + word(0x80)).find("does not fit int8"), std::string::npos);
  EXPECT_NE(error_of(small, t2, "0x" + ok.substr(0, 192)).find("ends before"), std::string::npos);

  // Topic count and topic0.
  EXPECT_NE(error_of(small, {}, "0x" + ok).find("topic count 0"), std::string::npos);
  std::vector<Hash32> wrong{str.topic0()};
  EXPECT_NE(error_of(small, wrong, "0x" + ok).find("topic0"), std::string::npos);
}

TEST(AbiDecode, OffsetsThatShareOnePartCannotBlowUpTheDecoding) {
  // uint256[][] with 64 elements all pointing at one inner array of 64 values: 4,096 values from
  // about 4 KiB of data, which an honest encoding would need 128 KiB for.
  Event e = event("B(uint256[][] xs)");
  std::string d = word(0x20) + word(64);
  const std::size_t inner = 64 * 32;  // relative to the outer array's elements
  for (int i = 0; i < 64; ++i) d += word(inner);
  d += word(64);
  for (int i = 0; i < 64; ++i) d += word(i);
  std::vector<Hash32> t{e.topic0()};
  EXPECT_NE(error_of(e, t, "0x" + d).find("more values than it holds"), std::string::npos);
  // A length no data could hold is refused before anything is reserved for it.
  EXPECT_NE(error_of(e, t, "0x" + word(0x20) + word(1000000)).find("past the data"), std::string::npos);
  EXPECT_NE(error_of(e, t, "0x" + word(0x20) + word(3) + word(0)).find("does not fit"), std::string::npos);
}

// --- a randomised round trip: random types and values, encoded here, decoded by the library ------

struct Encoder {
  std::mt19937_64& rng;

  Type random_type(int depth) {
    int pick = static_cast<int>(rng() % (depth > 0 ? 11 : 8));
    Type t;
    switch (pick) {
      case 0: t.kind = K::kUint; t.bits = 8 * static_cast<unsigned>(1 + rng() % 32); return t;
      case 1: t.kind = K::kInt; t.bits = 8 * static_cast<unsigned>(1 + rng() % 32); return t;
      case 2: t.kind = K::kAddress; return t;
      case 3: t.kind = K::kBool; return t;
      case 4: t.kind = K::kFixedBytes; t.size = static_cast<unsigned>(1 + rng() % 32); return t;
      case 5: t.kind = K::kBytes; return t;
      case 6: t.kind = K::kString; return t;
      case 7: t.kind = K::kUint; t.bits = 256; return t;
      case 8:
      case 9: {
        t.kind = K::kArray;
        t.dynamic_length = pick == 8;
        t.size = t.dynamic_length ? 0 : static_cast<unsigned>(1 + rng() % 3);
        t.elements.push_back(random_type(depth - 1));
        return t;
      }
      default: {
        t.kind = K::kTuple;
        const int n = 1 + static_cast<int>(rng() % 3);
        for (int i = 0; i < n; ++i) {
          t.elements.push_back(random_type(depth - 1));
          t.names.push_back(rng() % 2 ? "c" + std::to_string(i) : "");
        }
        return t;
      }
    }
  }

  // A random value of `t` with its encoding (head and tail as the ABI lays them out).
  Value random_value(const Type& t) {
    Value v;
    switch (t.kind) {
      case K::kUint:
      case K::kInt: {
        // A random magnitude of up to the type's width, as a decimal (small ones often).
        schema::U256 m;
        const unsigned bits = t.kind == K::kInt ? t.bits - 1 : t.bits;
        const unsigned used = rng() % 2 ? bits : static_cast<unsigned>(rng() % (bits + 1));
        for (unsigned b = 0; b < used; ++b)
          if (rng() % 2) m.limbs[b / 64] |= std::uint64_t{1} << (b % 64);
        v.text = m.to_decimal();
        if (t.kind == K::kInt && v.text != "0" && rng() % 2) v.text = "-" + v.text;
        return v;
      }
      case K::kAddress: v.bytes.resize(20); for (auto& b : v.bytes) b = static_cast<std::uint8_t>(rng()); return v;
      case K::kBool: v.boolean = rng() % 2; return v;
      case K::kFixedBytes: v.bytes.resize(t.size); for (auto& b : v.bytes) b = static_cast<std::uint8_t>(rng()); return v;
      case K::kBytes: v.bytes.resize(rng() % 70); for (auto& b : v.bytes) b = static_cast<std::uint8_t>(rng()); return v;
      case K::kString: {
        static const char* pieces[] = {"a", "Z", " ", "é", "☃", "🦀", "\"", "\\", "\n"};
        const std::size_t n = rng() % 12;
        for (std::size_t i = 0; i < n; ++i) v.text += pieces[rng() % 9];
        return v;
      }
      case K::kArray: {
        const std::size_t n = t.dynamic_length ? rng() % 4 : t.size;
        for (std::size_t i = 0; i < n; ++i) v.items.push_back(random_value(t.elements[0]));
        return v;
      }
      case K::kTuple:
        for (const auto& e : t.elements) v.items.push_back(random_value(e));
        return v;
    }
    return v;
  }

  static std::string int_word(const std::string& decimal, bool is_signed) {
    // Decimal to 256-bit two's complement, big-endian bytes.
    bool negative = is_signed && decimal[0] == '-';
    schema::U256 m;
    for (char c : std::string_view(decimal).substr(negative ? 1 : 0)) {
      unsigned __int128 carry = static_cast<unsigned>(c - '0');
      for (auto& l : m.limbs) {
        unsigned __int128 x = static_cast<unsigned __int128>(l) * 10 + carry;
        l = static_cast<std::uint64_t>(x);
        carry = x >> 64;
      }
    }
    if (negative) {
      bool c = true;
      for (auto& l : m.limbs) {
        l = ~l;
        if (c) c = ++l == 0;
      }
    }
    std::string out(32, '\0');
    for (int i = 0; i < 32; ++i) out[31 - i] = static_cast<char>(m.limbs[i / 8] >> (8 * (i % 8)));
    return out;
  }
  static std::string padded(const std::uint8_t* p, std::size_t n, bool left) {
    std::string s(reinterpret_cast<const char*>(p), n);
    const std::size_t pad = (32 - n % 32) % 32;
    return left ? std::string(pad, '\0') + s : s + std::string(pad, '\0');
  }
  static std::string length_word(std::size_t n) { return int_word(std::to_string(n), false); }

  // The encoding of a value of `t` in place (its tail, for a dynamic type).
  static std::string encode(const Type& t, const Value& v) {
    switch (t.kind) {
      case K::kUint: return int_word(v.text, false);
      case K::kInt: return int_word(v.text, true);
      case K::kAddress: return padded(v.bytes.data(), 20, true);
      case K::kBool: return length_word(v.boolean ? 1 : 0);
      case K::kFixedBytes: return padded(v.bytes.data(), v.bytes.size(), false);
      case K::kBytes: return length_word(v.bytes.size()) + padded(v.bytes.data(), v.bytes.size(), false);
      case K::kString:
        return length_word(v.text.size()) + padded(reinterpret_cast<const std::uint8_t*>(v.text.data()), v.text.size(), false);
      case K::kArray: {
        std::vector<const Type*> types(v.items.size(), &t.elements[0]);
        return (t.dynamic_length ? length_word(v.items.size()) : std::string()) + sequence(types, v.items);
      }
      case K::kTuple: {
        std::vector<const Type*> types;
        for (const auto& e : t.elements) types.push_back(&e);
        return sequence(types, v.items);
      }
    }
    return {};
  }
  static std::string sequence(const std::vector<const Type*>& types, const std::vector<Value>& values) {
    std::size_t head_size = 0;
    for (const Type* t : types) head_size += t->head_size();
    std::string head, tail;
    for (std::size_t i = 0; i < types.size(); ++i) {
      if (types[i]->is_dynamic()) {
        head += length_word(head_size + tail.size());
        tail += encode(*types[i], values[i]);
      } else {
        head += encode(*types[i], values[i]);
      }
    }
    return head + tail;
  }
};

TEST(AbiDecode, RandomTypesAndValuesSurviveAnEncodeDecodeRoundTrip) {
  const std::uint64_t seed = 20261205;
  std::mt19937_64 rng(seed);
  Encoder enc{rng};
  for (int round = 0; round < 2000; ++round) {
    Event e;
    e.name = "R";
    const int n = 1 + static_cast<int>(rng() % 4);
    std::vector<Value> values;
    for (int i = 0; i < n; ++i) {
      e.params.push_back(EventParam{"p" + std::to_string(i), enc.random_type(3), false});
      values.push_back(enc.random_value(e.params.back().type));
    }
    std::vector<const Type*> types;
    for (const auto& p : e.params) types.push_back(&p.type);
    const std::string encoded = Encoder::sequence(types, values);
    Bytes data(encoded.begin(), encoded.end());
    std::vector<Hash32> topics{e.topic0()};
    auto decoded = decode_event(e, topics, data);
    ASSERT_TRUE(decoded.ok()) << "seed " << seed << " round " << round << " " << e.signature() << ": " << decoded.error().message;
    ASSERT_EQ(*decoded, values) << "seed " << seed << " round " << round << " " << e.signature();
  }
}

// --- the catalog --------------------------------------------------------------------------------

TEST(EventCatalog, ColumnNamesAreSnakeCaseAndNeverRepeatTheBaseColumns) {
  EXPECT_EQ(snake_case("tokenId"), "token_id");
  EXPECT_EQ(snake_case("_value"), "value");
  EXPECT_EQ(snake_case("URI"), "uri");
  EXPECT_EQ(snake_case("baseURIUpdated"), "base_uri_updated");
  EXPECT_EQ(snake_case("amount0In"), "amount0_in");

  ContractEvents c;
  c.name = "pool";
  c.events.push_back(event("Odd(address indexed block_number, string indexed memo, uint256 tokenId, uint8, bytes token_id)"));
  auto catalog = EventCatalog::build({c});
  ASSERT_TRUE(catalog.ok()) << catalog.error().message;
  const auto& t = catalog->tables().at(0);
  EXPECT_EQ(t.table, "pool_odd");
  std::vector<std::string> names, keys;
  for (const auto& col : t.columns) {
    names.push_back(col.name);
    keys.push_back(col.key);
  }
  EXPECT_EQ(names, (std::vector<std::string>{"block_number_0", "memo_hash", "token_id", "arg3", "token_id_4"}));
  EXPECT_EQ(keys, (std::vector<std::string>{"block_number", "memo_hash", "tokenId", "arg3", "token_id"}));
  EXPECT_TRUE(t.columns[1].hashed);
  EXPECT_EQ(t.columns[1].kind, schema::ArgKind::kBytes);
  EXPECT_EQ(t.columns[2].kind, schema::ArgKind::kInteger);
  EXPECT_FALSE(t.columns[2].json_number);
  EXPECT_TRUE(t.columns[3].json_number);
}

TEST(EventCatalog, OverloadedEventsNeedAChoice) {
  ContractEvents c;
  c.name = "tok";
  c.events = {event("Transfer(address indexed a, uint256 b)"), event("Transfer(address indexed a, address b, uint256 c)")};
  auto catalog = EventCatalog::build({c});
  ASSERT_FALSE(catalog.ok());
  EXPECT_NE(catalog.error().message.find("tok_transfer"), std::string::npos) << catalog.error().message;
}

schema::Log log_of(const schema::Address& address, std::vector<Hash32> topics, std::string_view data_hex, std::uint32_t index) {
  schema::Log g;
  g.address = address;
  for (const auto& t : topics) g.topics.push_back(t);
  g.data = bytes_of(data_hex);
  g.log_index = index;
  return g;
}

TEST(EventCatalog, DecodesChosenEventsOfConfiguredAddressesAndRecordsWhyOthersFailed) {
  const auto token = schema::address_from_hex("0x00000000000000000000000000000000000000aa");
  const auto other = schema::address_from_hex("0x00000000000000000000000000000000000000bb");
  Event transfer = event("Transfer(address indexed from, address indexed to, uint256 value)");
  Event approval = event("Approval(address indexed owner, address indexed spender, uint256 value)");
  Event anon = event("Tick(uint64 indexed a, uint64 indexed b)");
  anon.anonymous = true;
  ContractEvents c;
  c.name = "token";
  c.addresses = {token};
  c.events = {transfer, anon};
  c.abi_topics = {transfer.topic0(), approval.topic0()};
  c.start_block = 10;
  auto catalog = EventCatalog::build({c});
  ASSERT_TRUE(catalog.ok());

  const Hash32 a = schema::hash_from_hex("0x0000000000000000000000000000000000000000000000000000000000000001");
  const Hash32 b = schema::hash_from_hex("0x0000000000000000000000000000000000000000000000000000000000000002");
  schema::Block block;
  block.number = 10;
  block.logs = {
      log_of(token, {transfer.topic0(), a, b}, "0x" + word(5), 0),  // decoded
      log_of(other, {transfer.topic0(), a, b}, "0x" + word(5), 1),  // not a configured address
      log_of(token, {approval.topic0(), a, b}, "0x" + word(5), 2),  // an event not chosen: not even anonymous
      log_of(token, {transfer.topic0(), a, b, b}, "0x", 3),         // ERC-721's Transfer: undecodable
      log_of(token, {a, b}, "0x", 4),                               // the anonymous Tick
  };
  catalog->decode(block);
  ASSERT_EQ(block.events.size(), 3u);
  EXPECT_EQ(block.events[0].log, 0u);
  EXPECT_TRUE(block.events[0].decoded());
  EXPECT_EQ(hex(block.events[0].args[0].bytes), "0x0000000000000000000000000000000000000001");
  EXPECT_EQ(block.events[0].args[2].text, "5");
  EXPECT_EQ(block.events[1].log, 3u);
  EXPECT_FALSE(block.events[1].decoded());
  EXPECT_NE(block.events[1].error.find("topic count 4"), std::string::npos) << block.events[1].error;
  EXPECT_EQ(block.events[2].log, 4u);
  EXPECT_EQ(block.events[2].table, 1u);
  EXPECT_EQ(block.events[2].args[1].text, "2");

  block.number = 9;  // below the contract's start_block
  catalog->decode(block);
  EXPECT_TRUE(block.events.empty());
}

// A factory (static address) whose PoolCreated names pools; a pool's HookMade names hooks.
struct FactoryCase {
  schema::Address factory = schema::address_from_hex("0x00000000000000000000000000000000000000f0");
  schema::Address pool = schema::address_from_hex("0x00000000000000000000000000000000000000a1");
  schema::Address later_pool = schema::address_from_hex("0x00000000000000000000000000000000000000a2");
  schema::Address hook = schema::address_from_hex("0x00000000000000000000000000000000000000b1");
  schema::Address stranger = schema::address_from_hex("0x00000000000000000000000000000000000000cc");
  Event created = event("PoolCreated(address indexed token, uint24 fee, address pool)");
  Event swap = event("Swap(address indexed sender, int256 amount)");
  Event hook_made = event("HookMade(address hook)");
  Event ping = event("Ping(uint256 n)");
  Hash32 token = schema::hash_from_hex("0x00000000000000000000000000000000000000000000000000000000000000d1");
  EventCatalog catalog;

  FactoryCase() {
    ContractEvents f{.name = "factory", .addresses = {factory}, .factory = {}, .events = {created}, .abi_topics = {created.topic0()}};
    ContractEvents p{.name = "pool", .addresses = {}, .factory = FactoryRef{"factory", "PoolCreated", "pool"}, .events = {swap, hook_made},
                     .abi_topics = {swap.topic0(), hook_made.topic0()}};
    ContractEvents h{.name = "hook", .addresses = {}, .factory = FactoryRef{"pool", "HookMade", "hook"}, .events = {ping},
                     .abi_topics = {ping.topic0()}};
    auto built = EventCatalog::build({h, f, p});
    EXPECT_TRUE(built.ok()) << (built.ok() ? "" : built.error().message);
    if (built.ok()) catalog = std::move(*built);
  }
  static std::string address_word(const schema::Address& a) { return std::string(24, '0') + schema::to_hex(a).substr(2); }
  schema::Log pool_created(const schema::Address& made, std::uint32_t index) const {
    return log_of(factory, {created.topic0(), token}, "0x" + word(3000) + address_word(made), index);
  }
  schema::Log swap_of(const schema::Address& from, std::uint32_t index) const {
    return log_of(from, {swap.topic0(), token}, "0x" + word(7), index);
  }
  schema::Block block(std::uint64_t number, std::vector<schema::Log> logs) const {
    schema::Block b;
    b.number = number;
    b.logs = std::move(logs);
    catalog.decode(b);
    return b;
  }
};

// (log index, contract) of each event of a block, in order.
std::vector<std::pair<std::uint64_t, std::string>> events_of(const EventCatalog& c, const schema::Block& b) {
  std::vector<std::pair<std::uint64_t, std::string>> out;
  for (const auto& e : b.events) {
    EXPECT_TRUE(e.decoded()) << e.error;
    out.emplace_back(b.logs.at(e.log).log_index, c.tables()[e.table].contract);
  }
  return out;
}

TEST(EventCatalog, FactoryMadeContractsAreDecodedFromTheBlockTheirFactoryNamesThemOnInLogOrder) {
  FactoryCase fc;
  const EventCatalog& c = fc.catalog;
  ASSERT_TRUE(c.has_factories());
  ASSERT_EQ(c.factory_sources().size(), 2u);
  using Events = std::vector<std::pair<std::uint64_t, std::string>>;
  std::vector<schema::Block> blocks{
      fc.block(5, {fc.swap_of(fc.pool, 0),  // before its factory's event, in the same block: a constructor's log
                   fc.pool_created(fc.pool, 1), fc.swap_of(fc.stranger, 2),
                   log_of(fc.pool, {fc.hook_made.topic0()}, "0x" + FactoryCase::address_word(fc.hook), 3),
                   log_of(fc.hook, {fc.ping.topic0()}, "0x" + word(9), 4)}),
      fc.block(6, {fc.swap_of(fc.pool, 0), fc.swap_of(fc.stranger, 1), fc.swap_of(fc.later_pool, 2)}),
      fc.block(7, {fc.swap_of(fc.stranger, 0), fc.pool_created(fc.later_pool, 1), fc.swap_of(fc.later_pool, 2)}),
  };
  const std::vector<FactoryChild> made = c.decode_children(blocks, FactoryChildren{}, false);
  EXPECT_EQ(made, (std::vector<FactoryChild>{{fc.pool, 2, 5}, {fc.hook, 0, 5}, {fc.later_pool, 2, 7}}));
  EXPECT_EQ(events_of(c, blocks[0]), (Events{{0, "pool"}, {1, "factory"}, {3, "pool"}, {4, "hook"}}));
  EXPECT_EQ(blocks[0].events[0].args[1].text, "7");
  EXPECT_EQ(events_of(c, blocks[1]), (Events{{0, "pool"}}));  // the later pool is not made yet
  EXPECT_EQ(events_of(c, blocks[2]), (Events{{1, "factory"}, {2, "pool"}}));
  EXPECT_EQ(blocks[2].logs.size(), 3u) << "all logs are kept unless asked";

  // Again on the same blocks: the same result (a write retried, a staged block written).
  const std::vector<schema::Block> once = blocks;
  EXPECT_EQ(c.decode_children(blocks, FactoryChildren{}, false), made);
  EXPECT_EQ(blocks, once);

  // Written: the next batch knows them from `known` alone.
  FactoryChildren known;
  for (const auto& m : made) known.add(m);
  known.add({fc.pool, 2, 9});  // made again later: the first block counts
  EXPECT_EQ(known.size(), 3u);
  EXPECT_EQ(known.count(2), 2u);
  std::vector<schema::Block> next{fc.block(8, {fc.swap_of(fc.later_pool, 0), log_of(fc.hook, {fc.ping.topic0()}, "0x" + word(1), 1),
                                               fc.swap_of(fc.stranger, 2), fc.swap_of(fc.pool, 3)})};
  EXPECT_TRUE(c.decode_children(next, known, false).empty());
  EXPECT_EQ(events_of(c, next[0]), (Events{{0, "pool"}, {1, "hook"}, {3, "pool"}}));
  std::vector<schema::Block> unknown{fc.block(8, next[0].logs)};
  c.decode_children(unknown, FactoryChildren{}, false);
  EXPECT_TRUE(unknown[0].events.empty());

  // Logs-only indexing: the logs of no configured or made address go, and events follow their logs.
  std::vector<schema::Block> sparse{fc.block(7, {fc.swap_of(fc.stranger, 0), fc.pool_created(fc.later_pool, 1), fc.swap_of(fc.later_pool, 2)})};
  c.decode_children(sparse, known, true);
  ASSERT_EQ(sparse[0].logs.size(), 2u);
  EXPECT_EQ(events_of(c, sparse[0]), (Events{{1, "factory"}, {2, "pool"}}));
  EXPECT_EQ(sparse[0].events[0].log, 0u);
  EXPECT_EQ(sparse[0].events[1].log, 1u);
}

TEST(EventCatalog, WithFactoriesTheLogFilterAsksByTopicAndTheFactoryChainMustReachAnAddress) {
  FactoryCase fc;
  const EventCatalog::LogFilter f = fc.catalog.log_filter();
  EXPECT_TRUE(f.addresses.empty()) << "the factory-made contracts' addresses are not known ahead";
  std::set<std::string> topics;
  for (const auto& t : f.topic0s) topics.insert(schema::to_hex(t));
  EXPECT_EQ(topics, (std::set<std::string>{schema::to_hex(fc.created.topic0()), schema::to_hex(fc.swap.topic0()),
                                           schema::to_hex(fc.hook_made.topic0()), schema::to_hex(fc.ping.topic0())}));
  EXPECT_TRUE(fc.catalog.wanted(fc.swap_of(fc.stranger, 0))) << "may be a pool's: decode_children decides";
  EXPECT_TRUE(fc.catalog.wanted(fc.pool_created(fc.pool, 0)));
  schema::Log elsewhere = fc.pool_created(fc.pool, 0);
  elsewhere.address = fc.stranger;
  EXPECT_FALSE(fc.catalog.wanted(elsewhere)) << "another factory's PoolCreated";

  // Two contracts made by each other, and no addresses anywhere.
  ContractEvents a{.name = "a", .addresses = {}, .factory = FactoryRef{"b", "Made", "child"}, .events = {event("Made(address child)")}, .abi_topics = {}};
  ContractEvents b{.name = "b", .addresses = {}, .factory = FactoryRef{"a", "Made", "child"}, .events = {event("Made(address child)")}, .abi_topics = {}};
  auto cycle = EventCatalog::build({a, b});
  ASSERT_FALSE(cycle.ok());
  EXPECT_NE(cycle.error().message.find("its factories make each other and none has addresses"), std::string::npos) << cycle.error().message;
  a.factory->parameter = "nope";
  auto wrong = EventCatalog::build({a, b});
  ASSERT_FALSE(wrong.ok());
  EXPECT_EQ(wrong.error().message, "contract a, factory.parameter: Made(address) has no parameter named \"nope\"");
}

}  // namespace
}  // namespace chainidx::abi

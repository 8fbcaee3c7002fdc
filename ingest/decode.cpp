#include "ingest/decode.hpp"

#include <emmintrin.h>
#include <simdjson.h>

#include <array>
#include <bit>
#include <cstring>
#include <span>

namespace chainidx::ingest {
namespace {

namespace od = simdjson::ondemand;
using schema::Address;
using schema::Bloom;
using schema::Bytes;
using schema::Error;
using schema::Hash32;
using schema::U256;

// Thrown inside this file only, caught at each public entry point and turned into an Error.
struct DecodeFailure {
  std::string message;
};

[[noreturn]] void fail(std::string_view object, std::string_view field, std::string_view what) {
  std::string m;
  m.append(object).append(".").append(field).append(": ").append(what);
  throw DecodeFailure{std::move(m)};
}

/// One key an object may have; `required` ones must be there.
struct Key {
  std::string_view name;
  bool required = false;
};

/// The keys of one kind of object. `keys["name"]` is a key's index, at compile time (a name that
/// is not in the set does not compile), so a decoder switches on indices rather than comparing
/// strings.
template <std::size_t N>
struct KeySet {
  static_assert(N <= 63, "the seen-key mask has 64 bits");
  /// A key as it appears in JSON after its opening quote (the name and the closing quote),
  /// zero-filled to 32 bytes for a two-vector comparison.
  struct Quoted {
    alignas(16) std::array<char, 32> text{};
    std::uint32_t mask = 0;  ///< one bit per byte of name and closing quote
  };
  std::array<Key, N> keys;
  std::array<Quoted, N> quoted;
  static constexpr std::size_t size = N;
  consteval std::size_t operator[](std::string_view name) const {
    for (std::size_t i = 0; i < N; ++i)
      if (keys[i].name == name) return i;
    throw "not a key of this object";
  }
  /// Whether the JSON text at `raw` (past an opening quote, with 32 readable bytes: the parser's
  /// padding guarantees them) is key i and its closing quote.
  bool at(std::size_t i, const char* raw) const {
    const __m128i lo = _mm_cmpeq_epi8(_mm_loadu_si128(reinterpret_cast<const __m128i*>(raw)),
                                      _mm_load_si128(reinterpret_cast<const __m128i*>(quoted[i].text.data())));
    const __m128i hi = _mm_cmpeq_epi8(_mm_loadu_si128(reinterpret_cast<const __m128i*>(raw + 16)),
                                      _mm_load_si128(reinterpret_cast<const __m128i*>(quoted[i].text.data() + 16)));
    const auto equal = static_cast<std::uint32_t>(_mm_movemask_epi8(lo)) | (static_cast<std::uint32_t>(_mm_movemask_epi8(hi)) << 16);
    return (equal & quoted[i].mask) == quoted[i].mask;
  }
};
template <class... K>
consteval KeySet<sizeof...(K)> key_set(K... k) {
  KeySet<sizeof...(K)> set{{Key(k)...}, {}};
  for (std::size_t i = 0; i < sizeof...(K); ++i) {
    const std::string_view name = set.keys[i].name;
    if (name.size() > 30) throw "a key longer than 30 bytes";
    for (std::size_t c = 0; c < name.size(); ++c) set.quoted[i].text[c] = name[c];
    set.quoted[i].text[name.size()] = '"';
    set.quoted[i].mask = (1u << (name.size() + 1)) - 1;
  }
  return set;
}

/// The order in which one thread last saw an object's keys: nodes write the keys of an object
/// in the same order every time, so the key that followed the previous one last time is tried
/// first, and a field costs one comparison once the order is known. Index N stands for the
/// opening brace (and for an unknown key).
template <std::size_t N>
struct KeyOrder {
  std::array<std::uint8_t, N + 1> next{};
};

/// Reads one JSON object's values and names the object and the key in every error.
class Reader {
 public:
  explicit Reader(std::string_view object) : object_(object) {}

  std::string_view object() const { return object_; }

  // A hex string's characters, read in place from the input (no unescaping copy). Hex needs no
  // escapes, so a string with a backslash is left as it is and refused by the hex parser.
  std::string_view str(od::value v, std::string_view key) const {
    std::string_view t = v.raw_json_token();
    if (t.empty() || t.front() != '"') fail(object_, key, "expected a string");
    while (t.size() > 1 && (t.back() == ' ' || t.back() == '\n' || t.back() == '\r' || t.back() == '\t')) t.remove_suffix(1);
    if (t.size() < 2 || t.back() != '"') fail(object_, key, "expected a string");
    return t.substr(1, t.size() - 2);
  }
  bool is_null(od::value v) const {
    bool n = false;
    return !v.is_null().get(n) && n;
  }
  std::uint64_t u64(od::value v, std::string_view key) const {
    std::uint64_t out;
    if (!schema::parse_quantity(str(v, key), out)) fail(object_, key, "expected a hex quantity below 2^64");
    return out;
  }
  std::uint32_t u32(od::value v, std::string_view key) const {
    std::uint64_t out = u64(v, key);
    if (out > 0xffffffffu) fail(object_, key, "out of range");
    return static_cast<std::uint32_t>(out);
  }
  std::uint8_t u8(od::value v, std::string_view key) const {
    std::uint64_t out = u64(v, key);
    if (out > 0xffu) fail(object_, key, "out of range");
    return static_cast<std::uint8_t>(out);
  }
  U256 u256(od::value v, std::string_view key) const {
    U256 out;
    if (!schema::parse_quantity(str(v, key), out)) fail(object_, key, "expected a hex quantity below 2^256");
    return out;
  }
  template <std::size_t M>
  schema::FixedBytes<M> fixed(od::value v, std::string_view key) const {
    schema::FixedBytes<M> out;
    if (!schema::parse_fixed(str(v, key), out)) fail(object_, key, "expected " + std::to_string(M) + " bytes of hex");
    return out;
  }
  Hash32 hash(od::value v, std::string_view key) const { return fixed<32>(v, key); }
  Address address(od::value v, std::string_view key) const { return fixed<20>(v, key); }
  std::optional<Address> opt_address(od::value v, std::string_view key) const {
    if (is_null(v)) return std::nullopt;
    return address(v, key);
  }
  Bytes data(od::value v, std::string_view key) const {
    Bytes out;
    if (!schema::parse_data(str(v, key), out)) fail(object_, key, "expected even-length hex");
    return out;
  }

 private:
  std::string_view object_;
};

/// A Reader that also tells which key of its set each field is and which required ones it saw.
template <std::size_t N>
class Fields : public Reader {
 public:
  Fields(std::string_view object, const KeySet<N>& set, KeyOrder<N>& order) : Reader(object), set_(set), order_(order) {
    for (std::size_t i = 0; i < N; ++i)
      if (set.keys[i].required) missing_ |= 1ull << i;
  }

  /// The index of the key whose text starts at `raw` (just past its opening quote) when it is
  /// the one that followed the previous key last time, N otherwise. Compares in place: no scan
  /// for the closing quote, no unescaping.
  std::size_t predicted(const char* raw) {
    const std::size_t i = order_.next[previous_];
    if (i >= N) return N;
    if (!set_.at(i, raw)) return N;
    seen(i);
    return i;
  }
  /// The index of `key` in the set, or N for a key the decoder does not read; learnt as the key
  /// that follows the previous one.
  std::size_t which(std::string_view key) {
    std::size_t i = 0;
    while (i < N && set_.keys[i].name != key) ++i;
    order_.next[previous_] = static_cast<std::uint8_t>(i);
    seen(i);
    return i;
  }
  std::string_view name(std::size_t i) const { return set_.keys[i].name; }
  void seen(std::size_t i) {
    previous_ = i;
    if (i < N) missing_ &= ~(1ull << i);
  }
  void check_complete() const {
    if (missing_) fail(object(), set_.keys[static_cast<std::size_t>(std::countr_zero(missing_))].name, "missing");
  }

 private:
  const KeySet<N>& set_;
  KeyOrder<N>& order_;
  std::size_t previous_ = N;
  std::uint64_t missing_ = 0;
};

od::object as_object(od::value v, std::string_view what) {
  od::object o;
  if (v.get_object().get(o)) throw DecodeFailure{std::string(what) + ": expected an object"};
  return o;
}

od::array as_array(od::value v, std::string_view what) {
  od::array a;
  if (v.get_array().get(a)) throw DecodeFailure{std::string(what) + ": expected an array"};
  return a;
}

// An object key, read in place when it has no escape (every key a node writes), unescaped
// otherwise. The scan stops at the closing quote, which simdjson's first stage has found.
std::string_view key_of(simdjson::simdjson_result<od::field>& field) {
  if (field.error()) throw DecodeFailure{"malformed object key"};
  const char* start = field.value_unsafe().key().raw();
  for (const char* p = start;; ++p) {
    if (*p == '"') return std::string_view(start, static_cast<std::size_t>(p - start));
    if (*p == '\\') break;
  }
  std::string_view key;
  if (field.unescaped_key().get(key)) throw DecodeFailure{"malformed object key"};
  return key;
}

// Visits every field of `obj` (in whatever order the node wrote them) with its index in the
// key set, then checks that the required ones were all there.
template <std::size_t N, class OnField>
void for_each_field(od::object obj, Fields<N>& f, OnField&& on_field) {
  for (auto field : obj) {
    if (field.error()) throw DecodeFailure{"malformed object key"};
    std::size_t i = f.predicted(field.value_unsafe().key().raw());
    std::string_view key;
    if (i < N) {
      key = f.name(i);
    } else {
      key = key_of(field);
      i = f.which(key);
    }
    on_field(i, key, od::value(field.value()));
  }
  f.check_complete();
}

// The keys of each object, in the order geth, reth and anvil write them (the order only makes
// the first object of a kind cheaper; any order decodes).
constexpr auto kLogKeys = key_set(Key{"address", true}, Key{"topics", true}, Key{"data", true}, Key{"blockHash", true},
                                  Key{"blockNumber", true}, Key{"blockTimestamp"}, Key{"transactionHash", true},
                                  Key{"transactionIndex", true}, Key{"logIndex", true}, Key{"removed"});

schema::Log decode_log_object(od::object obj, std::optional<std::uint64_t>* block_timestamp = nullptr) {
  constexpr const auto& K = kLogKeys;
  thread_local KeyOrder<K.size> order;
  Fields f("log", K, order);
  schema::Log log;
  for_each_field(obj, f, [&](std::size_t i, std::string_view key, od::value v) {
    switch (i) {
      case K["address"]: log.address = f.address(v, key); break;
      case K["topics"]:
        for (auto t : as_array(v, "log.topics")) {
          if (log.topics.full()) fail(f.object(), key, "more than 4 topics");
          log.topics.push_back(f.hash(t.value(), key));
        }
        break;
      case K["data"]: log.data = f.data(v, key); break;
      case K["blockHash"]: log.block_hash = f.hash(v, key); break;
      case K["blockNumber"]: log.block_number = f.u64(v, key); break;
      case K["transactionHash"]: log.transaction_hash = f.hash(v, key); break;
      case K["transactionIndex"]: log.transaction_index = f.u32(v, key); break;
      case K["logIndex"]: log.log_index = f.u32(v, key); break;
      case K["removed"]: {
        bool removed = false;
        if (v.get_bool().get(removed)) fail(f.object(), key, "expected a boolean");
        if (removed) fail(f.object(), key, "a removed log in a confirmed-block query");
        break;
      }
      case K["blockTimestamp"]:
        if (block_timestamp) *block_timestamp = f.u64(v, key);
        break;
      default: break;  // keys of other node families: not kept
    }
  });
  return log;
}

constexpr auto kAccessListKeys = key_set(Key{"address", true}, Key{"storageKeys", true});

std::vector<schema::AccessListEntry> decode_access_list(od::value v) {
  constexpr const auto& K = kAccessListKeys;
  thread_local KeyOrder<K.size> order;
  std::vector<schema::AccessListEntry> out;
  for (auto item : as_array(v, "transaction.accessList")) {
    Fields f("transaction.accessList[]", K, order);
    schema::AccessListEntry e;
    for_each_field(as_object(od::value(item.value()), "transaction.accessList[]"), f, [&](std::size_t i, std::string_view key, od::value fv) {
      if (i == K["address"]) e.address = f.address(fv, key);
      else if (i == K["storageKeys"])
        for (auto k : as_array(fv, "transaction.accessList[].storageKeys")) e.storage_keys.push_back(f.hash(od::value(k.value()), key));
    });
    out.push_back(std::move(e));
  }
  return out;
}

// `yParity`, or `v` as some nodes call it; one of them is required (checked after the fields).
constexpr auto kAuthorizationKeys = key_set(Key{"chainId", true}, Key{"address", true}, Key{"nonce", true}, Key{"yParity"}, Key{"v"},
                                            Key{"r", true}, Key{"s", true});

std::vector<schema::Authorization> decode_authorization_list(od::value v) {
  constexpr const auto& K = kAuthorizationKeys;
  thread_local KeyOrder<K.size> order;
  std::vector<schema::Authorization> out;
  for (auto item : as_array(v, "transaction.authorizationList")) {
    Fields f("transaction.authorizationList[]", K, order);
    schema::Authorization a;
    bool parity = false;
    for_each_field(as_object(od::value(item.value()), "transaction.authorizationList[]"), f, [&](std::size_t i, std::string_view key, od::value fv) {
      switch (i) {
        case K["chainId"]: a.chain_id = f.u256(fv, key); break;
        case K["address"]: a.address = f.address(fv, key); break;
        case K["nonce"]: a.nonce = f.u64(fv, key); break;
        case K["yParity"]:
        case K["v"]:
          a.y_parity = f.u8(fv, key);
          parity = true;
          break;
        case K["r"]: a.r = f.u256(fv, key); break;
        case K["s"]: a.s = f.u256(fv, key); break;
        default: break;
      }
    });
    if (!parity) throw DecodeFailure{"transaction.authorizationList[]: yParity: missing"};
    out.push_back(a);
  }
  return out;
}

constexpr auto kTransactionKeys =
    key_set(Key{"type"}, Key{"chainId"}, Key{"nonce", true}, Key{"gas", true}, Key{"maxFeePerGas"}, Key{"maxPriorityFeePerGas"},
            Key{"to"}, Key{"value", true}, Key{"accessList"}, Key{"maxFeePerBlobGas"}, Key{"blobVersionedHashes"},
            Key{"authorizationList"}, Key{"input", true}, Key{"r"}, Key{"s"}, Key{"yParity"}, Key{"v"}, Key{"hash", true},
            Key{"blockHash", true}, Key{"blockNumber", true}, Key{"transactionIndex", true}, Key{"from", true}, Key{"gasPrice"});

schema::Transaction decode_transaction_object(od::object obj) {
  constexpr const auto& K = kTransactionKeys;
  thread_local KeyOrder<K.size> order;
  Fields f("transaction", K, order);
  schema::Transaction tx;
  for_each_field(obj, f, [&](std::size_t i, std::string_view key, od::value v) {
    switch (i) {
      case K["hash"]: tx.hash = f.hash(v, key); break;
      case K["blockHash"]: tx.block_hash = f.hash(v, key); break;
      case K["blockNumber"]: tx.block_number = f.u64(v, key); break;
      case K["transactionIndex"]: tx.transaction_index = f.u32(v, key); break;
      case K["from"]: tx.from_address = f.address(v, key); break;
      case K["to"]: tx.to_address = f.opt_address(v, key); break;
      case K["value"]: tx.value = f.u256(v, key); break;
      case K["gas"]: tx.gas = f.u64(v, key); break;
      case K["gasPrice"]: tx.gas_price = f.u256(v, key); break;
      case K["maxFeePerGas"]: tx.max_fee_per_gas = f.u256(v, key); break;
      case K["maxPriorityFeePerGas"]: tx.max_priority_fee_per_gas = f.u256(v, key); break;
      case K["input"]: tx.input = f.data(v, key); break;
      case K["nonce"]: tx.nonce = f.u64(v, key); break;
      case K["type"]: tx.type = f.u8(v, key); break;
      case K["v"]: tx.v = f.u256(v, key); break;
      case K["r"]: tx.r = f.u256(v, key); break;
      case K["s"]: tx.s = f.u256(v, key); break;
      case K["yParity"]: tx.y_parity = f.u8(v, key); break;
      case K["chainId"]:
        if (!f.is_null(v)) tx.chain_id = f.u64(v, key);
        break;
      case K["accessList"]: tx.access_list = decode_access_list(v); break;
      case K["maxFeePerBlobGas"]: tx.max_fee_per_blob_gas = f.u256(v, key); break;
      case K["blobVersionedHashes"]:
        for (auto h : as_array(v, "transaction.blobVersionedHashes")) tx.blob_versioned_hashes.push_back(f.hash(od::value(h.value()), key));
        break;
      case K["authorizationList"]: tx.authorization_list = decode_authorization_list(v); break;
      default: break;
    }
  });
  return tx;
}

constexpr auto kWithdrawalKeys = key_set(Key{"index", true}, Key{"validatorIndex", true}, Key{"address", true}, Key{"amount", true});

std::vector<schema::Withdrawal> decode_withdrawals(od::value v) {
  constexpr const auto& K = kWithdrawalKeys;
  thread_local KeyOrder<K.size> order;
  std::vector<schema::Withdrawal> out;
  for (auto item : as_array(v, "block.withdrawals")) {
    Fields f("withdrawal", K, order);
    schema::Withdrawal w;
    for_each_field(as_object(item.value(), "block.withdrawals[]"), f, [&](std::size_t i, std::string_view key, od::value fv) {
      switch (i) {
        case K["index"]: w.index = f.u64(fv, key); break;
        case K["validatorIndex"]: w.validator_index = f.u64(fv, key); break;
        case K["address"]: w.address = f.address(fv, key); break;
        case K["amount"]: w.amount_gwei = f.u64(fv, key); break;
        default: break;
      }
    });
    out.push_back(w);
  }
  return out;
}

constexpr auto kBlockKeys = key_set(
    Key{"hash", true}, Key{"parentHash", true}, Key{"sha3Uncles", true}, Key{"miner", true}, Key{"stateRoot", true},
    Key{"transactionsRoot", true}, Key{"receiptsRoot", true}, Key{"logsBloom", true}, Key{"difficulty"}, Key{"number", true},
    Key{"gasLimit", true}, Key{"gasUsed", true}, Key{"timestamp", true}, Key{"extraData", true}, Key{"mixHash", true},
    Key{"nonce", true}, Key{"baseFeePerGas"}, Key{"withdrawalsRoot"}, Key{"blobGasUsed"}, Key{"excessBlobGas"},
    Key{"parentBeaconBlockRoot"}, Key{"requestsHash"}, Key{"totalDifficulty"}, Key{"size"}, Key{"uncles"},
    Key{"transactions", true}, Key{"withdrawals"});

schema::Block decode_block_object(od::object obj) {
  constexpr const auto& K = kBlockKeys;
  thread_local KeyOrder<K.size> order;
  Fields f("block", K, order);
  schema::Block b;
  for_each_field(obj, f, [&](std::size_t i, std::string_view key, od::value v) {
    switch (i) {
      case K["number"]: b.number = f.u64(v, key); break;
      case K["hash"]: b.hash = f.hash(v, key); break;
      case K["parentHash"]: b.parent_hash = f.hash(v, key); break;
      case K["timestamp"]: b.timestamp = f.u64(v, key); break;
      case K["miner"]: b.miner = f.address(v, key); break;
      case K["gasLimit"]: b.gas_limit = f.u64(v, key); break;
      case K["gasUsed"]: b.gas_used = f.u64(v, key); break;
      case K["baseFeePerGas"]: b.base_fee_per_gas = f.u256(v, key); break;
      case K["difficulty"]: b.difficulty = f.u256(v, key); break;
      case K["stateRoot"]: b.state_root = f.hash(v, key); break;
      case K["transactionsRoot"]: b.transactions_root = f.hash(v, key); break;
      case K["receiptsRoot"]: b.receipts_root = f.hash(v, key); break;
      case K["logsBloom"]: b.logs_bloom = f.fixed<256>(v, key); break;
      case K["extraData"]: b.extra_data = f.data(v, key); break;
      case K["size"]: b.size = f.u64(v, key); break;
      case K["blobGasUsed"]: b.blob_gas_used = f.u64(v, key); break;
      case K["excessBlobGas"]: b.excess_blob_gas = f.u64(v, key); break;
      case K["parentBeaconBlockRoot"]: b.parent_beacon_block_root = f.hash(v, key); break;
      case K["withdrawalsRoot"]: b.withdrawals_root = f.hash(v, key); break;
      case K["requestsHash"]: b.requests_hash = f.hash(v, key); break;
      case K["withdrawals"]:
        if (!f.is_null(v)) b.withdrawals = decode_withdrawals(v);
        break;
      case K["totalDifficulty"]:
        if (!f.is_null(v)) b.total_difficulty = f.u256(v, key);
        break;
      case K["sha3Uncles"]: b.sha3_uncles = f.hash(v, key); break;
      case K["mixHash"]: b.mix_hash = f.hash(v, key); break;
      case K["nonce"]: b.nonce = f.fixed<8>(v, key); break;
      case K["transactions"]:
        for (auto item : as_array(v, "block.transactions")) {
          od::value tv = item.value();
          od::json_type type;
          if (tv.type().get(type)) fail(f.object(), key, "malformed element");
          if (type == od::json_type::string) {
            b.transaction_hashes.push_back(f.hash(tv, key));
          } else {
            b.transactions.push_back(decode_transaction_object(as_object(tv, "block.transactions[]")));
            b.transaction_hashes.push_back(b.transactions.back().hash);
          }
        }
        break;
      default: break;  // uncles (their hashes are in sha3Uncles) and keys of other node families
    }
  });
  b.transaction_count = static_cast<std::uint32_t>(b.transaction_hashes.size());
  // Block numbers and timestamps travel as JSON numbers (schema/kafka/README.md), exact only
  // below 2^53; no chain comes near (2^53 seconds is 285 million years), so a value above is a
  // hostile or broken answer.
  constexpr std::uint64_t kMaxExactJson = (1ull << 53) - 1;
  if (b.number > kMaxExactJson) throw DecodeFailure{"block.number: " + std::to_string(b.number) + " is above 2^53 - 1"};
  if (b.timestamp > kMaxExactJson) throw DecodeFailure{"block.timestamp: " + std::to_string(b.timestamp) + " is above 2^53 - 1"};
  for (std::size_t i = 0; i < b.transactions.size(); ++i) {
    const auto& tx = b.transactions[i];
    if (tx.block_hash != b.hash || tx.block_number != b.number)
      throw DecodeFailure{"block.transactions[" + std::to_string(i) + "]: belongs to another block"};
    if (tx.transaction_index != i)
      throw DecodeFailure{"block.transactions[" + std::to_string(i) + "]: transactionIndex out of order"};
  }
  return b;
}

// Every receipt shape since Frontier: `from` and `to` are absent in some old recordings,
// `status` is absent or null (Parity / OpenEthereum) before Byzantium, where `root` is kept.
constexpr auto kReceiptKeys =
    key_set(Key{"type"}, Key{"status"}, Key{"root"}, Key{"cumulativeGasUsed", true}, Key{"logs", true}, Key{"logsBloom", true},
            Key{"transactionHash", true}, Key{"transactionIndex", true}, Key{"blockHash", true}, Key{"blockNumber", true},
            Key{"gasUsed", true}, Key{"effectiveGasPrice"}, Key{"from"}, Key{"to"}, Key{"contractAddress"});

Receipt decode_receipt_object(od::object obj) {
  constexpr const auto& K = kReceiptKeys;
  thread_local KeyOrder<K.size> order;
  Fields f("receipt", K, order);
  Receipt r;
  for_each_field(obj, f, [&](std::size_t i, std::string_view key, od::value v) {
    switch (i) {
      case K["transactionHash"]: r.transaction_hash = f.hash(v, key); break;
      case K["transactionIndex"]: r.transaction_index = f.u32(v, key); break;
      case K["blockHash"]: r.block_hash = f.hash(v, key); break;
      case K["blockNumber"]: r.block_number = f.u64(v, key); break;
      case K["from"]: r.from_address = f.opt_address(v, key); break;
      case K["to"]: r.to_address = f.opt_address(v, key); break;
      case K["status"]:
        if (!f.is_null(v)) r.status = f.u8(v, key);
        break;
      case K["root"]:
        if (!f.is_null(v)) r.root = f.hash(v, key);
        break;
      case K["gasUsed"]: r.gas_used = f.u64(v, key); break;
      case K["cumulativeGasUsed"]: r.cumulative_gas_used = f.u64(v, key); break;
      case K["effectiveGasPrice"]: r.effective_gas_price = f.u256(v, key); break;
      case K["contractAddress"]: r.contract_address = f.opt_address(v, key); break;
      case K["type"]: r.type = f.u8(v, key); break;
      case K["logsBloom"]: r.logs_bloom = f.fixed<256>(v, key); break;
      case K["logs"]:
        for (auto item : as_array(v, "receipt.logs")) r.logs.push_back(decode_log_object(as_object(item.value(), "receipt.logs[]")));
        break;
      default: break;
    }
  });
  return r;
}

// Runs `body` on the parsed document, turning every failure into an Error that says what
// was being decoded. simdjson reads SIMDJSON_PADDING bytes past the text: text without them
// is copied.
template <class T, class Body>
schema::Result<T> with_document(JsonText json, std::string_view what, Body&& body) {
  static_assert(kJsonPadding >= simdjson::SIMDJSON_PADDING);
  thread_local od::parser parser;
  std::optional<simdjson::padded_string> copy;
  simdjson::padded_string_view text;
  if (json.padded()) {
    text = simdjson::padded_string_view(json.text().data(), json.text().size(), json.text().size() + kJsonPadding);
  } else {
    copy.emplace(json.text());
    text = *copy;
  }
  try {
    od::document doc;
    if (auto err = parser.iterate(text).get(doc)) return Error{std::string(what) + ": " + simdjson::error_message(err)};
    T out = body(doc);
    return out;
  } catch (const DecodeFailure& e) {
    return Error{std::string(what) + ": " + e.message};
  } catch (const simdjson::simdjson_error& e) {
    return Error{std::string(what) + ": malformed JSON (" + e.what() + ")"};
  }
}

bool document_is_null(od::document& doc) {
  bool n = false;
  return !doc.is_null().get(n) && n;
}

od::value document_value(od::document& doc) {
  od::value v;
  if (doc.get_value().get(v)) throw DecodeFailure{"malformed JSON"};
  return v;
}

}  // namespace

schema::Result<std::optional<schema::Block>> decode_block(JsonText json) {
  return with_document<std::optional<schema::Block>>(json, "block", [](od::document& doc) -> std::optional<schema::Block> {
    if (document_is_null(doc)) return std::nullopt;
    return decode_block_object(as_object(document_value(doc), "block"));
  });
}

schema::Result<std::optional<std::vector<Receipt>>> decode_receipts(JsonText json) {
  return with_document<std::optional<std::vector<Receipt>>>(
      json, "receipts", [](od::document& doc) -> std::optional<std::vector<Receipt>> {
        if (document_is_null(doc)) return std::nullopt;
        std::vector<Receipt> out;
        for (auto item : as_array(document_value(doc), "receipts"))
          out.push_back(decode_receipt_object(as_object(item.value(), "receipts[]")));
        return out;
      });
}

schema::Result<std::optional<Receipt>> decode_receipt(JsonText json) {
  return with_document<std::optional<Receipt>>(json, "receipt", [](od::document& doc) -> std::optional<Receipt> {
    if (document_is_null(doc)) return std::nullopt;
    return decode_receipt_object(as_object(document_value(doc), "receipt"));
  });
}

schema::Result<std::vector<schema::Log>> decode_logs(JsonText json) {
  return with_document<std::vector<schema::Log>>(json, "logs", [](od::document& doc) {
    std::vector<schema::Log> out;
    for (auto item : as_array(document_value(doc), "logs")) out.push_back(decode_log_object(as_object(item.value(), "logs[]")));
    return out;
  });
}

schema::Result<TimedLogs> decode_timed_logs(JsonText json) {
  return with_document<TimedLogs>(json, "logs", [](od::document& doc) {
    TimedLogs out;
    for (auto item : as_array(document_value(doc), "logs")) {
      std::optional<std::uint64_t> t;
      out.logs.push_back(decode_log_object(as_object(item.value(), "logs[]"), &t));
      out.block_timestamps.push_back(t);
    }
    return out;
  });
}

namespace {
constexpr auto kHeadKeys = key_set(Key{"hash", true}, Key{"parentHash", true}, Key{"number", true});
}  // namespace

schema::Result<std::optional<schema::BlockRef>> decode_new_head(JsonText message) {
  return with_document<std::optional<schema::BlockRef>>(message, "newHeads", [](od::document& doc) -> std::optional<schema::BlockRef> {
    od::object top = as_object(document_value(doc), "newHeads");
    bool notification = false;
    std::optional<schema::BlockRef> head;
    for (auto field : top) {
      std::string_view key = key_of(field);
      if (key == "method") {
        std::string_view m;
        notification = !field.value().get_string().get(m) && m == "eth_subscription";
      } else if (key == "params") {
        for (auto pf : as_object(field.value(), "newHeads.params")) {
          if (key_of(pf) != "result") continue;
          constexpr const auto& K = kHeadKeys;
          thread_local KeyOrder<K.size> order;
          Fields f("newHeads.result", K, order);
          schema::BlockRef ref;
          for (auto hf : as_object(pf.value(), "newHeads.result")) {
            std::string_view hk = key_of(hf);
            switch (f.which(hk)) {
              case K["number"]: ref.number = f.u64(hf.value(), hk); break;
              case K["hash"]: ref.hash = f.hash(hf.value(), hk); break;
              case K["parentHash"]: ref.parent_hash = f.hash(hf.value(), hk); break;
              default: break;
            }
          }
          f.check_complete();
          head = ref;
        }
      }
    }
    if (!notification) return std::nullopt;
    if (!head) throw DecodeFailure{"notification without params.result"};
    return head;
  });
}

schema::Result<std::uint64_t> decode_quantity(JsonText json) {
  return with_document<std::uint64_t>(json, "quantity", [](od::document& doc) {
    std::string_view s;
    if (doc.get_string().get(s)) throw DecodeFailure{"expected a string"};
    std::uint64_t out;
    if (!schema::parse_quantity(s, out)) throw DecodeFailure{"expected a hex quantity"};
    return out;
  });
}

}  // namespace chainidx::ingest

#include "ingest/decode.hpp"

#include <simdjson.h>

#include <array>
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

/// Reads one JSON object's fields in any order and remembers which required ones it saw.
class Fields {
 public:
  Fields(std::string_view object, std::span<const std::string_view> required)
      : object_(object), required_(required) {}

  std::string_view object() const { return object_; }

  void saw(std::string_view key) {
    std::size_t i = 0;
    for (auto r : required_) {
      if (r == key) seen_ |= 1ull << i;
      ++i;
    }
  }
  void check_complete() const {
    std::size_t i = 0;
    for (auto r : required_) {
      if (!(seen_ & (1ull << i))) fail(object_, r, "missing");
      ++i;
    }
  }

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
  template <std::size_t N>
  schema::FixedBytes<N> fixed(od::value v, std::string_view key) const {
    schema::FixedBytes<N> out;
    if (!schema::parse_fixed(str(v, key), out)) fail(object_, key, "expected " + std::to_string(N) + " bytes of hex");
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
  std::span<const std::string_view> required_;  // static arrays below
  std::uint64_t seen_ = 0;
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

// Visits every field of `obj` (in whatever order the node wrote them), then checks that the
// required ones were all there.
template <class OnField>
void for_each_field(od::object obj, Fields& f, OnField&& on_field) {
  for (auto field : obj) {
    std::string_view key = key_of(field);
    f.saw(key);
    on_field(key, od::value(field.value()));
  }
  f.check_complete();
}

schema::Log decode_log_object(od::object obj) {
  static constexpr std::array<std::string_view, 8> kLogRequired = {"address", "topics", "data", "blockHash", "blockNumber", "transactionHash", "transactionIndex",
                   "logIndex"};
  Fields f("log", kLogRequired);
  schema::Log log;
  for_each_field(obj, f, [&](std::string_view key, od::value v) {
    if (key == "address") log.address = f.address(v, key);
    else if (key == "topics") {
      for (auto t : as_array(v, "log.topics")) {
        if (log.topics.size() == 4) fail(f.object(), key, "more than 4 topics");
        log.topics.push_back(f.hash(t.value(), key));
      }
    } else if (key == "data") log.data = f.data(v, key);
    else if (key == "blockHash") log.block_hash = f.hash(v, key);
    else if (key == "blockNumber") log.block_number = f.u64(v, key);
    else if (key == "transactionHash") log.transaction_hash = f.hash(v, key);
    else if (key == "transactionIndex") log.transaction_index = f.u32(v, key);
    else if (key == "logIndex") log.log_index = f.u32(v, key);
    else if (key == "removed") {
      bool removed = false;
      if (v.get_bool().get(removed)) fail(f.object(), key, "expected a boolean");
      if (removed) fail(f.object(), key, "a removed log in a confirmed-block query");
    }
  });
  return log;
}

std::vector<schema::AccessListEntry> decode_access_list(od::value v) {
  static constexpr std::array<std::string_view, 2> kRequired = {"address", "storageKeys"};
  std::vector<schema::AccessListEntry> out;
  for (auto item : as_array(v, "transaction.accessList")) {
    Fields f("transaction.accessList[]", kRequired);
    schema::AccessListEntry e;
    for_each_field(as_object(od::value(item.value()), "transaction.accessList[]"), f, [&](std::string_view key, od::value fv) {
      if (key == "address") e.address = f.address(fv, key);
      else if (key == "storageKeys")
        for (auto k : as_array(fv, "transaction.accessList[].storageKeys")) e.storage_keys.push_back(f.hash(od::value(k.value()), key));
    });
    out.push_back(std::move(e));
  }
  return out;
}

std::vector<schema::Authorization> decode_authorization_list(od::value v) {
  static constexpr std::array<std::string_view, 5> kRequired = {"chainId", "address", "nonce", "r", "s"};
  std::vector<schema::Authorization> out;
  for (auto item : as_array(v, "transaction.authorizationList")) {
    Fields f("transaction.authorizationList[]", kRequired);
    schema::Authorization a;
    bool parity = false;
    for_each_field(as_object(od::value(item.value()), "transaction.authorizationList[]"), f, [&](std::string_view key, od::value fv) {
      if (key == "chainId") a.chain_id = f.u256(fv, key);
      else if (key == "address") a.address = f.address(fv, key);
      else if (key == "nonce") a.nonce = f.u64(fv, key);
      else if (key == "yParity" || key == "v") {
        a.y_parity = f.u8(fv, key);
        parity = true;
      } else if (key == "r") a.r = f.u256(fv, key);
      else if (key == "s") a.s = f.u256(fv, key);
    });
    if (!parity) throw DecodeFailure{"transaction.authorizationList[]: yParity: missing"};
    out.push_back(a);
  }
  return out;
}

schema::Transaction decode_transaction_object(od::object obj) {
  static constexpr std::array<std::string_view, 9> kTransactionRequired = {"hash", "blockHash", "blockNumber", "transactionIndex", "from", "value", "gas", "input",
                           "nonce"};
  Fields f("transaction", kTransactionRequired);
  schema::Transaction tx;
  for_each_field(obj, f, [&](std::string_view key, od::value v) {
    if (key == "hash") tx.hash = f.hash(v, key);
    else if (key == "blockHash") tx.block_hash = f.hash(v, key);
    else if (key == "blockNumber") tx.block_number = f.u64(v, key);
    else if (key == "transactionIndex") tx.transaction_index = f.u32(v, key);
    else if (key == "from") tx.from_address = f.address(v, key);
    else if (key == "to") tx.to_address = f.opt_address(v, key);
    else if (key == "value") tx.value = f.u256(v, key);
    else if (key == "gas") tx.gas = f.u64(v, key);
    else if (key == "gasPrice") tx.gas_price = f.u256(v, key);
    else if (key == "maxFeePerGas") tx.max_fee_per_gas = f.u256(v, key);
    else if (key == "maxPriorityFeePerGas") tx.max_priority_fee_per_gas = f.u256(v, key);
    else if (key == "input") tx.input = f.data(v, key);
    else if (key == "nonce") tx.nonce = f.u64(v, key);
    else if (key == "type") tx.type = f.u8(v, key);
    else if (key == "v") tx.v = f.u256(v, key);
    else if (key == "r") tx.r = f.u256(v, key);
    else if (key == "s") tx.s = f.u256(v, key);
    else if (key == "yParity") tx.y_parity = f.u8(v, key);
    else if (key == "chainId") {
      if (!f.is_null(v)) tx.chain_id = f.u64(v, key);
    } else if (key == "accessList") tx.access_list = decode_access_list(v);
    else if (key == "maxFeePerBlobGas") tx.max_fee_per_blob_gas = f.u256(v, key);
    else if (key == "blobVersionedHashes") {
      for (auto h : as_array(v, "transaction.blobVersionedHashes")) tx.blob_versioned_hashes.push_back(f.hash(od::value(h.value()), key));
    } else if (key == "authorizationList") tx.authorization_list = decode_authorization_list(v);
  });
  return tx;
}

schema::Block decode_block_object(od::object obj) {
  static constexpr std::array<std::string_view, 16> kBlockRequired = {"number", "hash", "parentHash", "timestamp", "miner", "gasLimit", "gasUsed", "sha3Uncles", "mixHash", "nonce", "stateRoot",
                     "transactionsRoot", "receiptsRoot", "logsBloom", "extraData", "transactions"};
  Fields f("block", kBlockRequired);
  schema::Block b;
  for_each_field(obj, f, [&](std::string_view key, od::value v) {
    if (key == "number") b.number = f.u64(v, key);
    else if (key == "hash") b.hash = f.hash(v, key);
    else if (key == "parentHash") b.parent_hash = f.hash(v, key);
    else if (key == "timestamp") b.timestamp = f.u64(v, key);
    else if (key == "miner") b.miner = f.address(v, key);
    else if (key == "gasLimit") b.gas_limit = f.u64(v, key);
    else if (key == "gasUsed") b.gas_used = f.u64(v, key);
    else if (key == "baseFeePerGas") b.base_fee_per_gas = f.u256(v, key);
    else if (key == "difficulty") b.difficulty = f.u256(v, key);
    else if (key == "stateRoot") b.state_root = f.hash(v, key);
    else if (key == "transactionsRoot") b.transactions_root = f.hash(v, key);
    else if (key == "receiptsRoot") b.receipts_root = f.hash(v, key);
    else if (key == "logsBloom") b.logs_bloom = f.fixed<256>(v, key);
    else if (key == "extraData") b.extra_data = f.data(v, key);
    else if (key == "size") b.size = f.u64(v, key);
    else if (key == "blobGasUsed") b.blob_gas_used = f.u64(v, key);
    else if (key == "excessBlobGas") b.excess_blob_gas = f.u64(v, key);
    else if (key == "parentBeaconBlockRoot") b.parent_beacon_block_root = f.hash(v, key);
    else if (key == "withdrawalsRoot") b.withdrawals_root = f.hash(v, key);
    else if (key == "requestsHash") b.requests_hash = f.hash(v, key);
    else if (key == "withdrawals") {
      if (!f.is_null(v)) {
        for (auto item : as_array(v, "block.withdrawals")) {
          static constexpr std::array<std::string_view, 4> kWithdrawalRequired = {"index", "validatorIndex", "address", "amount"};
          Fields w("withdrawal", kWithdrawalRequired);
          schema::Withdrawal out;
          for_each_field(as_object(item.value(), "block.withdrawals[]"), w, [&](std::string_view wk, od::value wv) {
            if (wk == "index") out.index = w.u64(wv, wk);
            else if (wk == "validatorIndex") out.validator_index = w.u64(wv, wk);
            else if (wk == "address") out.address = w.address(wv, wk);
            else if (wk == "amount") out.amount_gwei = w.u64(wv, wk);
          });
          b.withdrawals.push_back(out);
        }
      }
    } else if (key == "totalDifficulty") {
      if (!f.is_null(v)) b.total_difficulty = f.u256(v, key);
    }
    else if (key == "sha3Uncles") b.sha3_uncles = f.hash(v, key);
    else if (key == "mixHash") b.mix_hash = f.hash(v, key);
    else if (key == "nonce") b.nonce = f.fixed<8>(v, key);
    else if (key == "transactions") {
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

Receipt decode_receipt_object(od::object obj) {
  // Every receipt shape since Frontier: `from` and `to` are absent in some old recordings,
  // `status` is absent or null (Parity / OpenEthereum) before Byzantium, where `root` is kept.
  static constexpr std::array<std::string_view, 8> kReceiptRequired = {"transactionHash", "transactionIndex", "blockHash", "blockNumber", "gasUsed",
                       "cumulativeGasUsed", "logs", "logsBloom"};
  Fields f("receipt", kReceiptRequired);
  Receipt r;
  for_each_field(obj, f, [&](std::string_view key, od::value v) {
    if (key == "transactionHash") r.transaction_hash = f.hash(v, key);
    else if (key == "transactionIndex") r.transaction_index = f.u32(v, key);
    else if (key == "blockHash") r.block_hash = f.hash(v, key);
    else if (key == "blockNumber") r.block_number = f.u64(v, key);
    else if (key == "from") r.from_address = f.opt_address(v, key);
    else if (key == "to") r.to_address = f.opt_address(v, key);
    else if (key == "status") {
      if (!f.is_null(v)) r.status = f.u8(v, key);
    } else if (key == "root") {
      if (!f.is_null(v)) r.root = f.hash(v, key);
    }
    else if (key == "gasUsed") r.gas_used = f.u64(v, key);
    else if (key == "cumulativeGasUsed") r.cumulative_gas_used = f.u64(v, key);
    else if (key == "effectiveGasPrice") r.effective_gas_price = f.u256(v, key);
    else if (key == "contractAddress") r.contract_address = f.opt_address(v, key);
    else if (key == "type") r.type = f.u8(v, key);
    else if (key == "logsBloom") r.logs_bloom = f.fixed<256>(v, key);
    else if (key == "logs") {
      for (auto item : as_array(v, "receipt.logs")) r.logs.push_back(decode_log_object(as_object(item.value(), "receipt.logs[]")));
    }
  });
  return r;
}

// Runs `body` on the parsed document, turning every failure into an Error that says what
// was being decoded. simdjson needs SIMDJSON_PADDING readable bytes after the text, hence the copy.
template <class T, class Body>
schema::Result<T> with_document(std::string_view json, std::string_view what, Body&& body) {
  thread_local od::parser parser;
  simdjson::padded_string padded(json);
  try {
    od::document doc;
    if (auto err = parser.iterate(padded).get(doc)) return Error{std::string(what) + ": " + simdjson::error_message(err)};
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

schema::Result<std::optional<schema::Block>> decode_block(std::string_view json) {
  return with_document<std::optional<schema::Block>>(json, "block", [](od::document& doc) -> std::optional<schema::Block> {
    if (document_is_null(doc)) return std::nullopt;
    return decode_block_object(as_object(document_value(doc), "block"));
  });
}

schema::Result<std::optional<std::vector<Receipt>>> decode_receipts(std::string_view json) {
  return with_document<std::optional<std::vector<Receipt>>>(
      json, "receipts", [](od::document& doc) -> std::optional<std::vector<Receipt>> {
        if (document_is_null(doc)) return std::nullopt;
        std::vector<Receipt> out;
        for (auto item : as_array(document_value(doc), "receipts"))
          out.push_back(decode_receipt_object(as_object(item.value(), "receipts[]")));
        return out;
      });
}

schema::Result<std::optional<Receipt>> decode_receipt(std::string_view json) {
  return with_document<std::optional<Receipt>>(json, "receipt", [](od::document& doc) -> std::optional<Receipt> {
    if (document_is_null(doc)) return std::nullopt;
    return decode_receipt_object(as_object(document_value(doc), "receipt"));
  });
}

schema::Result<std::vector<schema::Log>> decode_logs(std::string_view json) {
  return with_document<std::vector<schema::Log>>(json, "logs", [](od::document& doc) {
    std::vector<schema::Log> out;
    for (auto item : as_array(document_value(doc), "logs")) out.push_back(decode_log_object(as_object(item.value(), "logs[]")));
    return out;
  });
}

schema::Result<std::optional<schema::BlockRef>> decode_new_head(std::string_view message) {
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
          static constexpr std::array<std::string_view, 3> kHeadRequired = {"number", "hash", "parentHash"};
          Fields f("newHeads.result", kHeadRequired);
          schema::BlockRef ref;
          for (auto hf : as_object(pf.value(), "newHeads.result")) {
            std::string_view hk = key_of(hf);
            f.saw(hk);
            if (hk == "number") ref.number = f.u64(hf.value(), hk);
            else if (hk == "hash") ref.hash = f.hash(hf.value(), hk);
            else if (hk == "parentHash") ref.parent_hash = f.hash(hf.value(), hk);
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

schema::Result<std::uint64_t> decode_quantity(std::string_view json) {
  return with_document<std::uint64_t>(json, "quantity", [](od::document& doc) {
    std::string_view s;
    if (doc.get_string().get(s)) throw DecodeFailure{"expected a string"};
    std::uint64_t out;
    if (!schema::parse_quantity(s, out)) throw DecodeFailure{"expected a hex quantity"};
    return out;
  });
}

}  // namespace chainidx::ingest

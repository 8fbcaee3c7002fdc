#include "ingest/json_rpc.hpp"

#include <simdjson.h>

#include "ingest/decode.hpp"

namespace chainidx::ingest {
namespace {

namespace od = simdjson::ondemand;

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.back() == ' ' || s.back() == '\n' || s.back() == '\r' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

// The text in a string with the parser's padding to spare, so that decoding reads it in place.
// The spare bytes are left holding spaces (written, then cut off), not whatever malloc left.
std::string padded_copy(std::string_view text) {
  std::string out;
  out.reserve(text.size() + kJsonPadding);
  out.assign(text);
  out.append(kJsonPadding, ' ');
  out.resize(text.size());
  return out;
}

// The JSON text of any value, consuming it.
std::string raw_of(od::value v) {
  od::json_type t = v.type();
  if (t == od::json_type::object) {
    od::object o = v.get_object();
    return padded_copy(o.raw_json().value());
  }
  if (t == od::json_type::array) {
    od::array a = v.get_array();
    return padded_copy(a.raw_json().value());
  }
  return padded_copy(trim(v.raw_json_token()));
}

RpcReply parse_one(od::object obj) {
  RpcReply r;
  bool have_id = false, have_outcome = false;
  for (auto field : obj) {
    std::string_view key = field.unescaped_key().value();
    od::value v = field.value();
    if (key == "id") {
      r.id = v.get_uint64().value();
      have_id = true;
    } else if (key == "result") {
      r.result = raw_of(v);
      have_outcome = true;
    } else if (key == "error") {
      od::object e = v.get_object();
      for (auto ef : e) {
        std::string_view ek = ef.unescaped_key().value();
        if (ek == "code") r.error_code = static_cast<int>(ef.value().get_int64().value());
        else if (ek == "message") r.error_message = std::string(ef.value().get_string().value());
      }
      if (!r.error_code) r.error_code = 0;
      have_outcome = true;
    }
  }
  if (!have_id) throw std::runtime_error("reply without a numeric id");
  if (!have_outcome) throw std::runtime_error("reply without result or error");
  return r;
}

}  // namespace

std::string encode_request(const RpcRequest& request, std::uint64_t id) {
  return "{\"jsonrpc\":\"2.0\",\"id\":" + std::to_string(id) + ",\"method\":\"" + request.method +
         "\",\"params\":" + (request.params.empty() ? "[]" : request.params) + "}";
}

std::string encode_batch(const std::vector<RpcRequest>& requests, std::uint64_t first_id) {
  std::string out = "[";
  for (std::size_t i = 0; i < requests.size(); ++i) {
    if (i) out.push_back(',');
    out += encode_request(requests[i], first_id + i);
  }
  out.push_back(']');
  return out;
}

schema::Result<std::vector<RpcReply>> parse_replies(std::string_view body) {
  thread_local od::parser parser;
  simdjson::padded_string padded(body);
  try {
    od::document doc = parser.iterate(padded);
    std::vector<RpcReply> out;
    if (doc.type() == od::json_type::array) {
      for (auto item : doc.get_array()) out.push_back(parse_one(item.get_object()));
    } else {
      out.push_back(parse_one(doc.get_object()));
    }
    return out;
  } catch (const simdjson::simdjson_error& e) {
    return schema::Error{std::string("malformed JSON-RPC response: ") + e.what()};
  } catch (const std::runtime_error& e) {
    return schema::Error{std::string("malformed JSON-RPC response: ") + e.what()};
  }
}

}  // namespace chainidx::ingest

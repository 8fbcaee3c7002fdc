#include "sinks/postgres_sink.hpp"

#include "schema/tx_json.hpp"

#include <libpq-fe.h>
#include <pqxx/largeobject>
#include <pqxx/pqxx>

#include <array>
#include <charconv>
#include <cmath>
#include <exception>
#include <regex>

#include "schema/migrations.hpp"
#include "schema/redact.hpp"

#include <spdlog/spdlog.h>

namespace chainidx::sinks {
namespace {

using schema::Block;

// A value a column's type cannot hold (a 64-bit quantity above bigint's range): the server
// would refuse it in a text COPY; the binary one is checked here, with the same outcome.
struct OutOfRange {
  std::string column;
  std::string value;
  const char* type;
};

// One row of COPY ... FROM STDIN (FORMAT binary): the field count, then each field as a 32-bit
// big-endian length (-1 for NULL) and the value in its type's binary form (Postgres' *_recv):
// integers big-endian, bytea as its bytes, numeric as base-10000 digits, jsonb as a version
// byte and the text. No hex to write here nor to parse on the server.
class BinaryRow {
 public:
  BinaryRow(std::string& out, const std::vector<std::string>& columns) : out_(out), columns_(columns) {
    put<std::uint16_t>(static_cast<std::uint16_t>(columns.size()));
  }
  ~BinaryRow() noexcept(false) {
    if (field_ != columns_.size() && std::uncaught_exceptions() == 0)
      throw std::logic_error("COPY row with " + std::to_string(field_) + " of " + std::to_string(columns_.size()) + " fields");
  }

  BinaryRow& i64(std::uint64_t v) { return integer<std::uint64_t>(v, 0x7fffffffffffffffull, "bigint"); }
  BinaryRow& i32(std::uint64_t v) { return integer<std::uint32_t>(v, 0x7fffffffull, "integer"); }
  BinaryRow& i16(std::uint64_t v) { return integer<std::uint16_t>(v, 0x7fffull, "smallint"); }
  template <class T>
  BinaryRow& opt_i64(const std::optional<T>& v) { return v ? i64(*v) : null(); }
  template <class T>
  BinaryRow& opt_i16(const std::optional<T>& v) { return v ? i16(*v) : null(); }

  BinaryRow& bytes(const std::uint8_t* data, std::size_t size) {
    field(size);
    out_.append(reinterpret_cast<const char*>(data), size);
    return *this;
  }
  template <std::size_t N>
  BinaryRow& bytes(const schema::FixedBytes<N>& v) { return bytes(v.data(), N); }
  BinaryRow& bytes(const schema::Bytes& v) { return bytes(v.data(), v.size()); }
  template <class T>
  BinaryRow& opt_bytes(const std::optional<T>& v) { return v ? bytes(*v) : null(); }

  BinaryRow& u256(const schema::U256& v) { return numeric(v.to_decimal()); }
  BinaryRow& opt_u256(const std::optional<schema::U256>& v) { return v ? u256(*v) : null(); }
  BinaryRow& numeric(std::uint64_t v) {
    char digits[20];
    return numeric(std::string_view(digits, static_cast<std::size_t>(std::to_chars(digits, digits + sizeof digits, v).ptr - digits)));
  }
  template <class T>
  BinaryRow& opt_numeric(const std::optional<T>& v) { return v ? numeric(static_cast<std::uint64_t>(*v)) : null(); }

  /// A decimal integer with an optional '-' (a decoded event's int<M>).
  BinaryRow& signed_numeric(std::string_view decimal) {
    if (!decimal.empty() && decimal[0] == '-') return numeric(decimal.substr(1), true);
    return numeric(decimal);
  }
  BinaryRow& text(std::string_view v) {
    field(v.size());
    out_.append(v);
    return *this;
  }
  BinaryRow& boolean(bool v) {
    field(1);
    out_.push_back(v ? 1 : 0);
    return *this;
  }
  BinaryRow& jsonb(std::string_view text) {
    field(1 + text.size());
    out_.push_back(1);  // jsonb's binary format: version 1, then the text
    out_.append(text);
    return *this;
  }
  BinaryRow& null() {
    next();
    put<std::uint32_t>(0xffffffffu);
    return *this;
  }

 private:
  template <class T>
  void put(T v) {
    char b[sizeof(T)];
    for (std::size_t i = 0; i < sizeof(T); ++i) b[i] = static_cast<char>(v >> (8 * (sizeof(T) - 1 - i)));
    out_.append(b, sizeof(T));
  }
  template <class T>
  BinaryRow& integer(std::uint64_t v, std::uint64_t max, const char* type) {
    if (v > max) throw OutOfRange{field_ < columns_.size() ? columns_[field_] : "?", std::to_string(v), type};
    field(sizeof(T));
    put<T>(static_cast<T>(v));
    return *this;
  }
  // A non-negative integer from its decimal digits ("0" for zero), as numeric_recv reads it:
  // digit count, weight (of the first base-10000 digit), sign, display scale, then the digits
  // without trailing zero ones.
  BinaryRow& numeric(std::string_view decimal, bool negative = false) {
    std::array<std::uint16_t, 20> groups{};  // 78 decimal digits are 20 base-10000 ones
    std::size_t count = decimal == "0" ? 0 : (decimal.size() + 3) / 4;
    if (count > groups.size()) throw std::logic_error("numeric of more than 80 digits");
    std::size_t at = 0;
    for (std::size_t g = 0; g < count; ++g) {
      const std::size_t width = g == 0 ? decimal.size() - 4 * (count - 1) : 4;
      std::uint16_t v = 0;
      for (std::size_t i = 0; i < width; ++i) v = static_cast<std::uint16_t>(v * 10 + (decimal[at++] - '0'));
      groups[g] = v;
    }
    std::size_t kept = count;
    while (kept > 0 && groups[kept - 1] == 0) --kept;
    field(8 + 2 * kept);
    put<std::uint16_t>(static_cast<std::uint16_t>(kept));
    put<std::uint16_t>(static_cast<std::uint16_t>(count == 0 ? 0 : count - 1));  // weight
    put<std::uint16_t>(negative && kept > 0 ? 0x4000 : 0);  // sign
    put<std::uint16_t>(0);  // display scale: an integer
    for (std::size_t g = 0; g < kept; ++g) put<std::uint16_t>(groups[g]);
    return *this;
  }
  void next() {
    if (field_ >= columns_.size()) throw std::logic_error("COPY row with more fields than columns");
    ++field_;
  }
  void field(std::size_t size) {
    next();
    put<std::uint32_t>(static_cast<std::uint32_t>(size));
  }
  std::string& out_;
  const std::vector<std::string>& columns_;
  std::size_t field_ = 0;
};

const std::vector<std::string> kBlockColumns = {
    "number", "hash", "parent_hash", "timestamp", "miner", "gas_limit", "gas_used", "base_fee_per_gas", "difficulty",
    "state_root", "transactions_root", "receipts_root", "logs_bloom", "extra_data", "size", "blob_gas_used",
    "excess_blob_gas", "parent_beacon_block_root", "withdrawals_root", "requests_hash", "sha3_uncles", "mix_hash", "nonce",
    "transaction_count", "total_difficulty"};
const std::vector<std::string> kTransactionColumns = {
    "block_number", "transaction_index", "hash", "block_hash", "from_address", "to_address", "value", "gas",
    "gas_price", "max_fee_per_gas", "max_priority_fee_per_gas", "input", "nonce", "type", "status", "gas_used",
    "cumulative_gas_used", "effective_gas_price", "contract_address", "log_count", "root",
    "v", "r", "s", "y_parity", "chain_id", "access_list", "max_fee_per_blob_gas", "blob_versioned_hashes",
    "authorization_list", "logs_bloom"};
const std::vector<std::string> kWithdrawalColumns = {"block_number", "withdrawal_index", "validator_index", "address", "amount_gwei"};
const std::vector<std::string> kLogColumns = {
    "block_number", "log_index", "block_hash", "transaction_hash", "transaction_index", "address",
    "topic0", "topic1", "topic2", "topic3", "data"};

void block_row(std::string& rows, const Block& b) {
  BinaryRow l(rows, kBlockColumns);
  l.i64(b.number).bytes(b.hash).bytes(b.parent_hash).i64(b.timestamp).bytes(b.miner).i64(b.gas_limit).i64(b.gas_used)
      .opt_u256(b.base_fee_per_gas).u256(b.difficulty).bytes(b.state_root).bytes(b.transactions_root)
      .bytes(b.receipts_root).bytes(b.logs_bloom).bytes(b.extra_data).i64(b.size).opt_i64(b.blob_gas_used)
      .opt_i64(b.excess_blob_gas).opt_bytes(b.parent_beacon_block_root).opt_bytes(b.withdrawals_root)
      .opt_bytes(b.requests_hash).bytes(b.sha3_uncles).bytes(b.mix_hash).bytes(b.nonce).i32(b.transaction_count)
      .opt_u256(b.total_difficulty);
}

void transaction_row(std::string& rows, const schema::Transaction& t) {
  BinaryRow l(rows, kTransactionColumns);
  l.i64(t.block_number).i32(t.transaction_index).bytes(t.hash).bytes(t.block_hash).bytes(t.from_address)
      .opt_bytes(t.to_address).u256(t.value).i64(t.gas).opt_u256(t.gas_price).opt_u256(t.max_fee_per_gas)
      .opt_u256(t.max_priority_fee_per_gas).bytes(t.input).i64(t.nonce).i16(t.type).opt_i16(t.status).i64(t.gas_used)
      .i64(t.cumulative_gas_used).opt_u256(t.effective_gas_price).opt_bytes(t.contract_address).i32(t.log_count)
      .opt_bytes(t.root).opt_u256(t.v).opt_u256(t.r).opt_u256(t.s).opt_i16(t.y_parity).opt_numeric(t.chain_id);
  if (t.access_list) l.jsonb(schema::access_list_json(*t.access_list));
  else l.null();
  l.opt_u256(t.max_fee_per_blob_gas);
  if (t.type == 3 || !t.blob_versioned_hashes.empty()) l.jsonb(schema::hashes_json(t.blob_versioned_hashes));
  else l.null();
  if (t.authorization_list) l.jsonb(schema::authorization_list_json(*t.authorization_list));
  else l.null();
  l.opt_bytes(t.logs_bloom);
}

void withdrawal_row(std::string& rows, std::uint64_t block_number, const schema::Withdrawal& w) {
  BinaryRow l(rows, kWithdrawalColumns);
  l.i64(block_number).i64(w.index).i64(w.validator_index).bytes(w.address).numeric(w.amount_gwei);
}

void log_row(std::string& rows, const schema::Log& g) {
  BinaryRow l(rows, kLogColumns);
  l.i64(g.block_number).i32(g.log_index).bytes(g.block_hash).bytes(g.transaction_hash).i32(g.transaction_index)
      .bytes(g.address);
  for (std::size_t i = 0; i < 4; ++i) {
    if (i < g.topics.size()) l.bytes(g.topics[i]);
    else l.null();
  }
  l.bytes(g.data);
}

const std::vector<std::string> kUndecodableColumns = {
    "block_number", "log_index", "contract", "block_hash", "transaction_hash", "transaction_index", "address", "signature",
    "topic0", "topic1", "topic2", "topic3", "data", "reason"};

// An identifier in double quotes: event and column names come from ABIs, and "from", "to" or
// "order" are SQL keywords.
std::string quote_ident(std::string_view name) {
  std::string s = "\"";
  for (char c : name) {
    if (c == '"') s.push_back('"');
    s.push_back(c);
  }
  return s + "\"";
}

// An event table's columns in COPY order, quoted: the base ones, then a column per parameter.
std::vector<std::string> event_columns(const schema::EventTable& t) {
  std::vector<std::string> cols = {"block_number", "log_index", "block_hash", "block_timestamp", "transaction_hash",
                                   "transaction_index", "contract_address"};
  for (const auto& col : t.columns) cols.push_back(quote_ident(col.name));
  return cols;
}

const char* sql_type(schema::ArgKind k) {
  switch (k) {
    case schema::ArgKind::kInteger: return "numeric(78,0)";
    case schema::ArgKind::kBool: return "boolean";
    case schema::ArgKind::kBytes: return "bytea";
    case schema::ArgKind::kText: return "text";
    case schema::ArgKind::kJson: return "jsonb";
  }
  return "bytea";
}

// What contract_tables records of a table, to compare with what the ABI gives now.
std::string describe_columns(const schema::EventTable& t) {
  std::string s;
  for (const auto& col : t.columns)
    s += (s.empty() ? "" : ", ") + col.name + " " + sql_type(col.kind) + "(" + col.abi_type + (col.hashed ? " hash" : "") + ")" +
         (col.indexed ? " indexed" : "");
  return s;
}

void event_row(std::string& rows, const std::vector<std::string>& columns, const Block& b, const schema::EventTable& t,
               const schema::DecodedEvent& e) {
  const schema::Log& g = b.logs.at(e.log);
  BinaryRow l(rows, columns);
  l.i64(g.block_number).i32(g.log_index).bytes(g.block_hash).i64(b.timestamp).bytes(g.transaction_hash).i32(g.transaction_index)
      .bytes(g.address);
  for (std::size_t i = 0; i < t.columns.size(); ++i) {
    const schema::EventArg& a = e.args.at(i);
    switch (t.columns[i].kind) {
      case schema::ArgKind::kInteger: l.signed_numeric(a.text); break;
      case schema::ArgKind::kBool: l.boolean(a.boolean); break;
      case schema::ArgKind::kBytes: l.bytes(a.bytes); break;
      case schema::ArgKind::kText: l.text(a.text); break;
      case schema::ArgKind::kJson: l.jsonb(a.text); break;
    }
  }
}

void undecodable_row(std::string& rows, const schema::Log& g, const schema::EventTable& t, const schema::DecodedEvent& e) {
  BinaryRow l(rows, kUndecodableColumns);
  l.i64(g.block_number).i32(g.log_index).text(t.contract).bytes(g.block_hash).bytes(g.transaction_hash).i32(g.transaction_index)
      .bytes(g.address).text(t.signature);
  for (std::size_t i = 0; i < 4; ++i) {
    if (i < g.topics.size()) l.bytes(g.topics[i]);
    else l.null();
  }
  l.bytes(g.data).text(e.error);
}

// libpqxx 6.4 sends COPY data only as text lines; the binary format goes through libpq on the
// transaction's own connection, which largeobject (libpqxx's one class that needs it) hands to
// the classes derived from it.
struct RawConnection : pqxx::largeobject {
  static PGconn* of(const pqxx::dbtransaction& tx) { return largeobject::raw_connection(tx); }
};

// COPY table (columns) FROM STDIN (FORMAT binary), inside the caller's transaction. Failures
// surface as libpqxx's exceptions (with the server's SQLSTATE), as the rest of the sink's do.
class BinaryCopy {
 public:
  BinaryCopy(pqxx::work& tx, const std::string& table, const std::vector<std::string>& columns) : conn_(RawConnection::of(tx)) {
    std::string list;
    for (const auto& c : columns) list += (list.empty() ? "" : ", ") + c;
    tx.exec0("COPY " + table + " (" + list + ") FROM STDIN (FORMAT binary)");
    open_ = true;
    static constexpr char kHeader[] = "PGCOPY\n\377\r\n\0";  // signature, then flags and extension length
    std::string header(kHeader, sizeof kHeader - 1);
    header.append(8, '\0');
    send(header);
  }
  BinaryCopy(const BinaryCopy&) = delete;
  BinaryCopy& operator=(const BinaryCopy&) = delete;
  ~BinaryCopy() {
    if (!open_) return;
    // Left by an exception: end the COPY with an error, so that the transaction can roll back.
    PQputCopyEnd(conn_, "chainidx abandoned the COPY");
    while (PGresult* r = PQgetResult(conn_)) PQclear(r);
  }

  void send(const std::string& data) {
    if (PQputCopyData(conn_, data.data(), static_cast<int>(data.size())) != 1) fail_connection();
  }
  void complete() {
    send(std::string("\xff\xff", 2));  // the trailer: a field count of -1
    open_ = false;
    if (PQputCopyEnd(conn_, nullptr) != 1) fail_connection();
    std::string message, state;
    bool failed = false;
    while (PGresult* r = PQgetResult(conn_)) {
      if (PQresultStatus(r) != PGRES_COMMAND_OK && !failed) {
        failed = true;
        message = PQresultErrorMessage(r);
        const char* code = PQresultErrorField(r, PG_DIAG_SQLSTATE);
        state = code ? code : "";
      }
      PQclear(r);
    }
    if (!failed) return;
    if (PQstatus(conn_) != CONNECTION_OK) throw pqxx::broken_connection(message);
    throw pqxx::sql_error(message, "COPY", state.empty() ? nullptr : state.c_str());
  }

 private:
  [[noreturn]] void fail_connection() {
    open_ = false;
    throw pqxx::broken_connection(PQerrorMessage(conn_));
  }
  PGconn* conn_;
  bool open_ = false;
};

template <std::size_t N>
schema::FixedBytes<N> fixed_from_bytea(const pqxx::field& f, const char* what) {
  pqxx::binarystring bin(f);
  schema::FixedBytes<N> out;
  if (bin.size() != N) throw std::logic_error(std::string(what) + " is not " + std::to_string(N) + " bytes");
  std::copy(bin.begin(), bin.end(), out.bytes.begin());
  return out;
}

schema::Hash32 hash_from_bytea(const pqxx::field& f) { return fixed_from_bytea<32>(f, "cursor hash"); }

// One event per log line: libpq's messages span several lines (ERROR, DETAIL, CONTEXT, HINT).
std::string one_line(std::string_view text) {
  std::string out;
  for (char c : text) {
    if (c == '\n') {
      if (!out.empty() && out.back() != ' ') out += " | ";
    } else if (c == '\t') {
      out.push_back(' ');
    } else if (c != '\r') {
      out.push_back(c);
    }
  }
  while (out.size() >= 3 && out.compare(out.size() - 3, 3, " | ") == 0) out.resize(out.size() - 3);
  return out;
}

// Whether the same statement can work if sent again, by SQLSTATE class: connection trouble (08),
// rollbacks such as serialization failures and deadlocks (40), lack of resources (53), operator
// intervention such as a statement timeout or a shutdown (57), system and internal errors (58, XX),
// lock timeouts and objects in use (55P03, 55006), and a read-only server during a failover (25)
// are passing. Data (22), constraints (23), missing tables, columns or privileges (42), and the rest
// fail the same way every time.
SinkError::Kind kind_of_sqlstate(const std::string& state) {
  if (state.size() != 5) return SinkError::Kind::kRetryable;  // from libpq itself, not the server
  const std::string cls = state.substr(0, 2);
  for (const char* c : {"08", "25", "40", "53", "57", "58", "XX"})
    if (cls == c) return SinkError::Kind::kRetryable;
  if (state == "55P03" || state == "55006") return SinkError::Kind::kRetryable;
  return SinkError::Kind::kRefused;
}

}  // namespace

/// Which COPY line is which block, so that a refused row can be named by its block.
struct CopyPosition {
  std::string table;
  std::vector<std::uint64_t> line_blocks;  ///< block number of COPY line i + 1
};

struct PostgresSink::Impl {
  std::string url;
  std::string schema;  // already validated as [a-z_][a-z0-9_]*
  std::unique_ptr<pqxx::connection> conn;
  std::uint64_t session = 0;  // counts connections made: a new one has none of the old one's locks
  std::string instance;       // write_as(): the leader whose writes this sink makes
  std::int64_t epoch = 0;     //   and its epoch
  // On a lease session (try_lead): the epoch this instance leads under (0: it never led), and
  // the session that holds the leader lock (0: none).
  std::int64_t lead_epoch = 0;
  std::uint64_t lock_session = 0;
  std::string lead_instance, lead_host;
  int lead_pid = 0;
  CopyPosition copying;  // the COPY in progress during write()
  std::vector<schema::EventTable> event_tables;
  std::vector<std::vector<std::string>> event_columns;  // per event table, quoted, in COPY order
  bool raw_logs = true;  // set_raw_logs
  std::unique_ptr<pqxx::work> prepared;  // prepare()'s open transaction (after conn: destroyed first)

  // A database that stops answering must not hang the pipeline: connects give up after 10 s
  // (unless the URL says otherwise) and statements after 120 s; both surface as SinkError and
  // are retried.
  pqxx::connection& connection() {
    if (!conn || !conn->is_open()) {
      std::string target = url;
      if (target.find("connect_timeout=") == std::string::npos)
        target += (target.find('?') == std::string::npos ? "?" : "&") + std::string("connect_timeout=10");
      conn = std::make_unique<pqxx::connection>(target);
      ++session;
      // A leader's writing sessions carry a shared advisory lock named by the chain and epoch:
      // the next leader finds them in pg_locks and terminates them (a paused leader's open
      // transaction would otherwise hold the writer and cursor rows).
      pqxx::nontransaction(*conn).exec("SET statement_timeout = '120s'" +
                                       (epoch > 0 ? "; SELECT pg_advisory_lock_shared(" + writer_tag_key(epoch) + ")" : std::string()));
    }
    return *conn;
  }

  // The leader lock: one per chain (schema) and database.
  std::string leader_key() const { return "hashtext('chainidx-leader'), hashtext('" + schema + "')"; }
  // The tag on a leader's writing sessions: per chain, with the epoch in the second key.
  static std::int32_t epoch_tag(std::int64_t e) { return static_cast<std::int32_t>(e % 2147483647); }
  std::string writer_tag_key(std::int64_t e) const {
    return "hashtext('chainidx-writer:" + schema + "'), " + std::to_string(epoch_tag(e));
  }
  // pg_locks rows of advisory locks held with the two-key form (classid, objid) in this database.
  static std::string advisory_holders(const std::string& classid, const std::string& objid) {
    return "locktype = 'advisory' AND granted AND objsubid = 2 AND database = (SELECT oid FROM pg_database WHERE datname = "
           "current_database()) AND classid = (" + classid + ")::oid" + (objid.empty() ? "" : " AND objid = (" + objid + ")::oid") +
           " AND pid <> pg_backend_pid()";
  }

  PostgresSink::Leadership read_leadership(pqxx::transaction_base& tx, const std::string& q, const std::string& me) {
    PostgresSink::Leadership l;
    auto r = tx.exec("SELECT w.instance, w.host, w.pid, w.epoch, extract(epoch FROM coalesce(l.lease_until, '-infinity') - now())::float8 FROM " +
                     q + ".writer w LEFT JOIN " + q + ".writer_lease l ON true");
    if (r.empty()) return l;
    l.instance = r[0][0].as<std::string>();
    l.host = r[0][1].as<std::string>();
    l.pid = r[0][2].as<int>();
    l.epoch = r[0][3].as<std::int64_t>();
    l.lease_left_seconds = r[0][4].is_null() ? -1 : r[0][4].as<double>();
    if (std::isinf(l.lease_left_seconds)) l.lease_left_seconds = -1;
    l.ours = l.instance == me && l.epoch == lead_epoch && lead_epoch != 0;
    return l;
  }

  [[noreturn]] void lost_leadership(const PostgresSink::Leadership& now, const std::string& me) {
    throw SinkError("postgres: another instance leads chain " + schema + ": " +
                        (now.instance.empty() ? std::string("nobody") : now.instance + " (host " + now.host + ", pid " + std::to_string(now.pid) +
                                                                          ", epoch " + std::to_string(now.epoch) + ")") +
                        "; this one (" + me + ", epoch " + std::to_string(lead_epoch) + ") writes nothing more and stops",
                    SinkError::Kind::kFenced);
  }

  PostgresSink::Leadership lead(const std::string& me, const std::string& host, int pid, std::chrono::seconds lease) {
    pqxx::connection& c = connection();
    const std::string q = c.quote_name(schema);
    if (lock_session != session) {
      pqxx::nontransaction nt(c);
      bool locked = nt.exec1("SELECT pg_try_advisory_lock(" + leader_key() + ")")[0].as<bool>();
      if (!locked) {
        PostgresSink::Leadership now = read_leadership(nt, q, me);
        // This instance led, and its old session still holds the lock (the server has not noticed
        // that it is gone): its session is terminated like an expired leader's.
        if (lead_epoch != 0 && !now.ours) lost_leadership(now, me);
        if (now.lease_left_seconds >= 0 && !now.instance.empty() && !now.ours) return now;
        auto r = nt.exec("SELECT pid, pg_terminate_backend(pid, 5000) FROM pg_locks WHERE " +
                         advisory_holders("hashtext('chainidx-leader')", "hashtext('" + schema + "')"));
        for (const auto& row : r)
          spdlog::warn("event=leader_session_terminated chain={} leader={} epoch={} backend_pid={} reason=\"{}\"", schema, now.instance,
                       now.epoch, row[0].as<int>(), now.ours ? "this instance's lost lease session" : "the leader's lease ran out");
        locked = nt.exec1("SELECT pg_try_advisory_lock(" + leader_key() + ")")[0].as<bool>();
        if (!locked) return now;
      }
      lock_session = session;
    }
    // The lock is held. Sessions that wrote for an earlier leader may still hold the writer and
    // cursor rows (a paused leader's open transaction): terminated before the row is taken.
    pqxx::work tx(c);
    tx.exec0("SET LOCAL lock_timeout = '10s'");
    auto old = tx.exec("SELECT pid, objid::int8, pg_terminate_backend(pid, 5000) FROM pg_locks WHERE " +
                       advisory_holders("hashtext('chainidx-writer:" + schema + "')", "") +
                       (lead_epoch != 0 ? " AND objid <> (" + std::to_string(epoch_tag(lead_epoch)) + ")::oid" : ""));
    for (const auto& row : old)
      spdlog::warn("event=writer_session_terminated chain={} backend_pid={} reason=\"it wrote for an earlier leader\"", schema,
                   row[0].as<int>());
    // Re-taking the lock after a lost session only reads the row (a share lock, as this
    // instance's own writes take); a takeover changes it.
    auto row = tx.exec("SELECT instance, epoch FROM " + q + ".writer" + (lead_epoch != 0 ? " FOR SHARE" : " FOR UPDATE"));
    const std::string until = "now() + interval '" + std::to_string(lease.count()) + " seconds'";
    if (lead_epoch != 0) {
      if (row.empty() || row[0][0].as<std::string>() != me || row[0][1].as<std::int64_t>() != lead_epoch) {
        PostgresSink::Leadership now = read_leadership(tx, q, me);
        tx.abort();
        conn.reset();  // and the lock with it
        lock_session = 0;
        lost_leadership(now, me);
      }
    } else {
      lead_epoch = tx.exec1("INSERT INTO " + q + ".writer (id, instance, host, pid, claimed_at, epoch) VALUES (true, " + tx.quote(me) + ", " +
                            tx.quote(host) + ", " + std::to_string(pid) + ", now(), 1) ON CONFLICT (id) DO UPDATE SET instance = "
                            "excluded.instance, host = excluded.host, pid = excluded.pid, claimed_at = excluded.claimed_at, epoch = " +
                            q + ".writer.epoch + 1 RETURNING epoch")[0]
                       .as<std::int64_t>();
    }
    tx.exec0("INSERT INTO " + q + ".writer_lease (id, lease_until, backend_pid) VALUES (true, " + until +
             ", pg_backend_pid()) ON CONFLICT (id) DO UPDATE SET lease_until = excluded.lease_until, backend_pid = excluded.backend_pid");
    tx.commit();
    lead_instance = me;
    lead_host = host;
    lead_pid = pid;
    return {me, host, pid, lead_epoch, static_cast<double>(lease.count()), true};
  }

  // What a refused statement was about: the table and block of the COPY line the server names
  // ("COPY blocks, line 3, column gas_used: ..."), the column, and for a CHECK constraint its
  // definition, which names the columns it tests.
  std::string describe_refusal(const std::string& message) {
    std::string out;
    static const std::regex kCopy(R"(COPY (\w+), line (\d+)(, column (\w+))?)");
    static const std::regex kColumn(R"(column \"(\w+)\")");
    static const std::regex kCheck(R"(violates check constraint \"([^\"]+)\")");
    std::smatch m;
    std::string table = copying.table, column;
    if (std::regex_search(message, m, kCopy)) {
      table = m[1];
      std::size_t line = std::stoul(m[2]);
      if (table == copying.table && line >= 1 && line <= copying.line_blocks.size())
        out += "block " + std::to_string(copying.line_blocks[line - 1]) + ", ";
      if (m[4].matched) column = m[4];
    }
    if (column.empty() && std::regex_search(message, m, kColumn)) column = m[1];
    if (!table.empty()) out += "table " + schema + "." + table + ", ";
    if (!column.empty()) out += "column " + column + ", ";
    if (std::regex_search(message, m, kCheck)) {
      std::string name = m[1];
      try {
        pqxx::connection& c = connection();
        pqxx::read_transaction tx(c);
        auto r = tx.exec("SELECT pg_get_constraintdef(c.oid) FROM pg_constraint c JOIN pg_namespace n ON n.oid = c.connamespace "
                         "WHERE n.nspname = " + tx.quote(schema) + " AND c.conname = " + tx.quote(name));
        std::string def = r.empty() ? "" : r[0][0].as<std::string>();
        // The columns the constraint tests, as the operator will look for them.
        if (column.empty()) {
          const std::vector<std::string>* columns = table == "blocks" ? &kBlockColumns
                                                  : table == "transactions" ? &kTransactionColumns
                                                  : table == "logs" ? &kLogColumns : nullptr;
          std::string named;
          for (std::size_t i = 0; columns && i < columns->size(); ++i)
            if (std::regex_search(def, std::regex("\\b" + (*columns)[i] + "\\b"))) named += (named.empty() ? "" : " and ") + (*columns)[i];
          if (!named.empty()) out += "column " + named + ", ";
        }
        out += "constraint " + name + (def.empty() ? "" : " " + def) + ", ";
      } catch (const std::exception&) {
        out += "constraint " + name + ", ";
      }
    }
    return out;
  }

  // Every libpqxx failure becomes a SinkError that names the server without secrets and says
  // whether a retry can work; the connection is dropped so that the next attempt reconnects.
  template <class F>
  auto guarded(const char* what, F&& f) {
    try {
      return f();
    } catch (const pqxx::broken_connection& e) {
      conn.reset();
      throw SinkError(std::string("postgres ") + what + " at " + schema::redact_postgres_url(url) + ": no connection: " + one_line(e.what()));
    } catch (const pqxx::in_doubt_error& e) {
      conn.reset();
      throw SinkError(std::string("postgres ") + what + " at " + schema::redact_postgres_url(url) + ": commit in doubt: " + one_line(e.what()));
    } catch (const pqxx::sql_error& e) {
      conn.reset();
      auto kind = kind_of_sqlstate(e.sqlstate());
      std::string message = one_line(e.what());
      if (kind == SinkError::Kind::kRetryable)
        throw SinkError(std::string("postgres ") + what + ": sqlstate " + e.sqlstate() + ": " + message);
      std::string where = describe_refusal(e.what());
      throw SinkError(std::string("postgres ") + what + " refused: " + where + "sqlstate " + e.sqlstate() + ": " + message +
                          " (the same batch fails the same way again: fix the table or its constraint, then restart)",
                      kind);
    } catch (const pqxx::failure& e) {
      conn.reset();
      throw SinkError(std::string("postgres ") + what + " at " + schema::redact_postgres_url(url) + ": " + one_line(e.what()));
    }
  }

  // The writer row, locked for share: a newer claim waits until this transaction ends, and a
  // transaction that sees another instance's claim writes nothing.
  // One COPY per table; each line remembers its block, so a refused line can be named.
  // Tables the batch has no rows for are skipped: a COPY costs two round trips even when empty,
  // and at the head most blocks have no withdrawals and many no logs.
  void copy_rows(pqxx::work& tx, const std::string& q, std::span<const Block> blocks) {
    CopyPosition& at = copying;
    // Rows go to the server in pieces of about 256 KiB: one libpq call each, not one a row.
    constexpr std::size_t kPiece = 256 * 1024;
    std::string rows;
    rows.reserve(kPiece + 64 * 1024);
    auto copy = [&](const std::string& table, const std::vector<std::string>& columns, auto&& rows_of) {
      std::size_t count = 0;
      for (const auto& b : blocks) rows_of(b, [&](auto&&) { ++count; });
      if (count == 0) return;
      at = {table, {}};
      BinaryCopy s(tx, q + "." + quote_ident(table), columns);
      for (const auto& b : blocks) {
        try {
          rows_of(b, [&](auto&& append_row) {
            append_row(rows);
            at.line_blocks.push_back(b.number);
            if (rows.size() >= kPiece) {
              s.send(rows);
              rows.clear();
            }
          });
        } catch (const OutOfRange& e) {
          rows.clear();
          throw SinkError("postgres write refused: block " + std::to_string(b.number) + ", table " + schema + "." + table +
                              ", column " + e.column + ": " + e.value + " is out of range for type " + e.type +
                              " (the same batch fails the same way again: the node's value does not fit the column)",
                          SinkError::Kind::kRefused);
        }
      }
      if (!rows.empty()) s.send(rows);
      rows.clear();
      s.complete();
    };
    copy("blocks", kBlockColumns, [](const Block& b, auto&& emit) {
      if (!b.sparse) emit([&](std::string& r) { block_row(r, b); });  // a sparse block has no block row
    });
    copy("transactions", kTransactionColumns, [](const Block& b, auto&& emit) {
      for (const auto& t : b.transactions) emit([&](std::string& r) { transaction_row(r, t); });
    });
    if (raw_logs)
      copy("logs", kLogColumns, [](const Block& b, auto&& emit) {
        for (const auto& g : b.logs) emit([&](std::string& r) { log_row(r, g); });
      });
    copy("withdrawals", kWithdrawalColumns, [](const Block& b, auto&& emit) {
      for (const auto& w : b.withdrawals) emit([&](std::string& r) { withdrawal_row(r, b.number, w); });
    });
    for (std::size_t ti = 0; ti < event_tables.size(); ++ti) {
      const schema::EventTable& t = event_tables[ti];
      const auto& columns = event_columns[ti];
      copy(t.table, columns, [&](const Block& b, auto&& emit) {
        for (const auto& e : b.events)
          if (e.table == ti && e.decoded()) emit([&](std::string& r) { event_row(r, columns, b, t, e); });
      });
    }
    copy("undecodable", kUndecodableColumns, [&](const Block& b, auto&& emit) {
      for (const auto& e : b.events)
        if (!e.decoded()) emit([&](std::string& r) { undecodable_row(r, b.logs.at(e.log), event_tables.at(e.table), e); });
    });
  }

  // Makes the event tables that do not exist, and checks those that do against contract_tables.
  void ensure_event_tables(pqxx::connection& c, const std::string& q) {
    for (const auto& t : event_tables) {
      pqxx::work tx(c);
      tx.exec("SELECT pg_advisory_xact_lock(hashtext(" + tx.quote("chainidx:" + schema) + "))");
      const std::string table = q + "." + quote_ident(t.table);
      const std::string columns = describe_columns(t);
      auto known = tx.exec("SELECT signature, columns FROM " + q + ".contract_tables WHERE table_name = " + tx.quote(t.table));
      if (!known.empty()) {
        const std::string was_signature = known[0][0].as<std::string>(), was_columns = known[0][1].as<std::string>();
        if (was_signature == t.signature && was_columns == columns) continue;
        throw SinkError("postgres: table " + schema + "." + t.table + " was made for " + was_signature + " with columns (" + was_columns +
                            "); the ABI now gives " + t.signature + " with columns (" + columns +
                            "). chainidx does not change a table's meaning: give the contract another name in [[contracts]] "
                            "(a new table), or drop the table and its row (DROP TABLE " + schema + "." + t.table + "; DELETE FROM " +
                            schema + ".contract_tables WHERE table_name = '" + t.table + "') and replay its blocks with chainidx replay",
                        SinkError::Kind::kRefused);
      }
      auto exists = tx.exec1("SELECT to_regclass(" + tx.quote(schema + "." + t.table) + ") IS NOT NULL");
      if (exists[0].as<bool>())
        throw SinkError("postgres: table " + schema + "." + t.table + " exists but chainidx did not make it for contract " + t.contract +
                            " (no row in " + schema + ".contract_tables); rename the table or the contract",
                        SinkError::Kind::kRefused);
      std::string ddl = "CREATE TABLE " + table + " (block_number bigint NOT NULL, log_index integer NOT NULL, "
                        "block_hash bytea NOT NULL, block_timestamp bigint NOT NULL, transaction_hash bytea NOT NULL, "
                        "transaction_index integer NOT NULL, contract_address bytea NOT NULL";
      for (const auto& col : t.columns) ddl += ", " + quote_ident(col.name) + " " + sql_type(col.kind) + " NOT NULL";
      ddl += ", PRIMARY KEY (block_number, log_index))";
      tx.exec0(ddl);
      tx.exec0("CREATE INDEX ON " + table + " (contract_address, block_number)");
      for (const auto& col : t.columns)
        if (col.indexed) tx.exec0("CREATE INDEX ON " + table + " (" + quote_ident(col.name) + ", block_number)");
      tx.exec0("INSERT INTO " + q + ".contract_tables (table_name, contract, event, signature, columns) VALUES (" + tx.quote(t.table) +
               ", " + tx.quote(t.contract) + ", " + tx.quote(t.event) + ", " + tx.quote(t.signature) + ", " + tx.quote(columns) + ")");
      auto cursor = tx.exec("SELECT block_number FROM " + q + ".cursor");
      tx.commit();
      if (!cursor.empty())
        spdlog::warn("event=event_table_created table={}.{} signature={} reason=\"events of blocks up to the cursor ({}) are not in it: "
                     "chainidx replay --from <the contract's start block> --to {} fills them\"",
                     schema, t.table, t.signature, cursor[0][0].as<std::string>(), cursor[0][0].as<std::string>());
      else
        spdlog::info("event=event_table_created table={}.{} signature={}", schema, t.table, t.signature);
    }
  }

  void require_writer(pqxx::transaction_base& tx, const std::string& q, bool lock) {
    if (instance.empty()) return;
    auto r = tx.exec("SELECT instance, host, pid, claimed_at::text, epoch FROM " + q + ".writer" + (lock ? " FOR SHARE" : ""));
    if (!r.empty() && r[0][0].as<std::string>() == instance && r[0][4].as<std::int64_t>() == epoch) return;
    std::string other = r.empty() ? std::string("nobody") : r[0][0].as<std::string>() + " (host " + r[0][1].as<std::string>() +
                                                                  ", pid " + r[0][2].as<std::string>() + ", epoch " +
                                                                  r[0][4].as<std::string>() + ", since " + r[0][3].as<std::string>() + ")";
    throw SinkError("postgres: another instance leads chain " + schema + ": " + other + "; this one (" + instance + ", epoch " +
                        std::to_string(epoch) + ") writes nothing more and stops",
                    SinkError::Kind::kFenced);
  }
};

namespace {

// Both kinds of write take a batch that is linked inside itself.
void require_linked(std::span<const Block> blocks, const char* what) {
  for (std::size_t i = 1; i < blocks.size(); ++i)
    if (!blocks[i].follows(blocks[i - 1].ref()))
      throw std::logic_error(std::string(what) + ": batch is not a linked sequence at block " + std::to_string(blocks[i].number));
}

std::string bytea_literal(const schema::Hash32& h) { return "'\\x" + schema::to_hex(h).substr(2) + "'::bytea"; }

}  // namespace

PostgresSink::PostgresSink(std::string url, std::string schema_name) : impl_(std::make_unique<Impl>()) {
  impl_->url = std::move(url);
  impl_->schema = std::move(schema_name);
}

PostgresSink::~PostgresSink() = default;

void PostgresSink::migrate() {
  impl_->guarded("migrate", [&] {
    pqxx::connection& c = impl_->connection();
    const std::string q = c.quote_name(impl_->schema);
    for (const auto& m : schema::migrations()) {
      pqxx::work tx(c);
      // Serialises concurrent starts; released at commit.
      tx.exec("SELECT pg_advisory_xact_lock(hashtext(" + tx.quote("chainidx:" + impl_->schema) + "))");
      tx.exec0("CREATE SCHEMA IF NOT EXISTS " + q);
      tx.exec0("CREATE TABLE IF NOT EXISTS " + q + ".schema_migrations (version integer PRIMARY KEY, name text NOT NULL, "
               "applied_at timestamptz NOT NULL DEFAULT now())");
      auto applied = tx.exec1("SELECT count(*) FROM " + q + ".schema_migrations WHERE version = " + std::to_string(m.version));
      if (applied[0].as<int>() == 0) {
        tx.exec0(schema::render_migration(m, q));
        tx.exec0("INSERT INTO " + q + ".schema_migrations (version, name) VALUES (" + std::to_string(m.version) + ", " +
                 tx.quote(std::string(m.name)) + ")");
      }
      tx.commit();
    }
    impl_->ensure_event_tables(c, q);
  });
}

void PostgresSink::set_raw_logs(bool write) { impl_->raw_logs = write; }

void PostgresSink::set_event_tables(std::vector<schema::EventTable> tables) {
  impl_->event_tables = std::move(tables);
  impl_->event_columns.clear();
  for (const auto& t : impl_->event_tables) impl_->event_columns.push_back(event_columns(t));
}

std::optional<schema::BlockRef> PostgresSink::load_cursor() {
  return impl_->guarded("load cursor", [&]() -> std::optional<schema::BlockRef> {
    pqxx::connection& c = impl_->connection();
    pqxx::read_transaction tx(c);
    auto r = tx.exec("SELECT block_number, block_hash FROM " + c.quote_name(impl_->schema) + ".cursor");
    if (r.empty()) return std::nullopt;
    schema::BlockRef ref;
    ref.number = r[0][0].as<std::uint64_t>();
    ref.hash = hash_from_bytea(r[0][1]);
    return ref;
  });
}

std::vector<std::pair<schema::Address, std::uint64_t>> PostgresSink::addresses_in(const std::string& table, const std::string& column) {
  return impl_->guarded("load factory-made addresses", [&] {
    pqxx::connection& c = impl_->connection();
    pqxx::read_transaction tx(c);
    std::vector<std::pair<schema::Address, std::uint64_t>> out;
    const std::string col = c.quote_name(column);
    for (const auto& row : tx.exec("SELECT " + col + ", min(block_number) FROM " + c.quote_name(impl_->schema) + "." + c.quote_name(table) +
                                   " WHERE octet_length(" + col + ") = 20 GROUP BY " + col))
      out.emplace_back(fixed_from_bytea<20>(row[0], "address"), row[1].as<std::uint64_t>());
    return out;
  });
}

PostgresSink::Leadership PostgresSink::try_lead(const std::string& instance, const std::string& host, int pid, std::chrono::seconds lease) {
  return impl_->guarded("leader election", [&] { return impl_->lead(instance, host, pid, lease); });
}

void PostgresSink::renew_leadership(std::chrono::seconds lease) {
  Impl& m = *impl_;
  if (m.lead_epoch == 0) throw std::logic_error("renew_leadership: this instance does not lead");
  // A session the server ended (terminated, restarted) shows only when it is used: then one more
  // attempt on a new session says at once whether this instance still leads.
  for (int attempt = 0;; ++attempt) {
    const std::uint64_t session = m.session;
    try {
      renew_once(lease);
      return;
    } catch (const SinkError& e) {
      if (attempt > 0 || e.kind() != SinkError::Kind::kRetryable || m.conn || m.session != session) throw;
    }
  }
}

void PostgresSink::renew_once(std::chrono::seconds lease) {
  Impl& m = *impl_;
  m.guarded("lease renewal", [&] {
    pqxx::connection& c = m.connection();
    const std::string q = c.quote_name(m.schema);
    Leadership l;
    if (m.lock_session != m.session) {
      // A new session: take the lock again (the row must still name this instance and epoch).
      l = m.lead(m.lead_instance, m.lead_host, m.lead_pid, lease);
      if (!l.ours) m.lost_leadership(l, m.lead_instance);
      spdlog::info("event=leader_lease_session_renewed chain={} epoch={}", m.schema, m.lead_epoch);
      return;
    }
    pqxx::nontransaction nt(c);
    // The lease row only: the writer row stays free for the writes' share locks (an UPDATE of it
    // would wait for an open write, and the next write for the UPDATE).
    auto r = nt.exec("UPDATE " + q + ".writer_lease SET lease_until = now() + interval '" + std::to_string(lease.count()) +
                     " seconds', backend_pid = pg_backend_pid() WHERE EXISTS (SELECT 1 FROM " + q + ".writer WHERE instance = " +
                     nt.quote(m.lead_instance) + " AND epoch = " + std::to_string(m.lead_epoch) + ") RETURNING 1");
    if (r.empty()) m.lost_leadership(m.read_leadership(nt, q, m.lead_instance), m.lead_instance);
  });
}

void PostgresSink::write_as(const std::string& instance, std::int64_t epoch) {
  abort_prepared();
  impl_->instance = instance;
  impl_->epoch = epoch;
  impl_->conn.reset();  // the next session carries the epoch's tag
}

void PostgresSink::check_writer() {
  impl_->guarded("check writer", [&] {
    pqxx::connection& c = impl_->connection();
    // One statement: no BEGIN and ROLLBACK around it (a third of the round trips).
    pqxx::nontransaction tx(c);
    impl_->require_writer(tx, c.quote_name(impl_->schema), /*lock=*/false);
  });
}

void PostgresSink::write(std::span<const Block> blocks) {
  prepare(blocks);
  commit_prepared();
}

void PostgresSink::prepare(std::span<const Block> blocks) {
  abort_prepared();
  if (blocks.empty()) return;
  impl_->copying = {};
  impl_->guarded("write", [&] {
    pqxx::connection& c = impl_->connection();
    const std::string q = c.quote_name(impl_->schema);
    // Held here until it is complete: on an error it rolls back before guarded() drops the
    // connection under it.
    auto tx = std::make_unique<pqxx::work>(c);
    impl_->require_writer(*tx, q, /*lock=*/true);
    // The cursor row is locked for the whole transaction: one writer per chain at a time.
    auto cur = tx->exec("SELECT block_number, block_hash FROM " + q + ".cursor FOR UPDATE");
    if (!cur.empty()) {
      std::uint64_t n = cur[0][0].as<std::uint64_t>();
      schema::Hash32 h = hash_from_bytea(cur[0][1]);
      if (n >= blocks.back().number) {
        // A retry of a batch whose commit reached the server although the answer was lost
        // (the connection broke during COMMIT): already written if the hash there agrees.
        if (n == blocks.back().number && h == blocks.back().hash) return;
        auto stored = tx->exec("SELECT hash FROM " + q + ".blocks WHERE number = " + std::to_string(blocks.back().number));
        if (!stored.empty() && hash_from_bytea(stored[0][0]) == blocks.back().hash) return;
      }
      if (n + 1 < blocks.front().number)
        throw CursorBehind("the stored cursor is at block " + std::to_string(n) + ", below the block " +
                               std::to_string(blocks.front().number - 1) + " this process wrote last: the database lost its newest commits",
                           n);
      if (!blocks.front().follows({n, h, {}}))
        throw std::logic_error("postgres write: block " + std::to_string(blocks.front().number) +
                               " does not continue the cursor at block " + std::to_string(n));
    }
    require_linked(blocks, "postgres write");

    impl_->copy_rows(*tx, q, blocks);
    CopyPosition& at = impl_->copying;
    at = {"cursor", {}};
    const Block& last = blocks.back();
    tx->exec0("INSERT INTO " + q + ".cursor (id, block_number, block_hash, updated_at) VALUES (true, " + std::to_string(last.number) +
              ", " + bytea_literal(last.hash) + ", now()) ON CONFLICT (id) DO UPDATE SET "
              "block_number = excluded.block_number, block_hash = excluded.block_hash, updated_at = now()");
    at = {};
    impl_->prepared = std::move(tx);
  });
}

void PostgresSink::commit_prepared() {
  if (!impl_->prepared) return;
  impl_->guarded("write", [&] {
    std::unique_ptr<pqxx::work> tx = std::move(impl_->prepared);
    tx->commit();
  });
}

void PostgresSink::abort_prepared() noexcept {
  try {
    impl_->prepared.reset();  // the transaction's destructor rolls it back
  } catch (...) {
  }
}

namespace {

// Extends a chunk's lease by its length, or fails with kFenced when another worker holds it now.
void renew(pqxx::work& tx, const std::string& q, const PostgresSink::Lease& lease) {
  auto renewed = tx.exec("UPDATE " + q + ".replay_chunks SET lease_until = now() + interval '" + std::to_string(lease.seconds) +
                         " seconds' WHERE job = " + tx.quote(lease.job) + " AND first_block = " + std::to_string(lease.first_block) +
                         " AND worker = " + tx.quote(lease.worker) + " AND NOT done");
  if (renewed.affected_rows() != 1)
    throw SinkError("postgres: replay chunk " + std::to_string(lease.first_block) + "-" + std::to_string(lease.last_block) + " of job " +
                        lease.job + " was taken over by another worker (its lease expired)",
                    SinkError::Kind::kFenced);
}

}  // namespace

void PostgresSink::renew_lease(const Lease& lease) {
  impl_->guarded("renew replay chunk lease", [&] {
    pqxx::connection& c = impl_->connection();
    pqxx::work tx(c);
    renew(tx, c.quote_name(impl_->schema), lease);
    tx.commit();
  });
}

void PostgresSink::write_range(std::span<const Block> blocks, const Lease* lease) {
  if (blocks.empty()) return;
  require_linked(blocks, "postgres range write");
  impl_->copying = {};
  impl_->guarded("range write", [&] {
    pqxx::connection& c = impl_->connection();
    const std::string q = c.quote_name(impl_->schema);
    pqxx::work tx(c);
    if (lease) renew(tx, q, *lease);
    // The live writer's cursor: locked for this one transaction, so that a running `run` waits
    // at most one batch; replay never writes above it.
    auto cur = tx.exec("SELECT block_number FROM " + q + ".cursor FOR UPDATE");
    std::optional<std::uint64_t> cursor;
    if (!cur.empty()) cursor = cur[0][0].as<std::uint64_t>();
    if (cursor && blocks.back().number > *cursor)
      throw SinkError("postgres: blocks " + std::to_string(blocks.front().number) + "-" + std::to_string(blocks.back().number) +
                          " reach above the cursor at block " + std::to_string(*cursor) + ", which only `chainidx run` writes",
                      SinkError::Kind::kRefused);
    const std::string range = std::to_string(blocks.front().number) + " AND " + std::to_string(blocks.back().number);
    // Every table's rows of the range, including rows whose block row was deleted by hand
    // (there are no foreign keys: the writer keeps them together).
    tx.exec0("DELETE FROM " + q + ".blocks WHERE number BETWEEN " + range);
    for (const char* table : {".transactions", ".logs", ".withdrawals", ".undecodable"})
      tx.exec0("DELETE FROM " + q + table + " WHERE block_number BETWEEN " + range);
    for (const auto& t : impl_->event_tables)
      tx.exec0("DELETE FROM " + q + "." + quote_ident(t.table) + " WHERE block_number BETWEEN " + range);
    impl_->copy_rows(tx, q, blocks);
    impl_->copying = {"cursor", {}};
    if (cursor && *cursor >= blocks.front().number && *cursor <= blocks.back().number) {
      const Block& at = blocks[*cursor - blocks.front().number];
      tx.exec0("UPDATE " + q + ".cursor SET block_hash = " + bytea_literal(at.hash) + ", updated_at = now()");
    }
    impl_->copying = {};
    tx.commit();
  });
}

std::optional<schema::BlockRef> PostgresSink::stored_block(std::uint64_t number) {
  return impl_->guarded("read block", [&]() -> std::optional<schema::BlockRef> {
    pqxx::connection& c = impl_->connection();
    pqxx::read_transaction tx(c);
    auto r = tx.exec("SELECT hash, parent_hash FROM " + c.quote_name(impl_->schema) + ".blocks WHERE number = " + std::to_string(number));
    if (r.empty()) return std::nullopt;
    return schema::BlockRef{number, hash_from_bytea(r[0][0]), hash_from_bytea(r[0][1])};
  });
}

void PostgresSink::plan_replay(const std::string& job, std::uint64_t first, std::uint64_t last, std::uint64_t chunk_blocks) {
  impl_->guarded("plan replay", [&] {
    pqxx::connection& c = impl_->connection();
    pqxx::work tx(c);
    tx.exec0("INSERT INTO " + c.quote_name(impl_->schema) + ".replay_chunks (job, first_block, last_block) SELECT " + tx.quote(job) +
             ", f, least(f + " + std::to_string(chunk_blocks - 1) + ", " + std::to_string(last) + ") FROM generate_series(" +
             std::to_string(first) + "::bigint, " + std::to_string(last) + "::bigint, " + std::to_string(chunk_blocks) +
             "::bigint) AS f ON CONFLICT DO NOTHING");
    tx.commit();
  });
}

std::optional<PostgresSink::Lease> PostgresSink::claim_chunk(const std::string& job, const std::string& worker, int lease_seconds,
                                                             bool in_order) {
  return impl_->guarded("claim replay chunk", [&]() -> std::optional<Lease> {
    pqxx::connection& c = impl_->connection();
    const std::string q = c.quote_name(impl_->schema);
    pqxx::work tx(c);
    const std::string free = "(lease_until IS NULL OR lease_until < now())";
    // In order: the lowest chunk not done, locked (waiting for a worker claiming it now), and
    // claimed only if nobody holds it.
    const std::string lowest = in_order ? " AND NOT done ORDER BY first_block LIMIT 1 FOR UPDATE) AND " + free
                                        : " AND NOT done AND " + free + " ORDER BY first_block LIMIT 1 FOR UPDATE SKIP LOCKED)";
    auto r = tx.exec("UPDATE " + q + ".replay_chunks SET worker = " + tx.quote(worker) + ", lease_until = now() + interval '" +
                     std::to_string(lease_seconds) + " seconds' WHERE (job, first_block) = (SELECT job, first_block FROM " + q +
                     ".replay_chunks WHERE job = " + tx.quote(job) + lowest + " RETURNING first_block, last_block");
    tx.commit();
    if (r.empty()) return std::nullopt;
    return Lease{job, r[0][0].as<std::uint64_t>(), r[0][1].as<std::uint64_t>(), worker, lease_seconds};
  });
}

void PostgresSink::finish_chunk(const Lease& lease) {
  impl_->guarded("finish replay chunk", [&] {
    pqxx::connection& c = impl_->connection();
    pqxx::work tx(c);
    auto r = tx.exec("UPDATE " + c.quote_name(impl_->schema) + ".replay_chunks SET done = true, done_at = now() WHERE job = " +
                     tx.quote(lease.job) + " AND first_block = " + std::to_string(lease.first_block) + " AND worker = " +
                     tx.quote(lease.worker));
    if (r.affected_rows() != 1)
      throw SinkError("postgres: replay chunk " + std::to_string(lease.first_block) + " of job " + lease.job + " was taken over",
                      SinkError::Kind::kFenced);
    tx.commit();
  });
}

std::pair<std::uint64_t, std::uint64_t> PostgresSink::replay_progress(const std::string& job) {
  return impl_->guarded("replay progress", [&]() -> std::pair<std::uint64_t, std::uint64_t> {
    pqxx::connection& c = impl_->connection();
    pqxx::read_transaction tx(c);
    auto r = tx.exec1("SELECT count(*) FILTER (WHERE done), count(*) FROM " + c.quote_name(impl_->schema) +
                      ".replay_chunks WHERE job = " + tx.quote(job));
    return {r[0].as<std::uint64_t>(), r[1].as<std::uint64_t>()};
  });
}

std::vector<PostgresSink::ReplayJob> PostgresSink::replay_jobs() {
  return impl_->guarded("replay jobs", [&] {
    pqxx::connection& c = impl_->connection();
    pqxx::read_transaction tx(c);
    auto rows = tx.exec("SELECT job, min(first_block), max(last_block), count(*), count(*) FILTER (WHERE done), "
                        "sum(last_block - first_block + 1), coalesce(sum(last_block - first_block + 1) FILTER (WHERE done), 0), "
                        "count(*) FILTER (WHERE NOT done AND lease_until > now()), "
                        "coalesce(string_agg(DISTINCT worker, ','), ''), "
                        "CASE WHEN bool_and(done) THEN extract(epoch FROM max(done_at))::bigint ELSE 0 END "
                        "FROM " + c.quote_name(impl_->schema) + ".replay_chunks GROUP BY job ORDER BY max(last_block) DESC, job");
    std::vector<ReplayJob> out;
    for (const auto& r : rows) {
      ReplayJob j;
      j.job = r[0].as<std::string>();
      j.first_block = r[1].as<std::uint64_t>();
      j.last_block = r[2].as<std::uint64_t>();
      j.chunks = r[3].as<std::uint64_t>();
      j.chunks_done = r[4].as<std::uint64_t>();
      j.blocks = r[5].as<std::uint64_t>();
      j.blocks_done = r[6].as<std::uint64_t>();
      j.chunks_leased = r[7].as<std::uint64_t>();
      j.workers = r[8].as<std::string>();
      j.finished_at = r[9].is_null() ? 0 : r[9].as<std::int64_t>();
      out.push_back(std::move(j));
    }
    return out;
  });
}

}  // namespace chainidx::sinks

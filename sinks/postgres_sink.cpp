#include "sinks/postgres_sink.hpp"

#include "schema/tx_json.hpp"

#include <pqxx/pqxx>
#include <pqxx/tablewriter>

#include <regex>

#include "schema/migrations.hpp"
#include "schema/redact.hpp"

namespace chainidx::sinks {
namespace {

using schema::Block;

// COPY ... FROM STDIN text format: tab-separated, \N for NULL. Every value we write is a number
// or hex, so no character needs escaping except the backslash that starts bytea's \x prefix.
class CopyLine {
 public:
  CopyLine& bytes(const std::uint8_t* data, std::size_t size) {
    sep();
    static constexpr char kHex[] = "0123456789abcdef";
    const std::size_t at = line_.size();
    line_.resize(at + 3 + 2 * size);
    char* out = line_.data() + at;
    out[0] = '\\';
    out[1] = '\\';
    out[2] = 'x';
    out += 3;
    for (std::size_t i = 0; i < size; ++i) {
      out[2 * i] = kHex[data[i] >> 4];
      out[2 * i + 1] = kHex[data[i] & 0xf];
    }
    return *this;
  }
  template <std::size_t N>
  CopyLine& bytes(const schema::FixedBytes<N>& v) { return bytes(v.data(), N); }
  CopyLine& bytes(const schema::Bytes& v) { return bytes(v.data(), v.size()); }
  template <class T>
  CopyLine& opt_bytes(const std::optional<T>& v) { return v ? bytes(*v) : null(); }
  CopyLine& num(std::uint64_t v) {
    sep();
    line_ += std::to_string(v);
    return *this;
  }
  template <class T>
  CopyLine& opt_num(const std::optional<T>& v) { return v ? num(*v) : null(); }
  CopyLine& u256(const schema::U256& v) {
    sep();
    line_ += v.to_decimal();
    return *this;
  }
  CopyLine& opt_u256(const std::optional<schema::U256>& v) { return v ? u256(*v) : null(); }
  /// Text that needs no escaping (our JSON: hex, digits, punctuation).
  CopyLine& raw(const std::string& text) {
    sep();
    line_ += text;
    return *this;
  }
  CopyLine& null() {
    sep();
    line_ += "\\N";
    return *this;
  }
  const std::string& str() const { return line_; }

 private:
  void sep() {
    if (!first_) line_.push_back('\t');
    first_ = false;
  }
  std::string line_;
  bool first_ = true;
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

std::string block_line(const Block& b) {
  CopyLine l;
  l.num(b.number).bytes(b.hash).bytes(b.parent_hash).num(b.timestamp).bytes(b.miner).num(b.gas_limit).num(b.gas_used)
      .opt_u256(b.base_fee_per_gas).u256(b.difficulty).bytes(b.state_root).bytes(b.transactions_root)
      .bytes(b.receipts_root).bytes(b.logs_bloom).bytes(b.extra_data).num(b.size).opt_num(b.blob_gas_used)
      .opt_num(b.excess_blob_gas).opt_bytes(b.parent_beacon_block_root).opt_bytes(b.withdrawals_root)
      .opt_bytes(b.requests_hash).bytes(b.sha3_uncles).bytes(b.mix_hash).bytes(b.nonce).num(b.transaction_count)
      .opt_u256(b.total_difficulty);
  return l.str();
}

std::string transaction_line(const schema::Transaction& t) {
  CopyLine l;
  l.num(t.block_number).num(t.transaction_index).bytes(t.hash).bytes(t.block_hash).bytes(t.from_address)
      .opt_bytes(t.to_address).u256(t.value).num(t.gas).opt_u256(t.gas_price).opt_u256(t.max_fee_per_gas)
      .opt_u256(t.max_priority_fee_per_gas).bytes(t.input).num(t.nonce).num(t.type).opt_num(t.status).num(t.gas_used)
      .num(t.cumulative_gas_used).opt_u256(t.effective_gas_price).opt_bytes(t.contract_address).num(t.log_count)
      .opt_bytes(t.root).opt_u256(t.v).opt_u256(t.r).opt_u256(t.s).opt_num(t.y_parity).opt_num(t.chain_id);
  if (t.access_list) l.raw(schema::access_list_json(*t.access_list));
  else l.null();
  l.opt_u256(t.max_fee_per_blob_gas);
  if (t.type == 3 || !t.blob_versioned_hashes.empty()) l.raw(schema::hashes_json(t.blob_versioned_hashes));
  else l.null();
  if (t.authorization_list) l.raw(schema::authorization_list_json(*t.authorization_list));
  else l.null();
  l.opt_bytes(t.logs_bloom);
  return l.str();
}

std::string withdrawal_line(std::uint64_t block_number, const schema::Withdrawal& w) {
  CopyLine l;
  l.num(block_number).num(w.index).num(w.validator_index).bytes(w.address).num(w.amount_gwei);
  return l.str();
}

std::string log_line(const schema::Log& g) {
  CopyLine l;
  l.num(g.block_number).num(g.log_index).bytes(g.block_hash).bytes(g.transaction_hash).num(g.transaction_index)
      .bytes(g.address);
  for (std::size_t i = 0; i < 4; ++i) {
    if (i < g.topics.size()) l.bytes(g.topics[i]);
    else l.null();
  }
  l.bytes(g.data);
  return l.str();
}

// COPY FROM STDIN with lines we format ourselves (CopyLine). libpqxx 6.4 offers that only through
// tablewriter::write_raw_line (stream_to keeps it private), deprecated there in favour of
// stream_to's tuple interface, which would copy every value into a string first.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
class Copy {
 public:
  Copy(pqxx::transaction_base& tx, const std::string& table, const std::vector<std::string>& columns)
      : w_(tx, table, columns.begin(), columns.end()) {}
  void write_raw_line(const std::string& line) { w_.write_raw_line(line); }
  void complete() { w_.complete(); }

 private:
  pqxx::tablewriter w_;
};
#pragma GCC diagnostic pop

schema::Hash32 hash_from_bytea(const pqxx::field& f) {
  pqxx::binarystring bin(f);
  schema::Hash32 h;
  if (bin.size() != 32) throw std::logic_error("cursor hash is not 32 bytes");
  std::copy(bin.begin(), bin.end(), h.bytes.begin());
  return h;
}

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
  std::string instance;  // this process's writer claim, once claimed
  CopyPosition copying;  // the COPY in progress during write()

  // A database that stops answering must not hang the pipeline: connects give up after 10 s
  // (unless the URL says otherwise) and statements after 120 s; both surface as SinkError and
  // are retried.
  pqxx::connection& connection() {
    if (!conn || !conn->is_open()) {
      std::string target = url;
      if (target.find("connect_timeout=") == std::string::npos)
        target += (target.find('?') == std::string::npos ? "?" : "&") + std::string("connect_timeout=10");
      conn = std::make_unique<pqxx::connection>(target);
      pqxx::nontransaction(*conn).exec("SET statement_timeout = '120s'");
    }
    return *conn;
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
  void copy_rows(pqxx::work& tx, const std::string& q, std::span<const Block> blocks) {
    tx.exec0("SET LOCAL search_path TO " + q);
    CopyPosition& at = copying;
    auto copy = [&](const char* table, const std::vector<std::string>& columns, auto&& lines_of) {
      at = {table, {}};
      Copy s(tx, table, columns);
      for (const auto& b : blocks)
        lines_of(b, [&](const std::string& line) {
          at.line_blocks.push_back(b.number);
          s.write_raw_line(line);
        });
      s.complete();
    };
    copy("blocks", kBlockColumns, [](const Block& b, auto&& emit) { emit(block_line(b)); });
    copy("transactions", kTransactionColumns, [](const Block& b, auto&& emit) {
      for (const auto& t : b.transactions) emit(transaction_line(t));
    });
    copy("logs", kLogColumns, [](const Block& b, auto&& emit) {
      for (const auto& g : b.logs) emit(log_line(g));
    });
    copy("withdrawals", kWithdrawalColumns, [](const Block& b, auto&& emit) {
      for (const auto& w : b.withdrawals) emit(withdrawal_line(b.number, w));
    });
  }

  void require_writer(pqxx::transaction_base& tx, const std::string& q, bool lock) {
    if (instance.empty()) return;
    auto r = tx.exec("SELECT instance, host, pid, claimed_at::text FROM " + q + ".writer" + (lock ? " FOR SHARE" : ""));
    if (!r.empty() && r[0][0].as<std::string>() == instance) return;
    std::string other = r.empty() ? std::string("nobody") : r[0][0].as<std::string>() + " (host " + r[0][1].as<std::string>() +
                                                                  ", pid " + r[0][2].as<std::string>() + ", since " +
                                                                  r[0][3].as<std::string>() + ")";
    throw SinkError("postgres: another instance claimed chain " + schema + ": " + other + "; this one (" + instance +
                        ") writes nothing more and stops",
                    SinkError::Kind::kFenced);
  }
};

namespace {

// Both kinds of write take a batch that is linked inside itself.
void require_linked(std::span<const Block> blocks, const char* what) {
  for (std::size_t i = 1; i < blocks.size(); ++i)
    if (blocks[i].number != blocks[i - 1].number + 1 || blocks[i].parent_hash != blocks[i - 1].hash)
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
  });
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

void PostgresSink::claim_writer(const std::string& instance, const std::string& host, int pid) {
  impl_->guarded("claim writer", [&] {
    pqxx::connection& c = impl_->connection();
    const std::string q = c.quote_name(impl_->schema);
    pqxx::work tx(c);
    tx.exec0("INSERT INTO " + q + ".writer (id, instance, host, pid, claimed_at) VALUES (true, " + tx.quote(instance) + ", " +
             tx.quote(host) + ", " + std::to_string(pid) + ", now()) ON CONFLICT (id) DO UPDATE SET instance = excluded.instance, "
             "host = excluded.host, pid = excluded.pid, claimed_at = excluded.claimed_at");
    tx.commit();
  });
  impl_->instance = instance;
}

void PostgresSink::check_writer() {
  impl_->guarded("check writer", [&] {
    pqxx::connection& c = impl_->connection();
    pqxx::read_transaction tx(c);
    impl_->require_writer(tx, c.quote_name(impl_->schema), /*lock=*/false);
  });
}

void PostgresSink::write(std::span<const Block> blocks) {
  if (blocks.empty()) return;
  impl_->copying = {};
  impl_->guarded("write", [&] {
    pqxx::connection& c = impl_->connection();
    const std::string q = c.quote_name(impl_->schema);
    pqxx::work tx(c);
    impl_->require_writer(tx, q, /*lock=*/true);
    // The cursor row is locked for the whole transaction: one writer per chain at a time.
    auto cur = tx.exec("SELECT block_number, block_hash FROM " + q + ".cursor FOR UPDATE");
    if (!cur.empty()) {
      std::uint64_t n = cur[0][0].as<std::uint64_t>();
      schema::Hash32 h = hash_from_bytea(cur[0][1]);
      if (n >= blocks.back().number) {
        // A retry of a batch whose commit reached the server although the answer was lost
        // (the connection broke during COMMIT): already written if the hash there agrees.
        auto stored = tx.exec("SELECT hash FROM " + q + ".blocks WHERE number = " + std::to_string(blocks.back().number));
        if (!stored.empty() && hash_from_bytea(stored[0][0]) == blocks.back().hash) return;
      }
      if (blocks.front().number != n + 1 || blocks.front().parent_hash != h)
        throw std::logic_error("postgres write: block " + std::to_string(blocks.front().number) +
                               " does not continue the cursor at block " + std::to_string(n));
    }
    require_linked(blocks, "postgres write");

    impl_->copy_rows(tx, q, blocks);
    CopyPosition& at = impl_->copying;
    at = {"cursor", {}};
    const Block& last = blocks.back();
    tx.exec0("INSERT INTO cursor (id, block_number, block_hash, updated_at) VALUES (true, " + std::to_string(last.number) +
             ", " + bytea_literal(last.hash) + ", now()) ON CONFLICT (id) DO UPDATE SET "
             "block_number = excluded.block_number, block_hash = excluded.block_hash, updated_at = now()");
    at = {};
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
    if (lease) {
      auto renewed = tx.exec("UPDATE " + q + ".replay_chunks SET lease_until = now() + interval '" + std::to_string(lease->seconds) +
                             " seconds' WHERE job = " + tx.quote(lease->job) + " AND first_block = " +
                             std::to_string(lease->first_block) + " AND worker = " + tx.quote(lease->worker) + " AND NOT done");
      if (renewed.affected_rows() != 1)
        throw SinkError("postgres: replay chunk " + std::to_string(lease->first_block) + "-" + std::to_string(lease->last_block) +
                            " of job " + lease->job + " was taken over by another worker (its lease expired)",
                        SinkError::Kind::kFenced);
    }
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
    // Transactions, logs and withdrawals go with their blocks (ON DELETE CASCADE).
    tx.exec0("DELETE FROM " + q + ".blocks WHERE number BETWEEN " + range);
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

std::optional<PostgresSink::Lease> PostgresSink::claim_chunk(const std::string& job, const std::string& worker, int lease_seconds) {
  return impl_->guarded("claim replay chunk", [&]() -> std::optional<Lease> {
    pqxx::connection& c = impl_->connection();
    const std::string q = c.quote_name(impl_->schema);
    pqxx::work tx(c);
    auto r = tx.exec("UPDATE " + q + ".replay_chunks SET worker = " + tx.quote(worker) + ", lease_until = now() + interval '" +
                     std::to_string(lease_seconds) + " seconds' WHERE (job, first_block) = (SELECT job, first_block FROM " + q +
                     ".replay_chunks WHERE job = " + tx.quote(job) + " AND NOT done AND (lease_until IS NULL OR lease_until < now()) "
                     "ORDER BY first_block LIMIT 1 FOR UPDATE SKIP LOCKED) RETURNING first_block, last_block");
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

}  // namespace chainidx::sinks

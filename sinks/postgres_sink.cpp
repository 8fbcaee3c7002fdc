#include "sinks/postgres_sink.hpp"

#include <pqxx/pqxx>
#include <pqxx/tablewriter>

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
    line_ += "\\\\x";
    for (std::size_t i = 0; i < size; ++i) {
      line_.push_back(kHex[data[i] >> 4]);
      line_.push_back(kHex[data[i] & 0xf]);
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
    "transaction_count"};
const std::vector<std::string> kTransactionColumns = {
    "block_number", "transaction_index", "hash", "block_hash", "from_address", "to_address", "value", "gas",
    "gas_price", "max_fee_per_gas", "max_priority_fee_per_gas", "input", "nonce", "type", "status", "gas_used",
    "cumulative_gas_used", "effective_gas_price", "contract_address", "log_count"};
const std::vector<std::string> kLogColumns = {
    "block_number", "log_index", "block_hash", "transaction_hash", "transaction_index", "address",
    "topic0", "topic1", "topic2", "topic3", "data"};

std::string block_line(const Block& b) {
  CopyLine l;
  l.num(b.number).bytes(b.hash).bytes(b.parent_hash).num(b.timestamp).bytes(b.miner).num(b.gas_limit).num(b.gas_used)
      .opt_u256(b.base_fee_per_gas).u256(b.difficulty).bytes(b.state_root).bytes(b.transactions_root)
      .bytes(b.receipts_root).bytes(b.logs_bloom).bytes(b.extra_data).num(b.size).opt_num(b.blob_gas_used)
      .opt_num(b.excess_blob_gas).opt_bytes(b.parent_beacon_block_root).opt_bytes(b.withdrawals_root)
      .opt_bytes(b.requests_hash).bytes(b.sha3_uncles).bytes(b.mix_hash).bytes(b.nonce).num(b.transaction_count);
  return l.str();
}

std::string transaction_line(const schema::Transaction& t) {
  CopyLine l;
  l.num(t.block_number).num(t.transaction_index).bytes(t.hash).bytes(t.block_hash).bytes(t.from_address)
      .opt_bytes(t.to_address).u256(t.value).num(t.gas).opt_u256(t.gas_price).opt_u256(t.max_fee_per_gas)
      .opt_u256(t.max_priority_fee_per_gas).bytes(t.input).num(t.nonce).num(t.type).opt_num(t.status).num(t.gas_used)
      .num(t.cumulative_gas_used).opt_u256(t.effective_gas_price).opt_bytes(t.contract_address).num(t.log_count);
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

}  // namespace

struct PostgresSink::Impl {
  std::string url;
  std::string schema;  // already validated as [a-z_][a-z0-9_]*
  std::unique_ptr<pqxx::connection> conn;

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

  // Any libpqxx failure from the peer becomes a SinkError naming the server without secrets;
  // the connection is dropped so that the next attempt reconnects.
  template <class F>
  auto guarded(const char* what, F&& f) {
    try {
      return f();
    } catch (const pqxx::broken_connection& e) {
      conn.reset();
      throw SinkError(std::string("postgres ") + what + " at " + schema::redact_url(url) + ": connection lost: " + e.what());
    } catch (const pqxx::sql_error& e) {
      conn.reset();
      throw SinkError(std::string("postgres ") + what + ": " + e.what());
    } catch (const pqxx::failure& e) {
      conn.reset();
      throw SinkError(std::string("postgres ") + what + " at " + schema::redact_url(url) + ": " + e.what());
    }
  }
};

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

void PostgresSink::write(std::span<const Block> blocks) {
  if (blocks.empty()) return;
  impl_->guarded("write", [&] {
    pqxx::connection& c = impl_->connection();
    const std::string q = c.quote_name(impl_->schema);
    pqxx::work tx(c);
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
    for (std::size_t i = 1; i < blocks.size(); ++i)
      if (blocks[i].number != blocks[i - 1].number + 1 || blocks[i].parent_hash != blocks[i - 1].hash)
        throw std::logic_error("postgres write: batch is not a linked sequence at block " + std::to_string(blocks[i].number));

    tx.exec0("SET LOCAL search_path TO " + q);
    {
      Copy s(tx, "blocks", kBlockColumns);
      for (const auto& b : blocks) s.write_raw_line(block_line(b));
      s.complete();
    }
    {
      Copy s(tx, "transactions", kTransactionColumns);
      for (const auto& b : blocks)
        for (const auto& t : b.transactions) s.write_raw_line(transaction_line(t));
      s.complete();
    }
    {
      Copy s(tx, "logs", kLogColumns);
      for (const auto& b : blocks)
        for (const auto& g : b.logs) s.write_raw_line(log_line(g));
      s.complete();
    }
    const Block& last = blocks.back();
    tx.exec0("INSERT INTO cursor (id, block_number, block_hash, updated_at) VALUES (true, " + std::to_string(last.number) +
             ", '\\x" + schema::to_hex(last.hash).substr(2) + "'::bytea, now()) ON CONFLICT (id) DO UPDATE SET "
             "block_number = excluded.block_number, block_hash = excluded.block_hash, updated_at = now()");
    tx.commit();
  });
}

}  // namespace chainidx::sinks

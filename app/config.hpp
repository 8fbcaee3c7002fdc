#pragma once
// chainidx's TOML configuration: the contract in DESIGN.md, parsed and validated in one place.
// Every error names the key and says how to fix it.

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "abi/event_catalog.hpp"
#include "schema/result.hpp"

namespace chainidx::app {

struct EndpointConfig {
  /// How logs, metrics and status name the endpoint. Default: scheme, host and port with every
  /// host label left of the registered domain masked (see schema::endpoint_label).
  std::string name;
  std::string ws;    ///< ws:// or wss:// URL (may hold an API key: print only redacted)
  std::string http;  ///< http:// or https:// URL (same)
  /// "alchemy", "infura", "quicknode", "public" or "" (none): sets the three limits below from
  /// the provider's documented figures; keys set explicitly win.
  std::string preset;
  double requests_per_second = 50;  ///< JSON-RPC calls per second (each call in a batch counts)
  std::uint32_t burst = 100;
  std::uint32_t max_in_flight = 4;  ///< HTTP requests (batches) at once
};

/// A provider's documented limits: calls per second, burst, concurrent requests.
struct EndpointPreset {
  const char* name;
  double requests_per_second;
  std::uint32_t burst;
  std::uint32_t max_in_flight;
};
/// The presets `preset = "..."` accepts.
const std::vector<EndpointPreset>& endpoint_presets();

enum class DeepReorgPolicy { kHalt };

struct Config {
  struct Chain {
    std::string name;
    std::uint64_t chain_id = 0;
    std::uint64_t confirmations = 12;  ///< the depth; with confirm_tag, the buffer's ceiling (kMaxConfirmations)
    std::string confirm_tag;           ///< "safe" or "finalized": confirmed up to the node's tagged block ("": by depth)
    std::uint64_t start_block = 0;
    DeepReorgPolicy deep_reorg_policy = DeepReorgPolicy::kHalt;
    bool verify_block_hash = true;  ///< refuse blocks whose header fields do not hash to their hash
    std::uint32_t head_stall_timeout_seconds = 60;  ///< drop a WebSocket that brought no head this long
    std::string tls_ca_file;  ///< extra PEM CA certificates to trust for wss:// and https:// (optional)
    std::uint32_t ws_ping_interval_seconds = 10;     ///< WebSocket ping when idle; dead after 2 intervals unanswered
    std::uint32_t ws_handshake_timeout_seconds = 10;  ///< TCP + TLS + WebSocket upgrade + subscription answer
    std::uint32_t http_timeout_seconds = 15;          ///< one HTTP JSON-RPC request, connect included
    std::uint32_t retry_after_max_seconds = 60;       ///< a server's Retry-After is capped at this
    std::uint32_t backoff_initial_ms = 200;           ///< first retry wait (RPC and WebSocket reconnects)
    std::uint32_t backoff_max_ms = 30000;             ///< longest retry wait
    std::uint32_t undecodable_after_rounds = 5;       ///< stop when every endpoint's block failed validation this often
    std::uint32_t circuit_failures = 5;               ///< failures in a row that open an endpoint's circuit
    std::uint32_t circuit_cooldown_seconds = 60;      ///< an open circuit sends nothing this long, then one probe
    std::uint32_t endpoint_max_lag_blocks = 5;        ///< an endpoint further behind the best head serves no head
    std::uint32_t block_interval_ms = 0;              ///< the chain's block interval; 0: learned from the heads
    std::uint32_t repoll_interval_seconds = 60;       ///< re-check recently confirmed hashes this often (0: never)
    std::uint32_t verify_with = 0;                    ///< check each batch's newest block against this many other endpoints
    std::uint32_t repoll_blocks = 64;                 ///< how many of the newest confirmed blocks the re-poll checks
    std::vector<EndpointConfig> endpoints;
    /// [[contracts]] (or [[chains.contracts]]): the contracts whose events are decoded into
    /// tables <contract>_<event> and the topic <chain>.events.<contract> (docs/events.md).
    std::vector<abi::ContractEvents> contracts;
    /// chain.index: "all" (every block, transaction and log, and the contracts' events) or
    /// "events" (only the contracts' logs and events: history by eth_getLogs, no block rows).
    bool index_events_only = false;
    /// chain.raw_logs: the `logs` table and `<chain>.logs` topic are written (the default). false:
    /// the contracts' logs reach only their event tables and topics (and the dead-letter ones).
    bool raw_logs = true;
    /// The contracts' catalog (validated when the config was read, so it always builds).
    abi::EventCatalog catalog() const;
  } chain;  ///< the chain this config is about: the only one, or (see for_chain) one of `chains`
  /// Every chain the process indexes: [chain] alone, or each [[chains]] table in order. Each has
  /// its own endpoints, depth, cursor, Postgres schema and Kafka topics (both named by its name).
  std::vector<Chain> chains;
  /// This config about chains[i] (`chain` set to it); the other sections are shared.
  Config for_chain(std::size_t i) const {
    Config c = *this;
    c.chain = chains.at(i);
    return c;
  }
  struct Postgres {
    std::string url;
  } postgres;
  struct Kafka {
    std::string brokers;  ///< "host:port[,host:port...]" or "embedded"
    std::uint32_t partitions = 3;
    std::uint32_t replication_factor = 1;
    std::uint32_t transaction_timeout_seconds = 60;  ///< a batch's Kafka transaction; aborted and resent after it
    std::string compression = "lz4";  ///< compression.codec: none, gzip, snappy, lz4 or zstd
    bool topic_per_event = false;  ///< event_topics = "event": <chain>.events.<contract>.<event> (else per contract)
    /// How the clients reach a managed cluster: "plaintext" (the default), "ssl", "sasl_plaintext"
    /// or "sasl_ssl".
    std::string security_protocol = "plaintext";
    std::string sasl_mechanism;  ///< "PLAIN", "SCRAM-SHA-256" or "SCRAM-SHA-512" (with sasl_*)
    std::string sasl_username;
    std::string sasl_password;         ///< secret: from the environment ("${VAR}"), never printed
    std::string ssl_ca_file;           ///< PEM CA certificates that sign the brokers' certificates
    std::string ssl_certificate_file;  ///< the client's PEM certificate (mutual TLS)
    std::string ssl_key_file;          ///< the client's PEM private key (mutual TLS)
    std::string ssl_key_password;      ///< secret: the key file's password, if it has one
    /// [kafka.properties]: other librdkafka properties, passed through to every client as given
    /// (checked by librdkafka when the config is read; those chainidx sets itself are refused).
    std::vector<std::pair<std::string, std::string>> properties;
    /// Every librdkafka property the keys above stand for (security first, then `properties`).
    std::vector<std::pair<std::string, std::string>> client_properties() const;
  } kafka;
  struct Server {
    std::string listen = "127.0.0.1:9464";
    std::uint32_t ready_max_lag_blocks = 10;      ///< /readyz: at most this many confirmed blocks not yet written
    std::uint32_t unhealthy_after_seconds = 300;  ///< /healthz: 503 once a sink write has failed this long
    /// After a deep-reorg halt, keep serving /healthz (503, with the reason) and /metrics until
    /// SIGTERM/SIGINT, then exit with code 3; false: exit with code 3 at once.
    bool hold_on_halt = true;
    /// Enables /admin/ (replays) for requests carrying "Authorization: Bearer <token>". Empty:
    /// the admin API is off. A secret: set it from the environment ("${VAR}").
    std::string admin_token;
  } server;
  /// Leader election: `chainidx run` processes of one chain with the same Postgres elect one
  /// leader; the others wait as hot standbys.
  struct Ha {
    /// The leader renews its lease every third of this; a standby takes over a leader whose lease
    /// ran out (a paused or cut-off process). A leader that exits or dies is replaced at once.
    std::uint32_t lease_seconds = 15;
  } ha;
  struct Log {
    std::string format = "text";  ///< "text": time, level and key=value pairs; "json": one JSON object per line
    std::string level = "info";   ///< trace, debug, info, warn, error, critical or off (CHAINIDX_LOG_LEVEL wins)
  } log;
  struct Pipeline {
    std::uint32_t batch_blocks = 100;  ///< most confirmed blocks written in one sink transaction
    std::uint32_t sink_retry_initial_ms = 500;  ///< first wait before a failed sink write is retried
    std::uint32_t sink_retry_max_ms = 30000;    ///< longest wait between sink write retries
    /// The live write of the block the next head confirms, prepared before that head comes and
    /// committed when it does: "postgres" (its rows copied), "all" (its Kafka transaction
    /// produced too) or "off".
    std::string stage_ahead = "postgres";
    std::uint32_t max_batch_delay_ms = 2000;    ///< a confirmed block waits at most this long for its batch to fill
    std::uint32_t range_batch_blocks = 50;      ///< history: blocks per JSON-RPC batch (lowered for big answers)
    std::uint32_t range_buffer_mb = 64;         ///< history: fetched and not yet written, at most (about)
    std::uint32_t log_range_blocks = 2000;      ///< logs-only history: the first eth_getLogs width per endpoint
    std::uint32_t log_range_max_blocks = 100000;  ///< logs-only history: the widest eth_getLogs query
  } pipeline;
};

inline constexpr std::uint64_t kMaxConfirmations = 10000;

/// Looks up an environment variable for "${VAR}" substitution; nullopt when unset.
using EnvLookup = std::function<std::optional<std::string>(const std::string&)>;
EnvLookup process_env();

/// Parses and validates TOML text. `source` names the file in messages.
schema::Result<Config> parse_config(const std::string& text, const std::string& source, const EnvLookup& env);

/// Reads and validates a config file.
schema::Result<Config> load_config(const std::string& path, const EnvLookup& env = process_env());

}  // namespace chainidx::app

#pragma once
// Where confirmed blocks go. The pipeline hands every confirmed batch to each sink in turn;
// a sink either stores the whole batch durably or throws.

#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "schema/block.hpp"

namespace chainidx::sinks {

/// A batch a sink did not store, and whether storing it again can ever work.
class SinkError : public std::runtime_error {
 public:
  enum class Kind {
    /// Trouble with the sink's peer (connection lost, broker or database down, commit in doubt,
    /// serialization failure, timeout): retry the same batch once the peer is back. Writes are
    /// idempotent per batch, so a retry is safe.
    kRetryable,
    /// The peer refused the data itself (a value out of a column's range, a constraint, a
    /// missing table or privilege): the same batch fails the same way however often it is
    /// sent. The indexer stops and the message names what was refused.
    kRefused,
    /// Another instance took over the chain's output (a newer Kafka producer with the same
    /// transactional.id, or a newer writer claim in Postgres). This instance must stop and
    /// must not fight back.
    kFenced,
  };

  explicit SinkError(const std::string& message, Kind kind = Kind::kRetryable)
      : std::runtime_error(message), kind_(kind) {}

  Kind kind() const { return kind_; }
  bool retryable() const { return kind_ == Kind::kRetryable; }

 private:
  Kind kind_;
};

/// The stored cursor is behind the blocks this process already wrote: the database lost its
/// newest commits (a crash under `synchronous_commit = off`, a failover to a replica that lagged,
/// a restore from a backup). Nothing is wrong with the batch: the caller goes back to the stored
/// cursor and writes from there again.
class CursorBehind : public std::runtime_error {
 public:
  CursorBehind(const std::string& message, std::uint64_t stored) : std::runtime_error(message), stored_(stored) {}
  std::uint64_t stored() const { return stored_; }

 private:
  std::uint64_t stored_;
};

class Sink {
 public:
  virtual ~Sink() = default;
  virtual std::string_view name() const = 0;
  /// Stores `blocks` (ascending, each the child of the one before). Blocking; call it off the
  /// network thread. Not thread-safe: one caller at a time. Throws SinkError.
  virtual void write(std::span<const schema::Block> blocks) = 0;
};

/// Where the last confirmed block is remembered between runs, and which instance may write.
class CheckpointStore {
 public:
  virtual ~CheckpointStore() = default;
  /// The last confirmed block, or nullopt before the first write. Throws SinkError.
  virtual std::optional<schema::BlockRef> load_cursor() = 0;
  /// Every address in `column` (an address column) of the contract event table `table`, with the
  /// first block it is in: the addresses a factory made, as written. Throws SinkError.
  virtual std::vector<std::pair<schema::Address, std::uint64_t>> addresses_in(const std::string& table, const std::string& column) = 0;
  /// Throws SinkError of Kind::kFenced when another instance has claimed the chain since this
  /// one did (see PostgresSink::try_lead and write_as); SinkError of another kind on database trouble.
  virtual void check_writer() = 0;
};

}  // namespace chainidx::sinks

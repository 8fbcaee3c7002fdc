#pragma once
// Where confirmed blocks go. The pipeline hands every confirmed batch to each sink in turn;
// a sink either stores the whole batch durably or throws.

#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>

#include "schema/block.hpp"

namespace chainidx::sinks {

/// Trouble with a sink's peer (database, broker): the batch was not stored and may be retried
/// as a whole once the peer is back. Writes are idempotent per batch, so a retry is safe.
class SinkError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

class Sink {
 public:
  virtual ~Sink() = default;
  virtual std::string_view name() const = 0;
  /// Stores `blocks` (ascending, each the child of the one before). Blocking; call it off the
  /// network thread. Not thread-safe: one caller at a time. Throws SinkError.
  virtual void write(std::span<const schema::Block> blocks) = 0;
};

/// Where the last confirmed block is remembered between runs.
class CheckpointStore {
 public:
  virtual ~CheckpointStore() = default;
  /// The last confirmed block, or nullopt before the first write. Throws SinkError.
  virtual std::optional<schema::BlockRef> load_cursor() = 0;
};

}  // namespace chainidx::sinks

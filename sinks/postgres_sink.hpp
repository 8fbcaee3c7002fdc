#pragma once

#include <memory>
#include <string>

#include "sinks/sink.hpp"

namespace chainidx::sinks {

/// Writes blocks, transactions and logs into the chain's schema with COPY, and moves the cursor
/// in the same transaction (invariant 2). Also the checkpoint store. libpqxx stays in the .cpp.
class PostgresSink final : public Sink, public CheckpointStore {
 public:
  /// `url` is a libpq connection URI; `schema_name` a validated identifier (the chain's name).
  PostgresSink(std::string url, std::string schema_name);
  ~PostgresSink() override;

  /// Creates the schema and applies the migrations it lacks, each in its own transaction,
  /// under an advisory lock so that two starting indexers do not race. Throws SinkError.
  void migrate();

  /// Makes this process the chain's writer (the newest claim wins): from now on, a write or
  /// check_writer() of an instance that claimed earlier fails with SinkError::Kind::kFenced.
  /// `instance` is unique per process; `host` and `pid` are for the other instance's message.
  void claim_writer(const std::string& instance, const std::string& host, int pid);
  void check_writer() override;

  std::string_view name() const override { return "postgres"; }
  /// Throws SinkError: kRetryable on database trouble, kRefused when the server refuses the
  /// data itself (the message names the block, table, column and the server's words), kFenced
  /// when another instance has claimed the chain. std::logic_error when the batch does not
  /// continue the stored cursor (a bug upstream: nothing is written).
  void write(std::span<const schema::Block> blocks) override;
  std::optional<schema::BlockRef> load_cursor() override;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace chainidx::sinks

#include "ingest/attach_receipts.hpp"

#include "ingest/logs_bloom.hpp"

namespace chainidx::ingest {

using schema::Error;

schema::Status attach_receipts(schema::Block& block, std::vector<Receipt> receipts) {
  auto at = [](std::size_t i) { return "receipt " + std::to_string(i) + ": "; };
  if (receipts.size() != block.transaction_hashes.size())
    return Error{"block " + std::to_string(block.number) + " lists " + std::to_string(block.transaction_hashes.size()) +
                 " transactions but " + std::to_string(receipts.size()) + " receipts came back"};
  const bool have_bodies = !block.transactions.empty() || block.transaction_hashes.empty();

  std::vector<schema::Log> logs;
  std::uint32_t next_log_index = 0;
  for (std::size_t i = 0; i < receipts.size(); ++i) {
    const Receipt& r = receipts[i];
    if (r.transaction_hash != block.transaction_hashes[i]) return Error{at(i) + "transaction hash does not match the block's"};
    if (r.transaction_index != i) return Error{at(i) + "transactionIndex out of order"};
    if (r.block_hash != block.hash || r.block_number != block.number) return Error{at(i) + "belongs to another block"};
    if (i > 0 && r.cumulative_gas_used < receipts[i - 1].cumulative_gas_used) return Error{at(i) + "cumulativeGasUsed decreases"};
    if (have_bodies && r.from_address && i < block.transactions.size() && *r.from_address != block.transactions[i].from_address)
      return Error{at(i) + "from does not match the transaction's"};
    if (!have_bodies && !r.from_address) return Error{at(i) + "has no from, and the block came without transaction bodies"};
    for (const auto& log : r.logs) {
      if (log.log_index != next_log_index) return Error{at(i) + "logIndex " + std::to_string(log.log_index) + " where " + std::to_string(next_log_index) + " was due"};
      if (log.block_hash != block.hash || log.block_number != block.number) return Error{at(i) + "a log belongs to another block"};
      if (log.transaction_hash != r.transaction_hash || log.transaction_index != r.transaction_index)
        return Error{at(i) + "a log belongs to another transaction"};
      ++next_log_index;
      logs.push_back(log);
    }
  }
  if (!receipts.empty() && receipts.back().cumulative_gas_used != block.gas_used)
    return Error{"receipts' cumulative gas does not equal the block's gasUsed"};
  if (logs_bloom(logs) != block.logs_bloom) return Error{"bloom of the returned logs does not equal the block's logsBloom (logs missing or altered)"};

  std::vector<schema::Transaction> txs;
  if (have_bodies) txs = std::move(block.transactions);
  txs.resize(receipts.size());
  for (std::size_t i = 0; i < receipts.size(); ++i) {
    Receipt& r = receipts[i];
    schema::Transaction& tx = txs[i];
    if (!have_bodies) {
      // Header-only fetch: the receipt supplies what it knows of the transaction.
      tx.hash = r.transaction_hash;
      tx.block_number = r.block_number;
      tx.block_hash = r.block_hash;
      tx.transaction_index = r.transaction_index;
      tx.from_address = *r.from_address;
      tx.to_address = r.to_address;
      tx.type = r.type;
    }
    tx.status = r.status;
    tx.root = r.root;
    tx.gas_used = r.gas_used;
    tx.cumulative_gas_used = r.cumulative_gas_used;
    tx.effective_gas_price = r.effective_gas_price;
    tx.contract_address = r.contract_address;
    tx.log_count = static_cast<std::uint32_t>(r.logs.size());
    tx.logs_bloom = r.logs_bloom;
  }
  block.transactions = std::move(txs);
  block.logs = std::move(logs);
  return schema::Ok{};
}

}  // namespace chainidx::ingest

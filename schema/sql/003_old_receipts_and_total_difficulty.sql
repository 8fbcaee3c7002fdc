-- chainidx schema, version 3: what old blocks and receipts say, kept.
-- The chain's total difficulty where the node returns it (uint256: above 2^64 on mainnet).
ALTER TABLE ${schema}.blocks ADD COLUMN total_difficulty numeric(78,0);
-- Pre-Byzantium receipts carry the intermediate state root instead of a status.
ALTER TABLE ${schema}.transactions ADD COLUMN root bytea;

-- chainidx schema, version 6: every transaction field the node returns, so that a transaction's
-- hash can be recomputed from its row: the signature, the chain id, the access list, the blob
-- fields (EIP-4844), the authorizations (EIP-7702); and the receipt's bloom of its logs.
ALTER TABLE ${schema}.transactions
  ADD COLUMN v numeric(78,0),
  ADD COLUMN r numeric(78,0),
  ADD COLUMN s numeric(78,0),
  ADD COLUMN y_parity smallint,
  ADD COLUMN chain_id numeric(20,0),
  ADD COLUMN access_list jsonb,
  ADD COLUMN max_fee_per_blob_gas numeric(78,0),
  ADD COLUMN blob_versioned_hashes jsonb,
  ADD COLUMN authorization_list jsonb,
  ADD COLUMN logs_bloom bytea;

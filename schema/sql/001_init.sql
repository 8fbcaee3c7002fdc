-- chainidx schema, version 1. "${schema}" is the chain's name, substituted (quoted) at apply time.
-- Hashes, addresses and byte strings are bytea; uint256 quantities are numeric(78,0).

CREATE TABLE ${schema}.blocks (
  number                    bigint PRIMARY KEY,
  hash                      bytea NOT NULL UNIQUE,
  parent_hash               bytea NOT NULL,
  timestamp                 bigint NOT NULL,
  miner                     bytea NOT NULL,
  gas_limit                 bigint NOT NULL,
  gas_used                  bigint NOT NULL,
  base_fee_per_gas          numeric(78,0),
  difficulty                numeric(78,0) NOT NULL,
  state_root                bytea NOT NULL,
  transactions_root         bytea NOT NULL,
  receipts_root             bytea NOT NULL,
  logs_bloom                bytea NOT NULL,
  extra_data                bytea NOT NULL,
  size                      bigint NOT NULL,
  blob_gas_used             bigint,
  excess_blob_gas           bigint,
  parent_beacon_block_root  bytea,
  withdrawals_root          bytea,
  requests_hash             bytea,
  sha3_uncles               bytea NOT NULL,
  mix_hash                  bytea NOT NULL,
  nonce                     bytea NOT NULL,
  transaction_count         integer NOT NULL
);
CREATE INDEX blocks_timestamp_idx ON ${schema}.blocks (timestamp);

CREATE TABLE ${schema}.transactions (
  block_number              bigint NOT NULL REFERENCES ${schema}.blocks (number) ON DELETE CASCADE,
  transaction_index         integer NOT NULL,
  hash                      bytea NOT NULL UNIQUE,
  block_hash                bytea NOT NULL,
  from_address              bytea NOT NULL,
  to_address                bytea,
  value                     numeric(78,0) NOT NULL,
  gas                       bigint NOT NULL,
  gas_price                 numeric(78,0),
  max_fee_per_gas           numeric(78,0),
  max_priority_fee_per_gas  numeric(78,0),
  input                     bytea NOT NULL,
  nonce                     bigint NOT NULL,
  type                      smallint NOT NULL,
  status                    smallint,
  gas_used                  bigint NOT NULL,
  cumulative_gas_used       bigint NOT NULL,
  effective_gas_price       numeric(78,0),
  contract_address          bytea,
  log_count                 integer NOT NULL,
  PRIMARY KEY (block_number, transaction_index)
);
CREATE INDEX transactions_from_idx ON ${schema}.transactions (from_address, block_number);
CREATE INDEX transactions_to_idx ON ${schema}.transactions (to_address, block_number);

CREATE TABLE ${schema}.logs (
  block_number              bigint NOT NULL REFERENCES ${schema}.blocks (number) ON DELETE CASCADE,
  log_index                 integer NOT NULL,
  block_hash                bytea NOT NULL,
  transaction_hash          bytea NOT NULL,
  transaction_index         integer NOT NULL,
  address                   bytea NOT NULL,
  topic0                    bytea,
  topic1                    bytea,
  topic2                    bytea,
  topic3                    bytea,
  data                      bytea NOT NULL,
  PRIMARY KEY (block_number, log_index)
);
CREATE INDEX logs_address_idx ON ${schema}.logs (address, block_number);
CREATE INDEX logs_topic0_idx ON ${schema}.logs (topic0, block_number);

-- One row: the last confirmed block. Written in the same transaction as that block's rows.
CREATE TABLE ${schema}.cursor (
  id                        boolean PRIMARY KEY DEFAULT true CHECK (id),
  block_number              bigint NOT NULL,
  block_hash                bytea NOT NULL,
  updated_at                timestamptz NOT NULL DEFAULT now()
);

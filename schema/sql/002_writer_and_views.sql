-- chainidx schema, version 2.
--
-- writer: which running instance may write this chain. An instance claims it at start (the
-- newest claim wins); every write transaction checks the claim under the same row lock as the
-- cursor, so an instance that another one replaced writes nothing more and stops (exit code 6).
CREATE TABLE ${schema}.writer (
  id                        boolean PRIMARY KEY DEFAULT true CHECK (id),
  instance                  text NOT NULL,
  host                      text NOT NULL,
  pid                       integer NOT NULL,
  claimed_at                timestamptz NOT NULL DEFAULT now()
);

-- Views for people who query by hand: 0x-hex text instead of bytea (a '0x...' literal compared
-- with a bytea column silently matches nothing), numbers as numbers, and block times as
-- timestamptz. They read the tables directly; filter on the tables' columns for index use.
CREATE VIEW ${schema}.blocks_readable AS
SELECT number,
       '0x' || encode(hash, 'hex')         AS hash,
       '0x' || encode(parent_hash, 'hex')  AS parent_hash,
       to_timestamp(timestamp)             AS block_time,
       timestamp,
       '0x' || encode(miner, 'hex')        AS miner,
       gas_limit, gas_used, base_fee_per_gas, transaction_count
FROM ${schema}.blocks;

CREATE VIEW ${schema}.transactions_readable AS
SELECT t.block_number,
       t.transaction_index,
       '0x' || encode(t.hash, 'hex')              AS hash,
       to_timestamp(b.timestamp)                  AS block_time,
       '0x' || encode(t.from_address, 'hex')      AS from_address,
       '0x' || encode(t.to_address, 'hex')        AS to_address,
       t.value, t.gas, t.gas_price, t.max_fee_per_gas, t.max_priority_fee_per_gas,
       '0x' || encode(t.input, 'hex')             AS input,
       t.nonce, t.type, t.status, t.gas_used, t.cumulative_gas_used, t.effective_gas_price,
       '0x' || encode(t.contract_address, 'hex')  AS contract_address,
       t.log_count
FROM ${schema}.transactions t JOIN ${schema}.blocks b ON b.number = t.block_number;

CREATE VIEW ${schema}.logs_readable AS
SELECT l.block_number,
       l.log_index,
       to_timestamp(b.timestamp)                  AS block_time,
       '0x' || encode(l.block_hash, 'hex')        AS block_hash,
       '0x' || encode(l.transaction_hash, 'hex')  AS transaction_hash,
       l.transaction_index,
       '0x' || encode(l.address, 'hex')           AS address,
       '0x' || encode(l.topic0, 'hex')            AS topic0,
       '0x' || encode(l.topic1, 'hex')            AS topic1,
       '0x' || encode(l.topic2, 'hex')            AS topic2,
       '0x' || encode(l.topic3, 'hex')            AS topic3,
       '0x' || encode(l.data, 'hex')              AS data
FROM ${schema}.logs l JOIN ${schema}.blocks b ON b.number = l.block_number;

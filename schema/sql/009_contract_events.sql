-- chainidx schema, version 9: decoded contract events. Each configured contract event has a table
-- of its own, <contract>_<event>, made at start from the ABI (not here: its columns depend on the
-- ABI); contract_tables records what each was made for, so that a changed ABI is refused rather
-- than written into columns of another meaning. Logs that match a configured event's topic0 but
-- do not decode against it land in undecodable, with the reason.
CREATE TABLE ${schema}.contract_tables (
  table_name                text PRIMARY KEY,
  contract                  text NOT NULL,
  event                     text NOT NULL,
  signature                 text NOT NULL,
  columns                   text NOT NULL,          -- "name type(abi type)[ indexed]", comma-separated
  created_at                timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE ${schema}.undecodable (
  block_number              bigint NOT NULL,
  log_index                 integer NOT NULL,
  contract                  text NOT NULL,          -- the [[contracts]] name the log's address belongs to
  block_hash                bytea NOT NULL,
  transaction_hash          bytea NOT NULL,
  transaction_index         integer NOT NULL,
  address                   bytea NOT NULL,
  signature                 text NOT NULL,          -- the event it was taken for (the first, when several)
  topic0                    bytea,
  topic1                    bytea,
  topic2                    bytea,
  topic3                    bytea,
  data                      bytea NOT NULL,
  reason                    text NOT NULL,
  PRIMARY KEY (block_number, log_index, contract)
);

-- chainidx schema, version 4: validator withdrawals (Shanghai, EIP-4895), as block bodies list them.
CREATE TABLE ${schema}.withdrawals (
  block_number              bigint NOT NULL REFERENCES ${schema}.blocks (number) ON DELETE CASCADE,
  withdrawal_index          bigint NOT NULL,
  validator_index           bigint NOT NULL,
  address                   bytea NOT NULL,
  amount_gwei               numeric(20,0) NOT NULL,
  PRIMARY KEY (block_number, withdrawal_index)
);
CREATE INDEX withdrawals_address_idx ON ${schema}.withdrawals (address, block_number);
CREATE INDEX withdrawals_validator_idx ON ${schema}.withdrawals (validator_index, block_number);

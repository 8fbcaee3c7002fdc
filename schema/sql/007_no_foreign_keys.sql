-- chainidx schema, version 7: no foreign keys from transactions, logs and withdrawals to blocks.
-- The writer keeps every block and its rows together in one transaction, and a replay deletes a
-- range from every table itself. A foreign key checks each inserted row with a query of its own:
-- in a catch-up of log-heavy blocks that was a third of Postgres' CPU.
ALTER TABLE ${schema}.transactions DROP CONSTRAINT IF EXISTS transactions_block_number_fkey;
ALTER TABLE ${schema}.logs DROP CONSTRAINT IF EXISTS logs_block_number_fkey;
ALTER TABLE ${schema}.withdrawals DROP CONSTRAINT IF EXISTS withdrawals_block_number_fkey;

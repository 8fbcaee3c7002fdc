-- chainidx schema, version 5: `chainidx replay` jobs, cut into chunks that replay processes claim
-- (FOR UPDATE SKIP LOCKED) under leases that expire, so that a killed worker's chunk is finished
-- by another and an interrupted replay resumes where it stopped.
CREATE TABLE ${schema}.replay_chunks (
  job                       text NOT NULL,          -- "FROM-TO" of the replay command
  first_block               bigint NOT NULL,
  last_block                bigint NOT NULL,
  done                      boolean NOT NULL DEFAULT false,
  worker                    text,                   -- the process holding (or last holding) it
  lease_until               timestamptz,            -- another worker may take it after this
  done_at                   timestamptz,
  PRIMARY KEY (job, first_block),
  CHECK (first_block <= last_block)
);

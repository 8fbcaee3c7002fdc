-- chainidx schema, version 8: leader election between `chainidx run` processes of one chain.
-- writer.epoch goes up by one at every takeover; every cursor-advancing transaction checks it
-- (with the instance) under the writer row's share lock, so a leader that was paused and wakes up
-- after a takeover writes nothing. The lease lives in a row of its own, so that renewing it never
-- waits for (or holds up) a write that holds the writer row: the leader renews `lease_until`
-- every third of the lease; a standby that finds it expired terminates the leader's sessions
-- (`backend_pid` is its lease session) and takes over. The leader also holds a session advisory
-- lock while it leads (see sinks/postgres_sink.cpp).
ALTER TABLE ${schema}.writer ADD COLUMN epoch bigint NOT NULL DEFAULT 0;
CREATE TABLE ${schema}.writer_lease (
  id                        boolean PRIMARY KEY DEFAULT true CHECK (id),
  lease_until               timestamptz NOT NULL,
  backend_pid               integer NOT NULL
);

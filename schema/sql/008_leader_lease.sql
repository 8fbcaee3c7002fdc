-- chainidx schema, version 8: leader election between `chainidx run` processes of one chain.
-- The writer row becomes the leader's lease: `epoch` goes up by one at every takeover and every
-- cursor-advancing transaction checks it (with the instance) under the row's share lock, so a
-- leader that was paused and wakes up after a takeover writes nothing. `lease_until` is renewed by
-- the leader every third of the lease; a standby that finds it expired terminates the leader's
-- sessions (`backend_pid` is its lease session) and takes over. The leader also holds a session
-- advisory lock while it leads (see sinks/postgres_sink.cpp).
ALTER TABLE ${schema}.writer
  ADD COLUMN epoch bigint NOT NULL DEFAULT 0,
  ADD COLUMN lease_until timestamptz,
  ADD COLUMN backend_pid integer;

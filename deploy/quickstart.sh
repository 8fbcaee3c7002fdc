#!/usr/bin/env bash
# Runs chainidx on embedded defaults: a local anvil mining a block a second with ERC-20 Transfer
# traffic, a local Postgres cluster under .run/, the development Kafka broker, and the indexer,
# which also decodes the Transfers into the typed table anvil.token_transfer.
# Prints how to watch the data arrive. Ctrl-C stops everything.
set -euo pipefail
top="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$top"

ANVIL_PORT="${ANVIL_PORT:-8545}"
PG_PORT="${PG_PORT:-55432}"
METRICS_PORT="${METRICS_PORT:-9464}"
CONFIRMATIONS="${CONFIRMATIONS:-5}"
run_dir="$top/.run"
pg_bin=/usr/lib/postgresql/15/bin

# A port that something else already listens on would have us talk to that instead: stop here.
port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
for var in ANVIL_PORT PG_PORT METRICS_PORT; do
  port="${!var}"
  if port_in_use "$port"; then
    echo "quickstart: port $port is already in use on 127.0.0.1 (by another program, or an earlier quickstart still running);" >&2
    echo "quickstart: stop it, or choose another port: $var=<free port> deploy/quickstart.sh" >&2
    exit 1
  fi
done

bash deploy/install-deps.sh
echo "quickstart: building (Release)"
cmake -S . -B build-release -G Ninja -DCMAKE_BUILD_TYPE=Release -DCHAINIDX_BUILD_TESTS=OFF -DCHAINIDX_BUILD_BENCH=OFF >/dev/null
ninja -C build-release chainidx
chainidx="$top/build-release/app/chainidx"

mkdir -p "$run_dir"
pids=()
cleanup() {
  trap - INT TERM EXIT
  echo
  echo "quickstart: stopping"
  # The indexer first (it finishes its batch and flushes Kafka), then what it talks to.
  for pid in "${pids[@]}"; do
    kill -TERM "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  runuser -u postgres -- "$pg_bin/pg_ctl" -D "$run_dir/pg/data" -m fast stop >/dev/null 2>&1 || true
  echo "quickstart: stopped. The Postgres cluster stays in $run_dir/pg; anvil's chain and the dev broker's topics lived"
  echo "quickstart: in memory, so the next quickstart starts a fresh chain and drops the anvil schema it indexed (delete .run/ for a new cluster)"
}
trap cleanup INT TERM EXIT

# Postgres: a cluster of our own, as the postgres user (initdb and pg_ctl refuse root).
mkdir -p "$run_dir/pg"
chown postgres "$run_dir/pg"
if ! runuser -u postgres -- test -w "$run_dir/pg"; then
  echo "quickstart: the postgres user cannot reach $run_dir/pg; make its parent folders traversable (chmod o+x) or clone elsewhere" >&2
  exit 1
fi
if [ ! -f "$run_dir/pg/data/PG_VERSION" ]; then
  runuser -u postgres -- "$pg_bin/initdb" -D "$run_dir/pg/data" -A trust -U postgres >/dev/null
fi
if ! runuser -u postgres -- "$pg_bin/pg_ctl" -D "$run_dir/pg/data" -w -l "$run_dir/pg/log" \
  -o "-p $PG_PORT -k $run_dir/pg -c listen_addresses=127.0.0.1" start >/dev/null; then
  echo "quickstart: Postgres did not start on port $PG_PORT; its log is $run_dir/pg/log (last lines below)." >&2
  echo "quickstart: if the port is taken, choose another: PG_PORT=<free port> deploy/quickstart.sh" >&2
  tail -5 "$run_dir/pg/log" >&2 || true
  exit 1
fi
psql -h 127.0.0.1 -p "$PG_PORT" -U postgres -tAc "SELECT 1 FROM pg_database WHERE datname='chainidx'" | grep -q 1 ||
  psql -h 127.0.0.1 -p "$PG_PORT" -U postgres -qc "CREATE DATABASE chainidx"

# anvil keeps its chain in memory, so each quickstart is a fresh chain: what an earlier run
# indexed would not match it (chainidx would rightly refuse it as a deep reorg), so it goes.
if psql -h 127.0.0.1 -p "$PG_PORT" -U postgres chainidx -tAc "SELECT 1 FROM pg_namespace WHERE nspname='anvil'" | grep -q 1; then
  echo "quickstart: a fresh anvil chain: dropping the anvil schema indexed by the previous quickstart"
  psql -h 127.0.0.1 -p "$PG_PORT" -U postgres chainidx -qc "DROP SCHEMA anvil CASCADE"
fi
# anvil and the broker run in sessions of their own: Ctrl-C reaches the indexer (which then
# finishes its batch), and cleanup stops them after it, not at the same moment.
setsid "$top/.deps/bin/anvil" --port "$ANVIL_PORT" --host 127.0.0.1 --block-time 1 --silent >"$run_dir/anvil.log" 2>&1 &
anvil_pid=$!
pids+=($anvil_pid)
for _ in $(seq 50); do
  curl -sf -H 'content-type: application/json' -d '{"jsonrpc":"2.0","id":1,"method":"eth_chainId","params":[]}' \
    "http://127.0.0.1:$ANVIL_PORT" >/dev/null && break
  if ! kill -0 "$anvil_pid" 2>/dev/null; then
    echo "quickstart: anvil exited at start ($(tail -1 "$run_dir/anvil.log")); if port $ANVIL_PORT is taken, choose another: ANVIL_PORT=<free port> deploy/quickstart.sh" >&2
    exit 1
  fi
  sleep 0.2
done

# The development broker: librdkafka's mock cluster, Kafka wire protocol on loopback.
rm -f "$run_dir/bootstrap"
setsid "$chainidx" devbroker --bootstrap-file "$run_dir/bootstrap" --topics anvil.blocks,anvil.transactions,anvil.logs,anvil.events.token,anvil.undecodable --partitions 3 \
  >"$run_dir/devbroker.log" 2>&1 &
pids+=($!)
for _ in $(seq 50); do [ -s "$run_dir/bootstrap" ] && break; sleep 0.1; done
bootstrap="$(cat "$run_dir/bootstrap")"

bash deploy/loadgen.sh "http://127.0.0.1:$ANVIL_PORT" 3 >"$run_dir/loadgen.log" 2>&1 &
pids+=($!)
# The load generator's contract: its Transfers are decoded with the ERC-20 ABI ([[contracts]]).
token=""
for _ in $(seq 100); do
  token=$(sed -n 's/^loadgen: Transfer emitter at \(0x[0-9a-fA-F]*\).*/\1/p' "$run_dir/loadgen.log")
  [ -n "$token" ] && break
  sleep 0.1
done
[ -n "$token" ] || { echo "quickstart: the load generator did not deploy its contract: $(cat "$run_dir/loadgen.log")" >&2; exit 1; }

cat >"$run_dir/chainidx.toml" <<TOML
[chain]
name = "anvil"
chain_id = 31337
confirmations = $CONFIRMATIONS
start_block = 0

[[chain.endpoints]]
ws = "ws://127.0.0.1:$ANVIL_PORT"
http = "http://127.0.0.1:$ANVIL_PORT"
requests_per_second = 200
burst = 200

[postgres]
url = "postgresql://postgres@127.0.0.1:$PG_PORT/chainidx"

[kafka]
brokers = "$bootstrap"

[server]
listen = "127.0.0.1:$METRICS_PORT"

[[contracts]]
name = "token"
address = "$token"
abi = "$top/deploy/abis/erc20.json"
events = ["Transfer"]
TOML

cat <<EOF

chainidx quickstart is running: anvil on :$ANVIL_PORT (a block a second, ERC-20 Transfers),
Postgres on :$PG_PORT, dev Kafka broker at $bootstrap, confirmations = $CONFIRMATIONS.
Config: $run_dir/chainidx.toml

Watch the data arrive, from another terminal:
  psql -h 127.0.0.1 -p $PG_PORT -U postgres chainidx -c "SELECT number, encode(hash,'hex'), transaction_count FROM anvil.blocks ORDER BY number DESC LIMIT 5"
  psql -h 127.0.0.1 -p $PG_PORT -U postgres chainidx -c "SELECT block_number, log_index, encode(address,'hex'), encode(topic2,'hex') FROM anvil.logs ORDER BY block_number DESC LIMIT 5"
  kcat -C -b $bootstrap -t anvil.logs -o beginning -e -X isolation.level=read_committed
The token's Transfers, decoded into a typed table and a topic of their own (docs/events.md):
  psql -h 127.0.0.1 -p $PG_PORT -U postgres chainidx -c "SELECT block_number, '0x' || encode(\"from\",'hex') AS sender, '0x' || encode(\"to\",'hex') AS recipient, value FROM anvil.token_transfer ORDER BY value DESC LIMIT 5"
  kcat -C -b $bootstrap -t anvil.events.token -o beginning -e -X isolation.level=read_committed
  curl -s http://127.0.0.1:$METRICS_PORT/status        (and /metrics, /healthz, /readyz)

Ctrl-C stops everything.

EOF

"$chainidx" run --config "$run_dir/chainidx.toml" &
indexer=$!
pids=("$indexer" "${pids[@]}")

# Every few seconds, what has arrived: rows in Postgres, and messages a read_committed Kafka
# consumer (kcat, independent of chainidx) can read.
(
  while sleep 5; do
    rows=$(psql -h 127.0.0.1 -p "$PG_PORT" -U postgres chainidx -tAc \
      "SELECT (SELECT count(*) FROM anvil.blocks) || ' blocks, ' || (SELECT count(*) FROM anvil.transactions) || ' transactions, ' || (SELECT count(*) FROM anvil.logs) || ' logs, ' || (SELECT count(*) FROM anvil.token_transfer) || ' decoded Transfers'" 2>/dev/null || echo "not yet")
    msgs=$(timeout 10 kcat -C -b "$bootstrap" -t anvil.logs -o beginning -e -q -X isolation.level=read_committed 2>/dev/null | wc -l)
    echo "quickstart: postgres has $rows; kafka anvil.logs has $msgs messages"
  done
) &
pids+=($!)
wait "$indexer"

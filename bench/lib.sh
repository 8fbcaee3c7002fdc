# Shared by the benchmark scripts: their binaries, a scratch directory cleaned up on exit, and a
# node, a Postgres and a dev broker of their own on free loopback ports. Source it after setting
# `top`; call bench_binaries first.

# bench_binaries SCRIPT TARGET...: with `bin_dir` empty, installs what the build needs and builds
# the targets (and chainidx) in build-release; sets bin_dir and chainidx.
bench_binaries() {
  local script="$1"
  shift
  if [ -z "$bin_dir" ]; then
    bash "$top/deploy/install-deps.sh" >/dev/null
    echo "$script: building (Release)"
    cmake -S "$top" -B "$top/build-release" -G Ninja -DCMAKE_BUILD_TYPE=Release -DCHAINIDX_BUILD_TESTS=OFF -DCHAINIDX_BUILD_BENCH=ON >/dev/null
    ninja -C "$top/build-release" chainidx "$@" >/dev/null
    bin_dir="$top/build-release"
  fi
  chainidx="$bin_dir/app/chainidx"
}

pg_bin=/usr/lib/postgresql/15/bin
clk=$(getconf CLK_TCK)
pids=()
work="$(mktemp -d /tmp/chainidx-bench.XXXXXX)"
chmod 755 "$work"
bench_cleanup() {
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  [ -d "$work/pgrun/data" ] && runuser -u postgres -- "$pg_bin/pg_ctl" -D "$work/pgrun/data" -m immediate stop >/dev/null 2>&1 || true
  if [ "${BENCH_KEEP:-0}" = 1 ]; then echo "bench: kept $work"; else rm -rf "$work"; fi
}
trap bench_cleanup EXIT

free_port() {  # a loopback port nothing listens on, below the ephemeral range (32768-)
  local p
  while :; do
    p=$(shuf -i 20000-32000 -n 1)
    (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null || { echo "$p"; return; }
  done
}
rpc() { curl -sf -H 'content-type: application/json' -d "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"$2\",\"params\":$3}" "$1"; }
wait_rpc() {  # url, pid: until the node answers (loading a long chain's state takes a while) or exits
  for _ in $(seq 6000); do
    rpc "$1" eth_chainId '[]' >/dev/null && return 0
    kill -0 "$2" 2>/dev/null || return 1
    sleep 0.1
  done
  return 1
}
cpu_of() { awk -v t="$clk" '{printf "%.1f", ($14 + $15) / t}' "/proc/$1/stat"; }

# bench_pin: the node as another machine would be, with a core of its own: anvil on CPU 0 alone,
# this script and everything it starts after the call (curl, Postgres, the broker, chainidx) on
# the other CPUs. Called before start_anvil; both the node's ceiling and chainidx's run then see
# the same node. Sets rest_cpus.
node_pin=()
bench_pin() {
  local cpus
  cpus=$(nproc)
  [ "$cpus" -ge 2 ] || { echo "bench: --pin needs two CPUs or more (have $cpus)" >&2; exit 2; }
  rest_cpus=1
  [ "$cpus" -gt 2 ] && rest_cpus="1-$((cpus - 1))"
  taskset -cp "$rest_cpus" $$ >/dev/null
  node_pin=(taskset -c 0)
}

# start_anvil LOG ARGS...: anvil on a free port, its answers awaited; sets anvil_pid, anvil_port
# and node (its HTTP URL). Another program can take the port between the probe and anvil's bind:
# then another port is tried.
start_anvil() {
  local log="$1" attempt
  shift
  for attempt in 1 2 3 4 5; do
    anvil_port=$(free_port)
    "${node_pin[@]}" "$top/.deps/bin/anvil" --port "$anvil_port" --host 127.0.0.1 --silent "$@" >"$log" 2>&1 &
    anvil_pid=$!
    node="http://127.0.0.1:$anvil_port"
    wait_rpc "$node" "$anvil_pid" && return 0
    grep -q "already in use" "$log" && [ "$attempt" -lt 5 ] && continue
    echo "bench: anvil did not start: $(tail -3 "$log")" >&2
    exit 1
  done
}

# bench_chain BLOCKS TXS LOGS_PER_TX: the deterministic benchmark chain (bench/chain_gen: a
# contract of ours deployed in block 1, then BLOCKS blocks of TXS calls emitting LOGS_PER_TX
# Transfer logs each), generated once and cached under .run/bench; sets `state` to its file.
bench_chain() {
  local cache="$top/.run/bench" gen_pid
  mkdir -p "$cache"
  state="$cache/chain-$1-$2-$3.json"
  [ -s "$state" ] && return 0
  echo "bench: generating $1 blocks x $2 transactions x $3 logs (saved to $state)"
  start_anvil "$work/anvil-gen.log" --no-mining --timestamp 1700000000 --dump-state "$state.tmp"
  gen_pid=$anvil_pid
  "$bin_dir/bench/chain_gen" "$node" "$1" "$2" "$3" >/dev/null
  kill -TERM "$gen_pid"; wait "$gen_pid" || true
  mv "$state.tmp" "$state"
}

# add_request FILE: one more request for node_rate: the JSON-RPC body in FILE, to the node.
add_request() {
  [ -s "$work/curl.cfg" ] && echo next >>"$work/curl.cfg"
  printf 'url = "%s"\ndata-binary = "@%s"\nheader = "content-type: application/json"\noutput = "/dev/null"\nsilent\nfail\n' \
    "$node" "$1" >>"$work/curl.cfg"
}

# node_rate IN_FLIGHT COUNT: the node's own rate for the requests add_request listed, curl
# reading and discarding the answers IN_FLIGHT at a time: COUNT (blocks, events) per second.
node_rate() {
  local t0 t1
  t0=$(date +%s.%N)
  curl -s --no-progress-meter --parallel --parallel-max "$1" -K "$work/curl.cfg" >/dev/null 2>"$work/curl.err" ||
    { echo "bench: curl failed: $(head -3 "$work/curl.err")" >&2; exit 1; }
  t1=$(date +%s.%N)
  awk -v c="$2" -v a="$t0" -v z="$t1" 'BEGIN{printf "%.0f", c / (z - a)}'
}

# pg_cpu_now: CPU seconds of the Postgres server started by start_postgres, with the backends
# that have exited (reaped by the postmaster).
pg_cpu_now() {
  { awk '{print $14 + $15 + $16 + $17}' "/proc/$pg_pid/stat"
    for p in $(pgrep -P "$pg_pid"); do awk '{print $14 + $15}' "/proc/$p/stat" 2>/dev/null; done; } |
    awk -v t="$clk" '{s += $1} END {printf "%.1f", s / t}'
}

# start_postgres DATABASE...: a fresh cluster with those databases; sets pg_port and pg_pid.
start_postgres() {
  local attempt db
  mkdir -p "$work/pgrun"; chown postgres "$work/pgrun"
  runuser -u postgres -- "$pg_bin/initdb" -D "$work/pgrun/data" -A trust -U postgres >/dev/null
  for attempt in 1 2 3 4 5; do
    pg_port=$(free_port)
    runuser -u postgres -- "$pg_bin/pg_ctl" -D "$work/pgrun/data" -w -l "$work/pgrun/log" \
      -o "-p $pg_port -k $work/pgrun -c listen_addresses=127.0.0.1 ${pg_server_options:-}" start >/dev/null && break
    [ "$attempt" -lt 5 ] || { echo "bench: Postgres did not start: $(tail -3 "$work/pgrun/log")" >&2; exit 1; }
  done
  for db in "$@"; do psql -h 127.0.0.1 -p "$pg_port" -U postgres -qc "CREATE DATABASE $db"; done
  pg_pid=$(head -1 "$work/pgrun/data/postmaster.pid")
}

# start_devbroker TOPICS: chainidx's development broker (librdkafka's mock cluster) with those
# topics (comma-separated); sets bootstrap and broker_pid.
start_devbroker() {
  "$chainidx" devbroker --bootstrap-file "$work/bootstrap" --partitions 3 --topics "$1" >"$work/devbroker.log" 2>&1 &
  broker_pid=$!
  pids+=($broker_pid)
  for _ in $(seq 50); do [ -s "$work/bootstrap" ] && break; sleep 0.1; done
  bootstrap=$(cat "$work/bootstrap")
}

# write_config FILE EXTRA_ENDPOINT_LINES EXTRA_TABLES: a chainidx config for the node, Postgres
# (database chainidx, with $pg_url_query appended to its URL when set) and dev broker started
# above, with `confirmations` blocks of depth and no rate limit on the node.
write_config() {
  cat >"$1" <<TOML
[chain]
name = "anvil"
chain_id = 31337
confirmations = $confirmations

[[chain.endpoints]]
ws = "ws://127.0.0.1:$anvil_port"
http = "$node"
requests_per_second = 1000000
burst = 1000000
$2
[postgres]
url = "postgresql://postgres@127.0.0.1:$pg_port/chainidx${pg_url_query:-}"

[kafka]
brokers = "$bootstrap"
$3

[server]
listen = "127.0.0.1:$(free_port)"
TOML
}

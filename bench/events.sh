#!/usr/bin/env bash
# The decoded-events history benchmark, in one run on one machine:
#  1. the chain of bench/backfill.sh (a contract of ours emitting Transfer logs; generated once
#     and cached);
#  2. the node's own eth_getLogs ceiling for the contract's Transfers: every block 0..head-12 in
#     queries of --log-blocks blocks, at 1 and at N in flight, curl reading and discarding;
#  3. a first `chainidx run` with chain.index = "events" and the contract's Transfer in
#     [[contracts]] (deploy/abis/erc20.json): logs-only history by eth_getLogs into the typed
#     table anvil.token_transfer and the topic anvil.events.token (with --raw-logs, into the
#     logs table and anvil.logs as well: chain.raw_logs = true); checks the row count, and that
#     the topic holds no duplicate and reaches the last block;
#  4. prints events/s, the ratio to the node's ceiling, CPU seconds and chainidx's peak RSS; with
#     --record, appends them to bench/RESULTS.md.
#
#   bench/events.sh [--blocks 20000] [--txs 5] [--logs-per-tx 20] [--in-flight 4] [--log-blocks 100]
#                   [--raw-logs] [--pin] [--record] [--bin-dir BUILD_DIR]
#
# --pin gives the node a core of its own, as a node on another machine has: anvil on CPU 0, the
# rest (curl, Postgres, the broker, chainidx) on the others, for the ceiling and for chainidx.
set -euo pipefail
top="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$top"

blocks=20000 txs=5 logs_per_tx=20 in_flight=4 log_blocks=100 record=0 confirmations=12 bin_dir="" pin=0 raw_logs=false
while [ $# -gt 0 ]; do
  case "$1" in
    --blocks) blocks="$2"; shift 2 ;;
    --txs) txs="$2"; shift 2 ;;
    --logs-per-tx) logs_per_tx="$2"; shift 2 ;;
    --in-flight) in_flight="$2"; shift 2 ;;
    --log-blocks) log_blocks="$2"; shift 2 ;;
    --record) record=1; shift ;;
    --pin) pin=1; shift ;;
    --raw-logs) raw_logs=true; shift ;;
    --bin-dir) bin_dir="$2"; shift 2 ;;
    -h|--help) sed -n '2,21p' "$0"; exit 0 ;;
    *) echo "events.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done

source "$top/bench/lib.sh"
bench_binaries events chain_gen
[ "$pin" = 1 ] && bench_pin
bench_chain "$blocks" "$txs" "$logs_per_tx"
start_anvil "$work/anvil.log" --no-mining --load-state "$state"
pids+=($anvil_pid)
head=$(( $(rpc "$node" eth_blockNumber '[]' | sed 's/.*"result":"\(0x[0-9a-f]*\)".*/\1/') ))
last=$((head - confirmations))
transfer=0xddf252ad1be2c89b69c2b068fc378daa952ba7f163c4a11628f55a4df523b3ef
token=$(rpc "$node" eth_getLogs "[{\"fromBlock\":\"0x0\",\"toBlock\":\"0x2\",\"topics\":[\"$transfer\"]}]" |
  grep -o '"address":"0x[0-9a-f]*"' | awk -F'"' 'NR == 1 {print $4}')
[ -n "$token" ] || { echo "events: no Transfer log in the chain's first blocks" >&2; exit 1; }
want=$(( (last - 1) * txs * logs_per_tx ))
echo "events: node at block $head; indexing the Transfers of $token in 0..$last ($want events)"

# 2. The node's ceiling: the same filter chainidx sends, over every block, $log_blocks a query.
n=0
for ((first = 0; first <= last; first += log_blocks)); do
  end=$((first + log_blocks - 1)); [ "$end" -gt "$last" ] && end=$last
  printf '{"jsonrpc":"2.0","id":1,"method":"eth_getLogs","params":[{"fromBlock":"0x%x","toBlock":"0x%x","address":["%s"],"topics":[["%s"]]}]}' \
    "$first" "$end" "$token" "$transfer" >"$work/q$n.json"
  add_request "$work/q$n.json"
  n=$((n + 1))
done
ceiling() { node_rate "$1" "$want"; }  # in flight -> events/s
ceiling "$in_flight" >/dev/null  # warm the node's caches as chainidx will find them warm
ceil1=$(ceiling 1)
ceiln=$(ceiling "$in_flight")
echo "events: node's eth_getLogs ceiling ($log_blocks blocks a query): $ceil1 events/s at 1 in flight, $ceiln at $in_flight"

# 3. A first chainidx run in logs-only mode.
start_postgres chainidx
start_devbroker anvil.blocks,anvil.transactions,anvil.logs,anvil.events.token,anvil.undecodable
cp "$top/deploy/abis/erc20.json" "$work/erc20.json"
write_config "$work/chainidx.toml" "max_in_flight = $in_flight" "
[pipeline]
batch_blocks = 200
log_range_blocks = $log_blocks

[[contracts]]
name = \"token\"
address = \"$token\"
abi = \"erc20.json\"
events = [\"Transfer\"]"
sed -i "s/^confirmations = .*/&\nindex = \"events\"\nraw_logs = $raw_logs/" "$work/chainidx.toml"
anvil_cpu0=$(cpu_of "$anvil_pid")
pg_cpu0=$(pg_cpu_now)
broker_cpu0=$(cpu_of "$broker_pid")
CHAINIDX_LOG_LEVEL=info "$chainidx" run --config "$work/chainidx.toml" >"$work/chainidx.log" 2>&1 &
idx_pid=$!
pids+=($idx_pid)
until grep -q "event=caught_up" "$work/chainidx.log"; do
  kill -0 "$idx_pid" 2>/dev/null || { echo "events: chainidx exited: $(tail -5 "$work/chainidx.log")" >&2; exit 1; }
  sleep 0.2
done
idx_cpu=$(cpu_of "$idx_pid")
anvil_cpu=$(awk -v a="$(cpu_of "$anvil_pid")" -v b="$anvil_cpu0" 'BEGIN{printf "%.1f", a - b}')
pg_cpu=$(awk -v a="$(pg_cpu_now)" -v b="$pg_cpu0" 'BEGIN{printf "%.1f", a - b}')
broker_cpu=$(awk -v a="$(cpu_of "$broker_pid")" -v b="$broker_cpu0" 'BEGIN{printf "%.1f", a - b}')
rss_mb=$(awk '/VmHWM/ {printf "%.0f", $2 / 1024}' "/proc/$idx_pid/status")
kill -TERM "$idx_pid"; wait "$idx_pid" || true
line=$(grep "event=caught_up" "$work/chainidx.log" | head -1)
secs=$(sed 's/.*seconds=\([0-9.]*\).*/\1/' <<<"$line")
narrower=$(grep -c "event=log_range_narrower" "$work/chainidx.log" || true)

q() { psql -h 127.0.0.1 -p "$pg_port" -U postgres chainidx -tAc "$1"; }
rows=$(q "SELECT count(*) FROM anvil.token_transfer")
caught_up_rows=$(q "SELECT count(*) FROM anvil.token_transfer WHERE block_number <= $last")
block_rows=$(q "SELECT count(*) FROM anvil.blocks")
log_rows=$(q "SELECT count(*) FROM anvil.logs")
# The dev broker keeps only the newest 5 MiB of a partition: its retained messages are checked to
# hold no duplicate and to reach the last block.
k_events=$(kcat -C -b "$bootstrap" -t anvil.events.token -o beginning -e -q -X isolation.level=read_committed -f '%s\n' |
  grep -o '"block_number":[0-9]*,"block_hash":"0x[0-9a-f]*","block_timestamp":[0-9]*,"transaction_hash":"0x[0-9a-f]*","transaction_index":[0-9]*,"log_index":[0-9]*' |
  awk '{n++; if (seen[$0]++) d++; if (match($0, /"block_number":[0-9]+/)) { b = substr($0, RSTART + 15, RLENGTH - 15) + 0; if (b > m) m = b } }
       END {printf "retained=%d duplicates=%d newest_block=%d", n, d, m}')
status=ok
[ "$caught_up_rows" = "$want" ] || status="EVENT COUNT MISMATCH ($caught_up_rows of $want)"
[ "$block_rows" = 0 ] || status="BLOCK ROWS IN LOGS-ONLY MODE"
if [ "$raw_logs" = true ]; then [ "$log_rows" -ge "$want" ] || status="RAW LOGS MISSING ($log_rows)"
else [ "$log_rows" = 0 ] || status="RAW LOGS WITH raw_logs = false"; fi
case "$k_events" in *"duplicates=0 newest_block="*) ;; *) status="KAFKA: $k_events" ;; esac
newest=$(sed 's/.*newest_block=//' <<<"$k_events")
[ "$newest" -ge "$last" ] || status="KAFKA: newest block $newest, below $last"
read -r eps ratio1 ration <<<"$(awk -v e="$want" -v s="$secs" -v c1="$ceil1" -v cn="$ceiln" 'BEGIN{
  r = e / s; printf "%.0f %.2f %.2f", r, r / c1, r / cn }')"

raw_arg="" tables="anvil.token_transfer + anvil.events.token"
[ "$raw_logs" = true ] && raw_arg=" --raw-logs" tables="$tables, and the logs table + the anvil.logs topic (raw_logs = true)"
pin_arg="" placement="all processes on all $(nproc) CPUs"
[ "$pin" = 1 ] && pin_arg=" --pin" placement="anvil alone on CPU 0; curl, Postgres, the broker and chainidx on CPU $rest_cpus"
report_text() {
  echo "### $(date -u +%Y-%m-%d) decoded events, logs-only history: $want Transfers in $((last + 1)) blocks"
  echo
  echo "\`bench/events.sh --blocks $blocks --txs $txs --logs-per-tx $logs_per_tx --in-flight $in_flight --log-blocks $log_blocks$raw_arg$pin_arg\`"
  echo
  echo "| measure | value |"
  echo "|---|---|"
  echo "| node's eth_getLogs ceiling ($log_blocks blocks a query), 1 in flight | $ceil1 events/s |"
  echo "| node's eth_getLogs ceiling, $in_flight in flight | $ceiln events/s |"
  echo "| chainidx first run, chain.index = \"events\", into $tables | $eps events/s in $secs s |"
  echo "| ratio to the node's ceiling at 1 / $in_flight in flight | $ratio1 / $ration |"
  echo "| placement | $placement |"
  echo "| CPU seconds during the catch-up: chainidx / anvil / Postgres / broker | $idx_cpu / $anvil_cpu / $pg_cpu / $broker_cpu |"
  echo "| chainidx peak RSS | $rss_mb MB |"
  echo "| eth_getLogs width changes (event=log_range_narrower) | $narrower |"
  echo "| rows: token_transfer up to block $last (expected $want); blocks; logs | $caught_up_rows; $block_rows; $log_rows |"
  echo "| Kafka, what the dev broker retains (newest 5 MiB a partition) of anvil.events.token | $k_events |"
  echo "| checks | $status |"
}
report=$(report_text)
echo
echo "$report"
if [ "$record" = 1 ]; then printf '\n%s\n' "$report" >>"$top/bench/RESULTS.md"; fi
[ "$status" = ok ]

#!/usr/bin/env bash
# The end-to-end history benchmark, in one run on one machine:
#  1. makes a deterministic anvil chain (a contract of ours emitting Transfer logs) and saves it
#     with --dump-state, so later runs only --load-state it;
#  2. measures the node's own ceiling for exactly the batches chainidx sends (50 blocks of
#     eth_getBlockByNumber(n,true) + eth_getBlockReceipts(n)), at 1 and at N in flight, with curl
#     reading and discarding the answers;
#  3. runs `chainidx replay --from 0 --to head-confirmations` into a fresh database and the dev
#     broker (topics under --topic-prefix replay), then a first `chainidx run` from block 0 into
#     another fresh database and the chain's own topics (the range engine catches up); checks the
#     row counts and the message counts of each (kcat, read_committed);
#  4. prints blocks/s, logs/s, rows/s, the ratio to the node's ceiling, each process's CPU seconds
#     and chainidx's peak RSS, for the replay and for the run; with --record, appends them to
#     bench/RESULTS.md.
#
#   bench/backfill.sh [--blocks 20000] [--txs 5] [--logs-per-tx 20] [--in-flight 4] [--record]
#                     [--bin-dir BUILD_DIR]   (binaries built already, e.g. the tests' build; no Release build)
#                     [--replay-chunk-blocks N]  (replay's --chunk-blocks; its default when not given)
set -euo pipefail
top="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$top"

blocks=20000 txs=5 logs_per_tx=20 in_flight=4 record=0 batch=50 confirmations=12 bin_dir="" replay_chunk=()
while [ $# -gt 0 ]; do
  case "$1" in
    --blocks) blocks="$2"; shift 2 ;;
    --txs) txs="$2"; shift 2 ;;
    --logs-per-tx) logs_per_tx="$2"; shift 2 ;;
    --in-flight) in_flight="$2"; shift 2 ;;
    --record) record=1; shift ;;
    --bin-dir) bin_dir="$2"; shift 2 ;;
    --replay-chunk-blocks) replay_chunk=(--chunk-blocks "$2"); shift 2 ;;
    -h|--help) sed -n '2,19p' "$0"; exit 0 ;;
    *) echo "backfill.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done

source "$top/bench/lib.sh"
bench_binaries backfill chain_gen
bench_chain "$blocks" "$txs" "$logs_per_tx"
start_anvil "$work/anvil.log" --no-mining --load-state "$state"
pids+=($anvil_pid)
head=$(( $(rpc "$node" eth_blockNumber '[]' | sed 's/.*"result":"\(0x[0-9a-f]*\)".*/\1/') ))
last=$((head - confirmations))
echo "backfill: node at block $head; indexing 0..$last"

# 2. The node's ceiling for the same batches: blocks 1..last, $batch a batch.
mkdir -p "$work/batches"
n=0
for ((first = 0; first <= last; first += batch)); do
  end=$((first + batch - 1)); [ "$end" -gt "$last" ] && end=$last
  body="["
  for ((b = first; b <= end; b++)); do
    h=$(printf '0x%x' "$b")
    body+="{\"jsonrpc\":\"2.0\",\"id\":$((2 * b)),\"method\":\"eth_getBlockByNumber\",\"params\":[\"$h\",true]},"
    body+="{\"jsonrpc\":\"2.0\",\"id\":$((2 * b + 1)),\"method\":\"eth_getBlockReceipts\",\"params\":[\"$h\"]},"
  done
  printf '%s]' "${body%,}" >"$work/batches/$n.json"
  add_request "$work/batches/$n.json"
  n=$((n + 1))
done
ceiling() { node_rate "$1" "$((last + 1))"; }  # in flight -> blocks/s
ceiling "$in_flight" >/dev/null  # warm the node's caches as chainidx will find them warm
ceil1=$(ceiling 1)
ceiln=$(ceiling "$in_flight")
echo "backfill: node ceiling for these batches: $ceil1 blocks/s at 1 in flight, $ceiln at $in_flight"

# 3. A fresh Postgres and dev broker, and a first chainidx run.
start_postgres chainidx chainidx_replay
start_devbroker anvil.blocks,anvil.transactions,anvil.logs,replay.blocks,replay.transactions,replay.logs
write_config "$work/chainidx.toml" "max_in_flight = $in_flight" "
[pipeline]
batch_blocks = 200
range_batch_blocks = $batch"
sed "s|/chainidx\"\$|/chainidx_replay\"|" "$work/chainidx.toml" >"$work/replay.toml"
grep -q chainidx_replay "$work/replay.toml" || { echo "backfill: could not write replay.toml" >&2; exit 1; }
minus() { awk -v a="$1" -v b="$2" 'BEGIN{printf "%.1f", a - b}'; }

# 3a. chainidx replay over the whole confirmed chain, into its own database and topics.
anvil_cpu0=$(cpu_of "$anvil_pid")
pg_cpu0=$(pg_cpu_now)
# `times` gives the replay's exact CPU once it has exited; its peak RSS is polled while it runs.
( CHAINIDX_LOG_LEVEL=info "$chainidx" replay --config "$work/replay.toml" --from 0 --to "$last" --topic-prefix replay "${replay_chunk[@]}" \
    >"$work/replay.log" 2>&1
  echo "rc=$?"
  times ) >"$work/replay.times" &
replay_shell=$!
replay_rss=0
while kill -0 "$replay_shell" 2>/dev/null; do
  rp=$(pgrep -f "chainidx replay --config $work/replay.toml" | head -1 || true)
  if [ -n "$rp" ]; then
    r=$(awk '/VmHWM/ {printf "%.0f", $2 / 1024}' "/proc/$rp/status" 2>/dev/null || echo 0)
    [ "${r:-0}" -gt "$replay_rss" ] && replay_rss=$r
  fi
  sleep 0.1
done
wait "$replay_shell" || true
grep -q "^rc=0" "$work/replay.times" || { echo "backfill: chainidx replay failed: $(tail -5 "$work/replay.log")" >&2; exit 1; }
replay_cpu=$(tail -1 "$work/replay.times" | awk '{
  split($1, u, /[ms]/); split($2, y, /[ms]/); printf "%.1f", u[1] * 60 + u[2] + y[1] * 60 + y[2] }')
replay_anvil_cpu=$(minus "$(cpu_of "$anvil_pid")" "$anvil_cpu0")
replay_pg_cpu=$(minus "$(pg_cpu_now)" "$pg_cpu0")
replay_secs=$(grep -o "event=replay_done.*seconds=[0-9.]*" "$work/replay.log" | sed 's/.*seconds=//')

# 3b. A first chainidx run from block 0: the range engine catches up, then hands over to live.
anvil_cpu0=$(cpu_of "$anvil_pid")
pg_cpu0=$(pg_cpu_now)
CHAINIDX_LOG_LEVEL=info "$chainidx" run --config "$work/chainidx.toml" >"$work/chainidx.log" 2>&1 &
idx_pid=$!
pids+=($idx_pid)
until grep -q "event=caught_up" "$work/chainidx.log"; do
  kill -0 "$idx_pid" 2>/dev/null || { echo "backfill: chainidx exited: $(tail -5 "$work/chainidx.log")" >&2; exit 1; }
  sleep 0.2
done
idx_cpu=$(cpu_of "$idx_pid")
anvil_cpu=$(minus "$(cpu_of "$anvil_pid")" "$anvil_cpu0")
pg_cpu=$(minus "$(pg_cpu_now)" "$pg_cpu0")
rss_mb=$(awk '/VmHWM/ {printf "%.0f", $2 / 1024}' "/proc/$idx_pid/status")
kill -TERM "$idx_pid"; wait "$idx_pid" || true
line=$(grep "event=caught_up" "$work/chainidx.log" | head -1)
secs=$(sed 's/.*seconds=\([0-9.]*\).*/\1/' <<<"$line")
done_blocks=$(sed 's/.* blocks=\([0-9]*\).*/\1/' <<<"$line")
logs=$(sed 's/.* logs=\([0-9]*\).*/\1/' <<<"$line")

q() { psql -h 127.0.0.1 -p "$pg_port" -U postgres "${db:-chainidx}" -tAc "$1"; }
pg_blocks=$(q "SELECT count(*) FROM anvil.blocks")
pg_txs=$(q "SELECT count(*) FROM anvil.transactions")
pg_logs=$(q "SELECT count(*) FROM anvil.logs")
db=chainidx_replay
r_blocks=$(q "SELECT count(*) FROM anvil.blocks")
r_txs=$(q "SELECT count(*) FROM anvil.transactions")
r_logs=$(q "SELECT count(*) FROM anvil.logs")
db=chainidx
want_logs=$(( (last - 1) * txs * logs_per_tx ))
want_txs=$(( (last - 1) * txs + 1 ))
# The dev broker (librdkafka's mock cluster) keeps only the newest 5 MiB of each partition, so a
# long history cannot be counted back from the beginning there: each topic's retained messages
# are checked to hold no duplicate and to reach the last block; on a real cluster count them all.
topic_check() {  # topic, key fields -> "retained=N duplicates=D newest_block=B"
  kcat -C -b "$bootstrap" -t "${prefix:-anvil}.$1" -o beginning -e -q -X isolation.level=read_committed -f '%s\n' |
    grep -o "$2" | awk -v F="$2" '{n++; if (seen[$0]++) d++; if (match($0, /"block_number":[0-9]+/)) {
      b = substr($0, RSTART + 15, RLENGTH - 15) + 0; if (b > m) m = b } }
      END {printf "retained=%d duplicates=%d newest_block=%d", n, d, m}'
}
k_blocks=$(topic_check blocks '"block_number":[0-9]*')
k_txs=$(topic_check transactions '"block_number":[0-9]*,"block_hash":"0x[0-9a-f]*","transaction_index":[0-9]*')
k_logs=$(topic_check logs '"block_number":[0-9]*,"block_hash":"0x[0-9a-f]*","log_index":[0-9]*')
prefix=replay
r_k_blocks=$(topic_check blocks '"block_number":[0-9]*')
r_k_txs=$(topic_check transactions '"block_number":[0-9]*,"block_hash":"0x[0-9a-f]*","transaction_index":[0-9]*')
r_k_logs=$(topic_check logs '"block_number":[0-9]*,"block_hash":"0x[0-9a-f]*","log_index":[0-9]*')
prefix=anvil
status=ok
[ "$pg_blocks" = $((last + 1)) ] || status="BLOCK COUNT MISMATCH"
[ "$pg_txs" = "$want_txs" ] || status="TRANSACTION COUNT MISMATCH"
[ "$pg_logs" = "$want_logs" ] || status="LOG COUNT MISMATCH"
[ "$r_blocks" = $((last + 1)) ] || status="REPLAY BLOCK COUNT MISMATCH"
[ "$r_txs" = "$want_txs" ] || status="REPLAY TRANSACTION COUNT MISMATCH"
[ "$r_logs" = "$want_logs" ] || status="REPLAY LOG COUNT MISMATCH"
for k in "$k_blocks" "$k_txs" "$k_logs" "$r_k_blocks" "$r_k_txs" "$r_k_logs"; do
  case "$k" in *"duplicates=0 newest_block=$last") ;; *) status="KAFKA: $k" ;; esac
done
rates_of() {  # blocks logs transactions seconds -> blocks/s logs/s rows/s ratio1 ratioN
  awk -v b="$1" -v l="$2" -v t="$3" -v s="$4" -v c1="$ceil1" -v cn="$ceiln" 'BEGIN{
    r = b / s; printf "%.0f %.0f %.0f %.2f %.2f", r, l / s, (b + l + t) / s, r / c1, r / cn }'
}
read -r bps lps rps ratio1 ration <<<"$(rates_of "$done_blocks" "$logs" "$pg_txs" "$secs")"
read -r r_bps r_lps r_rps r_ratio1 r_ration <<<"$(rates_of "$r_blocks" "$r_logs" "$r_txs" "$replay_secs")"
report_text() {
  echo "### $(date -u +%Y-%m-%d) backfill: $((last + 1)) blocks, $txs tx and $((txs * logs_per_tx)) logs a block"
  echo
  echo "\`bench/backfill.sh --blocks $blocks --txs $txs --logs-per-tx $logs_per_tx --in-flight $in_flight${replay_chunk:+ --replay-chunk-blocks ${replay_chunk[1]}}\`"
  echo
  echo "| measure | value |"
  echo "|---|---|"
  echo "| node ceiling, same batches ($batch blocks), 1 in flight | $ceil1 blocks/s |"
  echo "| node ceiling, $in_flight in flight | $ceiln blocks/s |"
  echo "| chainidx replay 0..$last into Postgres + Kafka | $r_bps blocks/s, $r_lps logs/s, $r_rps rows/s in $replay_secs s |"
  echo "| replay: ratio to the node's ceiling at 1 / $in_flight in flight | $r_ratio1 / $r_ration |"
  echo "| replay: CPU seconds, chainidx / anvil / Postgres | $replay_cpu / $replay_anvil_cpu / $replay_pg_cpu |"
  echo "| replay: chainidx peak RSS | $replay_rss MB |"
  echo "| replay: rows in Postgres, blocks / transactions / logs | $r_blocks / $r_txs / $r_logs |"
  echo "| replay: Kafka (topics replay.*), blocks; transactions; logs | $r_k_blocks; $r_k_txs; $r_k_logs |"
  echo "| chainidx first run (range engine) into Postgres + Kafka | $bps blocks/s, $lps logs/s, $rps rows/s in $secs s |"
  echo "| ratio to the node's ceiling at 1 / $in_flight in flight | $ratio1 / $ration |"
  echo "| CPU seconds during the catch-up: chainidx / anvil / Postgres | $idx_cpu / $anvil_cpu / $pg_cpu |"
  echo "| chainidx peak RSS | $rss_mb MB |"
  echo "| rows in Postgres: blocks / transactions / logs (expected $((last + 1)) / $want_txs / $want_logs) | $pg_blocks / $pg_txs / $pg_logs |"
  echo "| Kafka, what the dev broker retains (newest 5 MiB a partition): blocks; transactions; logs | $k_blocks; $k_txs; $k_logs |"
  echo "| checks | $status |"
}
report=$(report_text)
echo
echo "$report"
if [ "$record" = 1 ]; then printf '\n%s\n' "$report" >>"$top/bench/RESULTS.md"; fi
[ "$status" = ok ]

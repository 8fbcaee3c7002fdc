#!/usr/bin/env bash
# The live path's latency, head to confirmed write, on loopback: a fresh anvil mined by hand
# (--no-mining, one block every --interval-ms with one transfer in it), a fresh Postgres and the
# dev broker, and `chainidx run` with --confirmations; for each block N, the time from the
# evm_mine that makes block N + confirmations to the commit that moves the cursor to N (after its
# Kafka transaction). Prints the distribution (p50/p90/p99/max, a histogram, and what a stall
# probe saw of the machine meanwhile); with --record, appends it to bench/RESULTS.md. Not a test:
# nothing here is asserted.
#
#   bench/live_latency.sh [--rounds 200] [--interval-ms 500] [--confirmations 3] [--record]
#                         [--bin-dir BUILD_DIR]   (binaries built already; no Release build)
#                         [--stage-ahead MODE]    (pipeline.stage_ahead: off, postgres (default), all)
#                         [--async-commit]        (postgres.url with ?options=-c synchronous_commit=off:
#                                                  the COMMIT does not wait for the disk's flush)
# With BENCH_KEEP=1 the scratch directory (chainidx.log, latency.us) is kept; with
# CHAINIDX_LOG_LEVEL=debug the log times each sink write (event=sink_written ... us=N).
set -euo pipefail
top="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$top"

rounds=200 interval=500 confirmations=3 record=0 bin_dir="" stage_ahead=postgres pg_url_query=""
while [ $# -gt 0 ]; do
  case "$1" in
    --rounds) rounds="$2"; shift 2 ;;
    --interval-ms) interval="$2"; shift 2 ;;
    --confirmations) confirmations="$2"; shift 2 ;;
    --record) record=1; shift ;;
    --bin-dir) bin_dir="$2"; shift 2 ;;
    --stage-ahead) stage_ahead="$2"; shift 2 ;;
    --async-commit) pg_url_query="?options=-c%20synchronous_commit%3Doff"; shift ;;
    -h|--help) sed -n '2,15p' "$0"; exit 0 ;;
    *) echo "live_latency.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
source "$top/bench/lib.sh"
bench_binaries live_latency live_latency
start_anvil "$work/anvil.log" --no-mining
pids+=($anvil_pid)
start_postgres chainidx
start_devbroker anvil.blocks,anvil.transactions,anvil.logs
write_config "$work/chainidx.toml" "" ""
printf '\n[pipeline]\nstage_ahead = "%s"\n' "$stage_ahead" >>"$work/chainidx.toml"
CHAINIDX_LOG_LEVEL=${CHAINIDX_LOG_LEVEL:-info} "$chainidx" run --config "$work/chainidx.toml" >"$work/chainidx.log" 2>&1 &
idx_pid=$!
pids+=($idx_pid)
until grep -q "event=ws_subscribed" "$work/chainidx.log"; do
  kill -0 "$idx_pid" 2>/dev/null || { echo "live_latency: chainidx exited: $(tail -5 "$work/chainidx.log")" >&2; exit 1; }
  sleep 0.1
done
echo "live_latency: $rounds blocks, one every $interval ms, confirmations $confirmations"
"$bin_dir/bench/live_latency" "$node" "host=127.0.0.1 port=$pg_port user=postgres dbname=chainidx" anvil "$confirmations" \
  "$rounds" "$interval" >"$work/latency.us"
kill -0 "$idx_pid" 2>/dev/null || { echo "live_latency: chainidx exited: $(tail -5 "$work/chainidx.log")" >&2; exit 1; }
samples=$(wc -l <"$work/latency.us")
[ "$samples" -eq $((rounds - confirmations)) ] ||
  { echo "live_latency: $samples samples for $((rounds - confirmations)) blocks" >&2; exit 1; }
summary=$(sort -n "$work/latency.us" | awk '
  function pk(q, n,   i) { i = int(q * n + 0.999999); if (i < 1) i = 1; if (i > n) i = n; return i }
  function pick(q) { return v[pk(q, NR)] }
  { v[NR] = $1 / 1000; late[NR] = $2 + 0 }
  END {
    if (NR == 0) { print "| samples | 0 |"; exit 1 }
    printf "| samples | %d |\n| p50 | %.1f ms |\n| p90 | %.1f ms |\n| p99 | %.1f ms |\n| max | %.1f ms |\n", NR, pick(0.5), pick(0.9), pick(0.99), v[NR]
    split("5 10 20 40 60 100 1000000", edges, " ")
    lo = 0; h = ""
    for (e = 1; e <= 7; e++) {
      n = 0
      for (k = 1; k <= NR; k++) if (v[k] >= lo && v[k] < edges[e] + 0) n++
      label = (e == 7) ? ">= " lo " ms" : lo "-" edges[e] " ms"
      if (n) h = h label ": " n "; "
      lo = edges[e] + 0
    }
    printf "| histogram | %s |\n", h
    # The stall probe (bench/live_latency.cpp): the blocks above 5 ms during which the whole
    # machine was seen stalled, and the distribution of the blocks during which it was not.
    slow = 0; slow_stalled = 0; m = 0
    for (k = 1; k <= NR; k++) {
      if (v[k] >= 5) { slow++; if (late[k] > 0) slow_stalled++ }
      if (late[k] == 0) q[++m] = v[k]
    }
    printf "| blocks above 5 ms / of them with the stall probe 2 ms or more late meanwhile | %d / %d |\n", slow, slow_stalled
    if (m) printf "| blocks the probe saw no stall in: count, p50 / p99 / max | %d, %.1f / %.1f / %.1f ms |\n", m, q[pk(0.5, m)], q[pk(0.99, m)], q[m]
  }')
args="--rounds $rounds --interval-ms $interval --confirmations $confirmations --stage-ahead $stage_ahead"
[ -n "$pg_url_query" ] && args="$args --async-commit"
report=$(printf '### %s live latency: head to confirmed write\n\n`bench/live_latency.sh %s`\n\n| measure | value |\n|---|---|\n%s\n' \
  "$(date -u +%Y-%m-%d)" "$args" "$summary")
echo
echo "$report"
if [ "$record" = 1 ]; then printf '\n%s\n' "$report" >>"$top/bench/RESULTS.md"; fi

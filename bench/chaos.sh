#!/usr/bin/env bash
# The chaos run: `chainidx run` against anvil mining blocks with logs and reorganising below the
# confirmation depth, while 100 faults (by default) come at random on its two endpoints: the
# WebSocket stalled, dropped or blackholed, HTTP answering 429, 5xx or truncated JSON, some on
# both endpoints at once. At the end Postgres and the topics are compared with the node's
# canonical chain, and the count of each fault survived is printed. The suite runs a short
# version (Chaos.* with 16 faults); this is the long one.
#
#   bench/chaos.sh [--faults 100] [--seed N] [--build-dir build]
set -euo pipefail
top="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
faults=100 seed="" build_dir="$top/build"
while [ $# -gt 0 ]; do
  case "$1" in
    --faults) faults="$2"; shift 2 ;;
    --seed) seed="$2"; shift 2 ;;
    --build-dir) build_dir="$2"; shift 2 ;;
    -h|--help) sed -n '2,9p' "$0"; exit 0 ;;
    *) echo "chaos.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
if [ ! -x "$build_dir/tests/integration_tests" ]; then
  bash "$top/deploy/install-deps.sh" >/dev/null
  cmake -S "$top" -B "$build_dir" -G Ninja -DCMAKE_BUILD_TYPE=Debug >/dev/null
fi
ninja -C "$build_dir" integration_tests chainidx >/dev/null
export CHAINIDX_CHAOS_FAULTS="$faults"
[ -n "$seed" ] && export CHAINIDX_CHAOS_SEED="$seed"
out="$(mktemp)"
trap 'rm -f "$out"' EXIT
status=0
"$build_dir/tests/integration_tests" --gtest_filter='Chaos.*' >"$out" 2>&1 || status=$?
grep '^chaos:' "$out" || true
if [ "$status" != 0 ]; then
  cat "$out"
  echo "chaos.sh: FAILED (repeat with --seed from the first line)" >&2
fi
exit "$status"

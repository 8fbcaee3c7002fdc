#!/usr/bin/env bash
# Builds chainidx and runs the whole test suite (unit + integration against real anvil,
# Postgres and the Kafka-protocol dev broker) with ctest. Does its own set-up.
#   tests/run.sh                 everything
#   tests/run.sh -L unit         only the unit tests (any ctest arguments pass through)
set -euo pipefail
top="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$top"

bash deploy/install-deps.sh

build_dir="${CHAINIDX_TEST_BUILD_DIR:-build}"
# Debug: the unit tests exercise assertions on the buffer's invariants.
cmake -S . -B "$build_dir" -G Ninja -DCMAKE_BUILD_TYPE=Debug >/dev/null
ninja -C "$build_dir"

cd "$build_dir"
ctest --output-on-failure -j "$(nproc)" --timeout 600 "$@"

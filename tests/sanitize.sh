#!/usr/bin/env bash
# Builds chainidx, its unit tests and its integration tests with AddressSanitizer and
# UndefinedBehaviorSanitizer (CMake preset "asan") and runs them: the chainidx binary that the
# integration tests start is instrumented too, so use-after-free, leaks, overflows and undefined
# behaviour anywhere on the tested paths fail the run.
#   tests/sanitize.sh                 everything
#   tests/sanitize.sh -L unit         only the unit tests (any ctest arguments pass through)
set -euo pipefail
top="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$top"
bash deploy/install-deps.sh
cmake --preset asan >/dev/null
ninja -C build-asan
# halt_on_error: the first report fails the test that caused it. Leak checking stays on for
# our code; librdkafka keeps a few process-wide allocations until exit, which the suppressions
# file names.
export ASAN_OPTIONS="halt_on_error=1:detect_leaks=1:abort_on_error=0"
export LSAN_OPTIONS="suppressions=$top/tests/lsan.supp:print_suppressions=0"
export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1"
cd build-asan
ctest --output-on-failure -j "$(nproc)" --timeout 900 "$@"

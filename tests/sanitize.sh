#!/usr/bin/env bash
# Builds chainidx, its unit tests and its integration tests with sanitizers and runs them: the
# chainidx binary that the integration tests start is instrumented too, so the tested paths fail
# the run on the first report.
#   tests/sanitize.sh                 AddressSanitizer + UndefinedBehaviorSanitizer (preset "asan"):
#                                     use-after-free, leaks, overflows, undefined behaviour
#   tests/sanitize.sh --thread        ThreadSanitizer (preset "tsan"): data races between the io
#                                     thread, the decode pool and the sink writer
#   tests/sanitize.sh -L unit         only the unit tests (any ctest arguments pass through)
set -euo pipefail
top="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$top"
preset=asan
if [ "${1:-}" = "--thread" ]; then preset=tsan; shift; fi
bash deploy/install-deps.sh
cmake --preset "$preset" >/dev/null
ninja -C "build-$preset"
# halt_on_error: the first report fails the test that caused it. Leak checking stays on for
# our code; librdkafka keeps a few process-wide allocations until exit, which the suppressions
# file names.
export ASAN_OPTIONS="halt_on_error=1:detect_leaks=1:abort_on_error=0"
export LSAN_OPTIONS="suppressions=$top/tests/lsan.supp:print_suppressions=0"
export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1"
export TSAN_OPTIONS="halt_on_error=1:second_deadlock_stack=1"
cd "build-$preset"
if [ "$preset" = tsan ] && [ $# -eq 0 ]; then
  # librdkafka starts its threads with C11 thrd_create, which GCC 12's ThreadSanitizer does not
  # intercept: the first allocation on such a thread crashes inside TSan. So under TSan run what
  # starts no Kafka client: the unit tests and the in-process integration tests (the range engine
  # with its decode pool, the HTTP client, the head subscriber, the Postgres sink).
  ctest --output-on-failure -j "$(nproc)" --timeout 900 -L unit
  ctest --output-on-failure -j "$(nproc)" --timeout 900 -R '^(RangeEngine|HttpRpcClient|HeadSubscriber|EndpointPool|PostgresSink)\.'
else
  ctest --output-on-failure -j "$(nproc)" --timeout 900 "$@"
fi

#!/usr/bin/env bash
# Builds and runs the test suite under sanitizers:
#   build-asan/  AddressSanitizer + UndefinedBehaviorSanitizer, the whole ctest suite
#   build-tsan/  ThreadSanitizer, the shared-memory, queue and daemon tests (ctest labels below)
# Every report from every process (tests, shmbusd, peers they spawn) is written to a log file, and any such file
# fails the run: a daemon or child whose report no test would notice still counts.
#   scripts/sanitize.sh [asan|tsan]   (default: both)
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup-deps.sh
which="${1:-all}"
tsan_labels='^(ring_test|work_queue_test|owner_lock_test|queue_test|async_test|async_queue_test|pubsub_test|drain_test|daemon_test|truncation_test)$'
failed=0

# run <build dir> <sanitizers> <ctest args...>
run() {
  local build=$1 sanitize=$2
  shift 2
  local reports="$PWD/$build/sanitizer-reports"
  local start=$SECONDS
  cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DSHMBUS_SANITIZE="$sanitize" \
    -DSHMBUS_BUILD_BENCH=OFF -DSHMBUS_BUILD_EXAMPLES=OFF >/dev/null
  if [[ "$sanitize" == thread ]]; then
    cmake --build "$build" -j"$(nproc)" --target ring_test work_queue_test owner_lock_test queue_test async_test async_queue_test pubsub_test daemon_test \
      truncation_test >/dev/null
  else
    cmake --build "$build" -j"$(nproc)" >/dev/null
  fi
  rm -rf "$reports" && mkdir -p "$reports"
  # halt_on_error: the first report ends the process, so a test cannot pass over it (UBSan would go on).
  local status=0
  (cd "$build" &&
    ASAN_OPTIONS="detect_leaks=1:detect_stack_use_after_return=1:strict_string_checks=1:log_path=$reports/asan" \
    UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1:log_path=$reports/ubsan" \
    TSAN_OPTIONS="halt_on_error=1:second_deadlock_stack=1:history_size=4:log_path=$reports/tsan" \
    ctest --output-on-failure -j"$(nproc)" "$@") || status=$?
  # LeakSanitizer's "Unable to get registers from thread N." alone is a known spurious message (it fails to
  # read a thread it suspended, rarely; LLVM made it a verbose-only note, llvm-project PR 116555): such a file
  # is shown, not failed on. Any other line in a report still fails the run.
  for f in "$reports"/*; do
    [[ -e "$f" ]] || continue
    if ! grep -qvE '^==[0-9]+==Unable to get registers from thread [0-9]+\.$' "$f"; then
      echo "sanitize: note, spurious LeakSanitizer message in $f: $(cat "$f")" >&2
      rm -f "$f"
    fi
  done
  if compgen -G "$reports/*" >/dev/null; then
    echo "sanitize: $sanitize reports in $reports:" >&2
    cat "$reports"/* >&2
    status=1
  fi
  echo "sanitize: $sanitize: $([[ $status == 0 ]] && echo passed || echo FAILED) in $((SECONDS - start)) s"
  ((status == 0)) || failed=1
}

# install_package_test is left out: it links an uninstrumented program against the instrumented static libraries,
# which cannot link; it tests packaging, which scripts/test.sh covers.
[[ "$which" == tsan ]] || run build-asan address,undefined -LE '^install$'
[[ "$which" == asan ]] || run build-tsan thread -L "$tsan_labels"
exit "$failed"

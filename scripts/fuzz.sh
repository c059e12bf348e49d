#!/usr/bin/env bash
# Builds the libFuzzer targets (fuzz/, clang, build-fuzz/) and runs each for SECONDS (default 60) on a scratch
# copy of its seed corpus, as many at once as there are cores. First replays fuzz/regressions/<target>/.
# Fails if any target crashes, leaks, hangs or trips a sanitizer; prints executions per target.
#   scripts/fuzz.sh [SECONDS]
# A crash leaves its input in build-fuzz/fuzz-work/<target>/ (see the log there); minimise it with
# `build-fuzz/fuzz/fuzz_<target> -minimize_crash=1 -runs=100000 <file>` and keep it in fuzz/regressions/<target>/.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-60}"
build=build-fuzz
work="$build/fuzz-work"

CC=clang CXX=clang++ cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DSHMBUS_FUZZ=ON \
  -DSHMBUS_BUILD_TESTS=OFF -DSHMBUS_BUILD_BENCH=OFF -DSHMBUS_BUILD_EXAMPLES=OFF >/dev/null
cmake --build "$build" -j"$(nproc)" --target shmbus_fuzzers >/dev/null

# Inputs larger than these are refused before the decoder runs; segments need room for a few rings.
max_len() {
  case "$1" in
    control_record) echo 16400 ;;  # a little over kMaxRecordBytes
    topic_header) echo 65536 ;;
    work_queue) echo 16384 ;;  # a header page, the index and a few entries
    *) echo 4096 ;;
  esac
}

run_target() {
  local name=$1 binary="$build/fuzz/fuzz_$1" dir="$work/$1"
  rm -rf "$dir" && mkdir -p "$dir/corpus"
  cp fuzz/corpus/"$name"/* "$dir/corpus/"
  local regressions=(fuzz/regressions/"$name"/*)
  if [[ -e "${regressions[0]}" ]] && ! "$binary" "${regressions[@]}" >"$dir/regressions.log" 2>&1; then
    echo "fuzz: $name: a regression input still fails (see $dir/regressions.log)" >"$dir/result"
    return 1
  fi
  # -timeout: an input running 10 s is a hang (an endless loop over shared memory, say), reported as a crash.
  if "$binary" "$dir/corpus" -max_total_time="$seconds" -max_len="$(max_len "$name")" -timeout=10 \
       -artifact_prefix="$dir/" -print_final_stats=1 >"$dir/log" 2>&1; then
    local runs
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$dir/log")
    printf 'fuzz: %-15s %12s executions in %ss, no crash\n' "$name" "$runs" "$seconds" >"$dir/result"
  else
    echo "fuzz: $name: CRASH, input and log in $dir/" >"$dir/result"
    return 1
  fi
}

targets=()
for d in fuzz/corpus/*/; do targets+=("$(basename "$d")"); done
for t in "${targets[@]}"; do
  [[ -x "$build/fuzz/fuzz_$t" ]] || { echo "fuzz: corpus $t has no target fuzz_$t" >&2; exit 1; }
done

failed=0
running=0
for t in "${targets[@]}"; do
  if ((running >= $(nproc))); then wait -n || failed=1; running=$((running - 1)); fi
  run_target "$t" &
  running=$((running + 1))
done
while ((running > 0)); do wait -n || failed=1; running=$((running - 1)); done
for t in "${targets[@]}"; do cat "$work/$t/result"; done
exit "$failed"

#!/usr/bin/env bash
# Syscall check: how many system calls shmbus makes per message once data flows.
#
# Runs each shmbus bench program twice under `strace -f`: once with COUNT messages and once with
# one (the setup baseline: connect, open, mmap, fork, rendezvous, tear-down), and reports
#   (syscalls of the run - syscalls of the baseline) / (messages of the run - messages of the baseline)
# counting both bench processes (publisher and subscriber side) but not the private shmbusd,
# whose syscalls follow the clock (control plane), not the messages; it is reported apart.
#   busy-poll   bench-shmbus stream and rtt: expected ~0 per message
#   blocking    bench-shmbus-blocking rtt (every message wakes a sleeping reader) and stream:
#               futex calls per message
# strace stops the traced process on every syscall, so runs that make syscalls run slower under
# it than without; counts of busy-poll runs are unaffected, the futex rate of a blocking stream
# (which depends on how often the reader finds the ring empty) is a rate under strace.
#
# usage: bench/syscall_check.sh [--quick] [--bin-dir DIR] [--count N] [--cpu-a N --cpu-b N | --no-pin] OUTPUT.jsonl
#   appends one JSON line per check to OUTPUT and prints a markdown table on stdout.
#   --quick: 20 000 messages (a smoke test); default 1 000 000 (busy-poll) and 50 000 (blocking).
# Exits non-zero if a run fails or strace is missing.
set -euo pipefail
export LC_ALL=C

bench_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
bin_dir="${BENCH_BIN_DIR:-$bench_dir/../build/bench}"
count=1000000
blocking_count=50000
cpu_a=0
cpu_b=1
output=""
die() { echo "syscall_check.sh: $*" >&2; exit 2; }
while (($#)); do
  case "$1" in
    --quick) count=20000; blocking_count=5000 ;;
    --bin-dir) bin_dir="${2:?}"; shift ;;
    --count) count="${2:?}"; shift ;;
    --blocking-count) blocking_count="${2:?}"; shift ;;
    --cpu-a) cpu_a="${2:?}"; shift ;;
    --cpu-b) cpu_b="${2:?}"; shift ;;
    --no-pin) cpu_a=""; cpu_b="" ;;
    -h | --help) sed -n '2,22p' "$0"; exit 0 ;;
    -*) die "unknown flag $1" ;;
    *) [[ -z "$output" ]] || die "only one output file"; output="$1" ;;
  esac
  shift
done
[[ -n "$output" ]] || die "usage: syscall_check.sh [--quick] [--bin-dir DIR] OUTPUT.jsonl"
command -v strace >/dev/null || die "strace not found (Debian package strace; scripts/setup-deps.sh --bench)"
prog_dir="$bin_dir/shmbus"
[[ -x "$prog_dir/bench-shmbus" ]] || die "no $prog_dir/bench-shmbus (build first, or pass --bin-dir)"
pin_flags=()
[[ -z "$cpu_a" ]] || pin_flags=(--cpu-a "$cpu_a" --cpu-b "$cpu_b")

work_dir="$(mktemp -d /tmp/shmbus-syscall-check.XXXXXX)"
trap 'rm -rf "$work_dir"' EXIT

# Counts the syscalls in an `strace -f -o` log: prints "total futex daemon top" where total and futex
# exclude the daemon (the process that exec'd shmbusd) and top is "name:count ..." of the rest.
count_log() {
  awk '
    $2 ~ /^execve\(/ && $0 ~ /shmbusd/ { daemon[$1] = 1 }
    { pid = $1; $1 = ""; line = substr($0, 2)
      if (line ~ /^<\.\.\./ || line ~ /^\+\+\+/ || line ~ /^---/) next   # resumed halves, exits, signals
      name = line; sub(/\(.*/, "", name)
      if (name !~ /^[a-z_0-9]+$/) next
      calls[pid, name]++; pids[pid] = 1; names[name] = 1 }
    END {
      total = 0; futex = 0; dtotal = 0
      for (k in calls) { split(k, part, SUBSEP)
        if (part[1] in daemon) { dtotal += calls[k]; continue }
        total += calls[k]; by[part[2]] += calls[k]
        if (part[2] == "futex") futex += calls[k] }
      top = ""
      for (n in by) top = top n ":" by[n] " "
      printf "%d %d %d %s\n", total, futex, dtotal, top }
  ' "$1"
}

# $1 label, $2 program, $3 mode, $4 messages per unit (1 stream, 2 rtt), $5 count
check() {
  local label="$1" program="$2" mode="$3" per="$4" n="$5"
  local args=(--mode "$mode" --size 64 --warmup 1 --probe-rounds 0 "${pin_flags[@]}")
  local base_line run_line
  if ! base_line="$(strace -f -o "$work_dir/base.log" "$prog_dir/$program" "${args[@]}" --count 1 2>"$work_dir/err")"; then
    echo "syscall_check.sh: $program $mode baseline failed: $(tail -n 3 "$work_dir/err")" >&2
    printf '{"check":"%s","error":"baseline run failed"}\n' "$label" >>"$output"
    return 1
  fi
  if ! run_line="$(strace -f -o "$work_dir/run.log" "$prog_dir/$program" "${args[@]}" --count "$n" 2>"$work_dir/err")"; then
    echo "syscall_check.sh: $program $mode $n failed: $(tail -n 3 "$work_dir/err")" >&2
    printf '{"check":"%s","error":"run failed"}\n' "$label" >>"$output"
    return 1
  fi
  local b r
  read -r b_total b_futex b_daemon b_top <<<"$(count_log "$work_dir/base.log")"
  read -r r_total r_futex r_daemon r_top <<<"$(count_log "$work_dir/run.log")"
  # The delta per syscall name, largest first.
  local delta
  delta="$(join -a1 -a2 -e0 -o 0,1.2,2.2 <(tr ' ' '\n' <<<"$r_top" | grep . | tr ':' ' ' | sort) \
    <(tr ' ' '\n' <<<"$b_top" | grep . | tr ':' ' ' | sort) |
    awk '$2 - $3 != 0 { printf "%s:%d\n", $1, $2 - $3 }' | sort -t: -k2 -rn | head -n 6 | tr '\n' ' ')"
  local messages=$(((n - 1) * per))
  local per_msg futex_per_msg hot hot_per_msg
  per_msg="$(awk -v a="$r_total" -v b="$b_total" -v m="$messages" 'BEGIN { printf "%.6f", (a - b) / m }')"
  # Hot path: the growth of every syscall but the harness's own waits (sched_yield in its phase
  # barrier, clock_nanosleep in its set-up polls), counting no name below zero (set-up jitter).
  hot="$(join -a1 -a2 -e0 -o 0,1.2,2.2 <(tr ' ' '\n' <<<"$r_top" | grep . | tr ':' ' ' | sort) \
    <(tr ' ' '\n' <<<"$b_top" | grep . | tr ':' ' ' | sort) |
    awk '$1 != "sched_yield" && $1 != "clock_nanosleep" && $2 > $3 { n += $2 - $3 } END { print n + 0 }')"
  hot_per_msg="$(awk -v h="$hot" -v m="$messages" 'BEGIN { printf "%.6f", h / m }')"
  futex_per_msg="$(awk -v a="$r_futex" -v b="$b_futex" -v m="$messages" 'BEGIN { printf "%.6f", (a - b) / m }')"
  local rate=""
  [[ "$run_line" =~ \"msgs_per_s\":([0-9.e+]+) ]] && rate=",\"msgs_per_s_under_strace\":${BASH_REMATCH[1]}"
  [[ "$run_line" =~ \"p50_ns\":([0-9]+) ]] && rate=",\"p50_ns_under_strace\":${BASH_REMATCH[1]}"
  printf '{"check":"%s","program":"%s","mode":"%s","size":64,"messages":%d,"syscalls_run":%d,"syscalls_baseline":%d,"syscalls_per_message":%s,"hot_path_syscalls":%d,"hot_path_syscalls_per_message":%s,"futex_run":%d,"futex_baseline":%d,"futex_per_message":%s,"daemon_syscalls_run":%d,"daemon_syscalls_baseline":%d,"delta_by_syscall":"%s"%s}\n' \
    "$label" "$program" "$mode" "$messages" "$r_total" "$b_total" "$per_msg" "$hot" "$hot_per_msg" "$r_futex" "$b_futex" "$futex_per_msg" \
    "$r_daemon" "$b_daemon" "${delta% }" "$rate" >>"$output"
  printf '| %s | %s --mode %s | %d | %d | %d | %s | %s | %s | %s |\n' "$label" "$program" "$mode" "$messages" "$b_total" \
    "$r_total" "$per_msg" "$hot_per_msg" "$futex_per_msg" "${delta% }"
}

echo "| check | program | messages | syscalls (baseline) | syscalls (run) | per message | hot path per message | futex per message | delta by syscall |"
echo "|---|---|---|---|---|---|---|---|---|"
failed=0
rtt_count=$((count / 5))
check "busy-poll stream" bench-shmbus stream 1 "$count" || failed=1
check "busy-poll rtt" bench-shmbus rtt 2 "$rtt_count" || failed=1
if [[ -x "$prog_dir/bench-shmbus-blocking" ]]; then
  check "blocking rtt" bench-shmbus-blocking rtt 2 "$((blocking_count / 5))" || failed=1
  check "blocking stream" bench-shmbus-blocking stream 1 "$blocking_count" || failed=1
else
  echo "syscall_check.sh: no bench-shmbus-blocking" >&2
  failed=1
fi
exit "$failed"

#!/usr/bin/env bash
# Runs every built peer benchmark over the standard sizes, in rtt and stream modes, with a
# cache-line floor probe (bench-floor --probe 5000) right before and after each row, and
# appends one JSON line per run to OUTPUT. Peers that were not built, and runs that failed,
# are reported as {"peer":...,"error":...} lines: nothing is skipped silently.
#
# usage: bench/run_peers.sh [--quick] [--bin-dir DIR] [--peers "uds zmq ..."] [--sizes "64 ..."]
#                           [--cpu-a N --cpu-b N | --no-pin] OUTPUT.jsonl
#   --quick    a few sizes, tiny counts: a smoke test (< 30 s)
#   --bin-dir  where the bench-* programs are (default: $BENCH_BIN_DIR, else <repo>/build/bench)
# Exits non-zero if any run failed or left something behind (a peer not built is no failure).
#
# Why the probes: the hypervisor moves the two vCPUs between near and far physical cores, so
# the same ping-pong swings between ~150 and ~550 ns from one minute to the next (see
# shared/README.md, trap 1). Compare rows as ratios to their probes, and only when the probes
# before and after a row agree.
set -euo pipefail
shopt -s extglob

bench_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
all_peers=(floor naive-ring uds zmq boost-mq iceoryx)

quick=false
bin_dir="${BENCH_BIN_DIR:-$bench_dir/../build/bench}"
peers=("${all_peers[@]}")
sizes=()
cpu_a=0
cpu_b=1
output=""

die() { echo "run_peers.sh: $*" >&2; exit 2; }

while (($#)); do
  case "$1" in
    --quick) quick=true ;;
    --bin-dir) bin_dir="${2:?--bin-dir needs a directory}"; shift ;;
    --peers) read -r -a peers <<<"${2:?--peers needs a list}"; shift ;;
    --sizes) read -r -a sizes <<<"${2:?--sizes needs a list}"; shift ;;
    --cpu-a) cpu_a="${2:?}"; shift ;;
    --cpu-b) cpu_b="${2:?}"; shift ;;
    --no-pin) cpu_a=""; cpu_b="" ;;
    -h | --help) sed -n '2,14p' "$0"; exit 0 ;;
    -*) die "unknown flag $1" ;;
    *) [[ -z "$output" ]] || die "only one output file"; output="$1" ;;
  esac
  shift
done
[[ -n "$output" ]] || die "usage: run_peers.sh [--quick] [--bin-dir DIR] OUTPUT.jsonl"
[[ -x "$bin_dir/bench-floor" ]] || die "no bench-floor in $bin_dir (build first, or pass --bin-dir)"
bin_dir="$(cd "$bin_dir" && pwd)"
if [[ -n "$cpu_a" && "$(nproc)" -lt 2 ]]; then
  echo "run_peers.sh: fewer than 2 CPUs: not pinning" >&2
  cpu_a=""
  cpu_b=""
fi
pin_flags=()
[[ -z "$cpu_a" ]] || pin_flags=(--cpu-a "$cpu_a" --cpu-b "$cpu_b")

if ((${#sizes[@]} == 0)); then
  if $quick; then
    sizes=(64 65536 4194304)
  else
    sizes=(8 64 1024 4096 65536 1048576 4194304)
  fi
fi

# Counts per row, sized so that a full run takes about 3-4 minutes on 2 cores (ZeroMQ's ~80 µs
# round trip dominates); 64 B round trips get 200 000 like the reference table.
# Zero-copy peers (the floor moves no payload) cost the same at every size: they get at least 20 000 round
# trips (a few ms), because a row of 500 measures the start of a run, measured 260-300 ns where 20 000 measure
# 180 ns for shmbus at 4 MiB: the figure of a cold start, not of the transport.
rtt_count() {  # $1 size, $2 peer
  if $quick; then
    case "$1" in 64) echo 2000 ;; 65536) echo 500 ;; *) echo 50 ;; esac
    return
  fi
  case "$2" in
    floor | shmbus | shmbus-unstamped | shmbus-drain | iceoryx)
      case "$1" in 8 | 64) echo 200000 ;; *) echo 20000 ;; esac
      return
      ;;
  esac
  case "$1" in
    64) echo 200000 ;;
    8 | 1024 | 4096) echo 50000 ;;
    65536) echo 20000 ;;
    1048576) echo 2000 ;;
    *) echo 500 ;;
  esac
}
stream_count() {
  if $quick; then
    case "$1" in 64) echo 20000 ;; 65536) echo 2000 ;; *) echo 50 ;; esac
    return
  fi
  case "$1" in
    8 | 64 | 1024) echo 1000000 ;;
    4096) echo 300000 ;;
    65536) echo 30000 ;;
    1048576) echo 2000 ;;
    *) echo 500 ;;
  esac
}
warmup_for() { local w=$(($1 / 20)); echo $((w < 10 ? 10 : w)); }
probe_rounds=5000

work_dir="$(mktemp -d /tmp/shmbus-bench-run.XXXXXX)"
roudi_pid=""
roudi_ran=false
# What RouDi leaves if it is not stopped cleanly; names that exist before the run are not ours.
iceoryx_names_before="$(ls -d /dev/shm/iceoryx_mgmt "/dev/shm/$(id -un)" /tmp/roudi /tmp/roudi.lock \
  /tmp/iox-unique-roudi.lock 2>/dev/null || true)"
iceoryx_names=()

stop_roudi() {
  [[ -n "$roudi_pid" ]] || return 0
  kill -INT "$roudi_pid" 2>/dev/null || true
  for _ in $(seq 100); do kill -0 "$roudi_pid" 2>/dev/null || break; sleep 0.1; done
  if kill -0 "$roudi_pid" 2>/dev/null; then
    echo "run_peers.sh: iox-roudi did not stop on SIGINT; killing it" >&2
    kill -KILL "$roudi_pid" 2>/dev/null || true
  fi
  wait "$roudi_pid" 2>/dev/null || true
  roudi_pid=""
}
cleanup() {
  stop_roudi
  rm -rf "$work_dir"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

json_escape() {
  local s="$1"
  s="${s//$'\e'\[*([0-9;])m/}"  # terminal colours, as iceoryx logs them
  s="${s//\\/\\\\}"
  s="${s//\"/\\\"}"
  s="${s//$'\t'/ }"
  s="${s//$'\r'/ }"
  printf '%s' "${s//$'\n'/ }"
}
emit() { printf '%s\n' "$1" >>"$output"; }
# $1 peer, $2 extra JSON fields, $3 message, $4 label for the console
emit_error() { emit "{\"peer\":\"$1\"$2,\"error\":\"$(json_escape "$3")\"}"; echo "  $1$4: ERROR: $3" >&2; }

# Runs one bench program; on success prints its JSON line, on failure an error line.
# $1 peer, $2 extra JSON fields for an error line, $3 label, rest: the command.
run_one() {
  local peer="$1" fields="$2" label="$3"
  shift 3
  local line status=0
  line="$("$@" 2>"$work_dir/stderr")" || status=$?
  if ((status != 0)) || [[ "$line" != \{*\} ]]; then
    local reason
    reason="$(grep -v '^[[:space:]]*$' "$work_dir/stderr" | tail -n 3 | tr '\n' ' ')"
    emit_error "$peer" "$fields" "exit $status: ${reason:-no message}" "$label"
    return 1
  fi
  printf '%s' "$line"
}

probe() {  # $1 before|after, $2 row label
  local line
  if line="$(run_one floor ",\"mode\":\"probe\"" " probe $1 $2" \
    "$bin_dir/bench-floor" --probe "$probe_rounds" "${pin_flags[@]}")"; then
    emit "${line%\}},\"probe_for\":\"$2\",\"when\":\"$1\"}"
    [[ "$line" =~ \"p50_ns\":([0-9]+) ]] && probe_p50="${BASH_REMATCH[1]}"
  else
    probe_p50="?"
  fi
}

row() {  # $1 peer, $2 mode, $3 size
  local peer="$1" mode="$2" size="$3" count line
  if [[ "$mode" == rtt ]]; then count="$(rtt_count "$size" "$peer")"; else count="$(stream_count "$size")"; fi
  local label="$peer $mode $size"
  probe before "$label"
  local before="$probe_p50"
  if line="$(run_one "$peer" ",\"mode\":\"$mode\",\"size\":$size" " $mode $size" \
    "$(program_for "$peer")" --mode "$mode" --size "$size" --count "$count" \
    --warmup "$(warmup_for "$count")" "${pin_flags[@]}")"; then
    emit "$line"
    local figure=""
    [[ "$line" =~ \"p50_ns\":([0-9]+) ]] && figure="p50 ${BASH_REMATCH[1]} ns"
    [[ "$line" =~ \"p99_ns\":([0-9]+) ]] && figure+=", p99 ${BASH_REMATCH[1]} ns"
    [[ "$line" =~ \"msgs_per_s\":([0-9.e+]+) ]] && figure="${BASH_REMATCH[1]} msg/s"
    probe after "$label"
    printf '  %-10s %-6s %8s B: %-32s probes %s / %s ns\n' "$peer" "$mode" "$size" "$figure" "$before" "$probe_p50"
  else
    probe after "$label"
  fi
}

# RouDi for bench-iceoryx only, so its threads do not disturb the other peers. Runs in this
# shell (not a $(...) subshell) so that roudi_pid is known to stop_roudi; on failure sets
# roudi_error.
start_roudi() {
  roudi_error=""
  if ! command -v iox-roudi >/dev/null; then
    roudi_error="iox-roudi not found in PATH (Debian package iceoryx)"
    return 1
  fi
  iox-roudi -c "$bench_dir/roudi_config.toml" -l warning >"$work_dir/roudi.log" 2>&1 &
  roudi_pid=$!
  for _ in $(seq 100); do
    if grep -q "RouDi is ready for clients" "$work_dir/roudi.log"; then
      roudi_ran=true
      return 0
    fi
    if ! kill -0 "$roudi_pid" 2>/dev/null; then
      wait "$roudi_pid" 2>/dev/null || true
      roudi_pid=""
      roudi_error="iox-roudi exited at start (another RouDi running?): $(tail -n 2 "$work_dir/roudi.log" | tr '\n' ' ')"
      return 1
    fi
    sleep 0.1
  done
  roudi_error="iox-roudi not ready after 10 s"
  stop_roudi
  return 1
}

# The program of a peer: bench-PEER in the bin dir or one level below (bench/shmbus/ builds
# shmbus itself into the same harness, e.g. --peers "shmbus floor uds").
program_for() {
  local candidate
  for candidate in "$bin_dir/bench-$1" "$bin_dir"/*/"bench-$1"; do
    if [[ -x "$candidate" ]]; then
      printf '%s' "$candidate"
      return 0
    fi
  done
  return 1
}

not_built_reason() {  # $1 peer: prints why it was not built, or nothing if it was
  program_for "$1" >/dev/null && return 0
  local reason=""
  [[ -f "$bin_dir/not_built.txt" ]] && reason="$(awk -F'\t' -v p="$1" '$1 == p { print $2 }' "$bin_dir/not_built.txt")"
  echo "${reason:-no bench-$1 in $bin_dir}"
}

started=$(date +%s)
[[ -f "$output" ]] || : >"$output"
first_line=$(($(wc -l <"$output") + 1))
emit "{\"peer\":\"run_peers\",\"started\":\"$(date -u +%FT%TZ)\",\"quick\":$quick,\"cpu_a\":\"$cpu_a\",\"cpu_b\":\"$cpu_b\",\"kernel\":\"$(uname -r)\"}"
echo "run_peers.sh: $($quick && echo quick || echo full) run, programs in $bin_dir, output $output"

for peer in "${peers[@]}"; do
  reason="$(not_built_reason "$peer")"
  if [[ -n "$reason" ]]; then
    emit_error "$peer" "" "not built: $reason" ""
    continue
  fi
  if [[ "$peer" == iceoryx ]]; then
    if ! start_roudi; then
      emit_error iceoryx "" "$roudi_error" ""
      continue
    fi
  fi
  if [[ "$peer" == floor || "$peer" == futex-floor ]]; then
    row "$peer" rtt 8  # the floors move 8 bytes whatever the size, and have no stream mode
    continue
  fi
  for mode in rtt stream; do
    for size in "${sizes[@]}"; do row "$peer" "$mode" "$size"; done
  done
  if [[ "$peer" == iceoryx ]]; then stop_roudi; fi
done

# Every program removes its own names, and RouDi its own on SIGINT: anything left means a
# crash or a bug worth seeing. Names carry the creating pid; those of dead processes are removed.
if $roudi_ran; then
  for name in /dev/shm/iceoryx_mgmt "/dev/shm/$(id -un)" /tmp/roudi /tmp/roudi.lock /tmp/iox-unique-roudi.lock; do
    if ! grep -qxF "$name" <<<"$iceoryx_names_before"; then iceoryx_names+=("$name"); fi
  done
fi
for name in /dev/shm/shmbus-bench-* /tmp/shmbus-bench-*.ipc /tmp/shmbus-bench-[0-9]*-[ab] "${iceoryx_names[@]}"; do
  [[ -e "$name" ]] || continue
  emit_error run_peers "" "left behind: $name" ""
  if [[ "$name" =~ shmbus-bench-[a-z-]*([0-9]+) ]] && ! kill -0 "${BASH_REMATCH[1]}" 2>/dev/null; then
    rm -f "$name"
  fi
done

elapsed=$(($(date +%s) - started))
emit "{\"peer\":\"run_peers\",\"finished\":\"$(date -u +%FT%TZ)\",\"elapsed_s\":$elapsed}"
# A peer that is not built is reported, not failed; anything else that went wrong fails the
# run, so that CI can use --quick as a smoke test.
failures="$(tail -n +"$first_line" "$output" | grep '"error":' | grep -vc '"error":"not built' || true)"
echo "run_peers.sh: done in ${elapsed} s, ${failures} failed"
((failures == 0))

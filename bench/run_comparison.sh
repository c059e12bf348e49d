#!/usr/bin/env bash
# The whole comparison in one command: builds the bench programs, runs every peer and the shmbus
# variants over all sizes (run_peers.sh), the fan-out (bench-shmbus-fanout, 1 -> 1/2/4/8 blocking
# subscribers, lossless and lossy), the syscall check (syscall_check.sh) and the ring
# micro-benchmarks (bench-micro-ring), then writes BENCHMARKS.md with tables, ratios to the floor
# and to iceoryx, the target check, lscpu, date and load, and gnuplot PNGs.
#
# usage: bench/run_comparison.sh [--quick] [--build-dir DIR] [--no-build] [--cpu-a N --cpu-b N] [OUT_DIR]
#   OUT_DIR    where BENCHMARKS.md goes (default: the repository root). PNGs go to
#              <repo>/bench/results/ (or OUT_DIR/results/ when OUT_DIR is given), raw JSON lines to
#              the raw/ directory beside them.
#   --quick    a smoke test for CI (< 60 s): few sizes, tiny counts. Its figures mean nothing.
#   --build-dir  CMake build directory (default: $BENCH_BUILD_DIR, else <repo>/build-bench, configured
#              with tests and examples off so that only the core and bench/ must compile)
#   --no-build   use the programs already built in the build directory
# Needs: cmake + the core's dependencies, python3 (report), gnuplot (plots: gnuplot-nox), strace;
# iceoryx (iox-roudi) for its rows. scripts/setup-deps.sh --bench installs them.
# Exits non-zero if any program failed (a peer that is not built is reported, not failed).
set -euo pipefail

bench_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$bench_dir/.." && pwd)"
quick=false
build=true
build_dir="${BENCH_BUILD_DIR:-$repo/build-bench}"
cpu_a=0
cpu_b=1
out_dir=""
die() { echo "run_comparison.sh: $*" >&2; exit 2; }
while (($#)); do
  case "$1" in
    --quick) quick=true ;;
    --build-dir) build_dir="${2:?--build-dir needs a directory}"; shift ;;
    --no-build) build=false ;;
    --cpu-a) cpu_a="${2:?}"; shift ;;
    --cpu-b) cpu_b="${2:?}"; shift ;;
    -h | --help) sed -n '2,19p' "$0"; exit 0 ;;
    -*) die "unknown flag $1" ;;
    *) [[ -z "$out_dir" ]] || die "only one OUT_DIR"; out_dir="$1" ;;
  esac
  shift
done
if [[ -z "$out_dir" ]]; then
  out_dir="$repo"
  results_dir="$repo/bench/results"
else
  mkdir -p "$out_dir"
  out_dir="$(cd "$out_dir" && pwd)"
  results_dir="$out_dir/results"
fi
command -v python3 >/dev/null || die "python3 not found (it writes the report)"
command -v gnuplot >/dev/null || die "gnuplot not found (Debian: gnuplot-nox; scripts/setup-deps.sh --bench)"
command -v strace >/dev/null || die "strace not found (scripts/setup-deps.sh --bench)"
if (($(nproc) < 2)); then
  echo "run_comparison.sh: fewer than 2 CPUs: not pinning" >&2
  cpu_a=""
  cpu_b=""
fi
pin_flags=()
[[ -z "$cpu_a" ]] || pin_flags=(--cpu-a "$cpu_a" --cpu-b "$cpu_b")

started=$(date +%s)
load_before="$(cut -d' ' -f1-3 /proc/loadavg)"
echo "run_comparison.sh: $($quick && echo quick || echo full) run; load average $load_before on $(nproc) CPUs"

if $build; then
  echo "run_comparison.sh: building in $build_dir"
  cmake -S "$repo" -B "$build_dir" -DSHMBUS_BUILD_TESTS=OFF -DSHMBUS_BUILD_EXAMPLES=OFF >"$build_dir.cmake.log" 2>&1 ||
    { tail -n 20 "$build_dir.cmake.log" >&2; die "cmake configure failed (log: $build_dir.cmake.log)"; }
  # Only what the comparison runs (the bench programs and shmbusd), so that work in progress
  # elsewhere in the tree cannot break the run. Peers whose dependency is missing have no target.
  targets=()
  available="$(cmake --build "$build_dir" --target help 2>/dev/null)"
  for t in shmbusd bench-floor bench-futex-floor bench-stream-floor bench-stream-floor-slotted bench-naive-ring bench-uds bench-zmq \
    bench-boost-mq bench-iceoryx bench-shmbus bench-shmbus-unstamped bench-shmbus-copy bench-shmbus-blocking bench-shmbus-event-source \
    bench-shmbus-batch bench-shmbus-drain bench-shmbus-fanout bench-micro-ring; do
    grep -qE "^\.\.\. $t( |\$)" <<<"$available" && targets+=(--target "$t")
  done
  cmake --build "$build_dir" -j"$(nproc)" "${targets[@]}" >"$build_dir.build.log" 2>&1 ||
    { grep -E 'error|Error' "$build_dir.build.log" | head -n 20 >&2; die "build failed (log: $build_dir.build.log)"; }
  rm -f "$build_dir.cmake.log" "$build_dir.build.log"
fi
bin_dir="$build_dir/bench"
[[ -x "$bin_dir/bench-floor" ]] || die "no bench programs in $bin_dir"

raw="$results_dir/raw"
rm -rf "$raw"
mkdir -p "$raw/cdf"
rm -f "$results_dir"/*.png
failed=()

# 1. Every peer and the three shmbus variants, rtt and stream, all sizes, probes beside each row.
echo "run_comparison.sh: [1/4] (+$(($(date +%s) - started)) s) peers (run_peers.sh)"
peer_args=(--bin-dir "$bin_dir" --peers "floor futex-floor stream-floor stream-floor-slotted shmbus shmbus-unstamped shmbus-copy shmbus-blocking shmbus-event-source shmbus-batch shmbus-drain naive-ring iceoryx uds boost-mq zmq")
$quick && peer_args+=(--quick --sizes "64 4096")
[[ -n "$cpu_a" ]] && peer_args+=(--cpu-a "$cpu_a" --cpu-b "$cpu_b") || peer_args+=(--no-pin)
BENCH_CDF_DIR="$raw/cdf" "$bench_dir/run_peers.sh" "${peer_args[@]}" "$raw/peers.jsonl" || failed+=("run_peers.sh")

# 1b. The 64 B rows the targets compare, again, in alternating rounds: the hypervisor moves the vCPUs between
# near and far cores from minute to minute, so one row each compares two placements as often as two
# transports. The report checks the 64 B targets on the median of the rounds whose probes agree.
rounds=5
$quick && rounds=1
echo "run_comparison.sh: [1b/4] (+$(($(date +%s) - started)) s) 64 B target rows, $rounds alternating rounds"
round_peers="floor naive-ring stream-floor stream-floor-slotted shmbus shmbus-unstamped shmbus-drain shmbus-batch"
round_peers+=" shmbus-blocking shmbus-event-source uds futex-floor"  # the blocking wake-up target and its floor
round_args=(--bin-dir "$bin_dir" --peers "$round_peers" --sizes 64)
$quick && round_args+=(--quick)
[[ -n "$cpu_a" ]] && round_args+=(--cpu-a "$cpu_a" --cpu-b "$cpu_b") || round_args+=(--no-pin)
for ((r = 1; r <= rounds; r++)); do
  "$bench_dir/run_peers.sh" "${round_args[@]}" "$raw/rounds.jsonl" >/dev/null || failed+=("run_peers.sh round $r")
done

# 2. Fan-out: publish-call cost and delivery latency, 1 -> N blocking subscribers.
echo "run_comparison.sh: [2/4] (+$(($(date +%s) - started)) s) fan-out (bench-shmbus-fanout)"
fanout="$bin_dir/shmbus/bench-shmbus-fanout"
if $quick; then fan_subs=(1 8); fan_count=300; fan_warmup=50; else fan_subs=(1 2 4 8); fan_count=10000; fan_warmup=500; fi
: >"$raw/fanout.jsonl"
for policy in lossless lossy; do
  for n in "${fan_subs[@]}"; do
    if line="$("$fanout" --subscribers "$n" --policy "$policy" --size 64 --count "$fan_count" --warmup "$fan_warmup" \
      --gap-us 200 "${pin_flags[@]}" 2>"$raw/fanout.err")"; then
      echo "$line" >>"$raw/fanout.jsonl"
      [[ "$line" =~ \"publish_p50_ns\":([0-9]+) ]] && pub="${BASH_REMATCH[1]}"
      [[ "$line" =~ \"delivery_p50_ns\":([0-9]+) ]] && del="${BASH_REMATCH[1]}"
      printf '  fan-out %-8s %d subs: publish p50 %s ns, delivery p50 %s ns\n' "$policy" "$n" "$pub" "$del"
    else
      reason="$(tail -n 2 "$raw/fanout.err" | tr '\n' ' ' | tr '"' "'")"
      echo "{\"peer\":\"shmbus-fanout\",\"policy\":\"$policy\",\"subscribers\":$n,\"error\":\"$reason\"}" >>"$raw/fanout.jsonl"
      echo "  fan-out $policy $n subs: ERROR: $reason" >&2
      failed+=("bench-shmbus-fanout $policy $n")
    fi
  done
done
rm -f "$raw/fanout.err"

# 3. Syscalls per message.
echo "run_comparison.sh: [3/4] (+$(($(date +%s) - started)) s) syscall check (syscall_check.sh)"
sc_args=(--bin-dir "$bin_dir")
$quick && sc_args+=(--quick)
[[ -n "$cpu_a" ]] && sc_args+=(--cpu-a "$cpu_a" --cpu-b "$cpu_b") || sc_args+=(--no-pin)
"$bench_dir/syscall_check.sh" "${sc_args[@]}" "$raw/syscalls.jsonl" || failed+=("syscall_check.sh")

# 4. Ring micro-benchmarks.
echo "run_comparison.sh: [4/4] (+$(($(date +%s) - started)) s) micro-benchmarks (bench-micro-ring)"
micro="$bin_dir/micro/bench-micro-ring"
if [[ -x "$micro" ]]; then
  min_time=0.3
  $quick && min_time=0.01
  pin=()
  [[ -n "$cpu_a" ]] && pin=(taskset -c "$cpu_a")
  "${pin[@]}" "$micro" --benchmark_min_time="$min_time" --benchmark_format=console \
    --benchmark_out="$raw/micro.json" --benchmark_out_format=json || failed+=("bench-micro-ring")
else
  echo "run_comparison.sh: bench-micro-ring not built: $(grep micro "$bin_dir/not_built.txt" || true)" >&2
  failed+=("bench-micro-ring (not built)")
fi

# Leftovers: every program removes its own names.
for name in /dev/shm/shmbus-bench-* /dev/shm/shmbus.bench[0-9]* /tmp/shmbus-bench[0-9]*; do
  [[ -e "$name" ]] || continue
  # Names carry the pid of the bench that made them: one still running is someone else's run.
  [[ "$name" =~ bench([0-9]+) ]] && kill -0 "${BASH_REMATCH[1]}" 2>/dev/null && continue
  echo "run_comparison.sh: left behind: $name" >&2
  failed+=("left behind: $name")
done

# Report.
elapsed=$(($(date +%s) - started))
git_dirty="$(git -C "$repo" status --porcelain 2>/dev/null | awk '{print $2}' | tr '\n' ' ' || true)"
python3 - "$raw/env.json" <<EOF
import json, sys, subprocess, platform
def run(*cmd):
    try:
        return subprocess.run(cmd, capture_output=True, text=True).stdout.strip()
    except OSError:
        return ""
keep = ("Architecture", "CPU(s)", "On-line CPU(s) list", "Model name", "Thread(s) per core", "Core(s) per socket",
        "Socket(s)", "CPU max MHz", "BogoMIPS", "Hypervisor vendor", "Virtualization type", "L1d cache", "L2 cache",
        "L3 cache", "NUMA node(s)")
lscpu = "\n".join(l for l in run("lscpu").splitlines() if l.split(":")[0].strip() in keep)
osr = dict(l.split("=", 1) for l in open("/etc/os-release").read().splitlines() if "=" in l)
json.dump({
    "command": "bench/run_comparison.sh" + (" --quick" if "$quick" == "true" else ""),
    "quick": "$quick" == "true",
    "date": run("date", "-u", "+%Y-%m-%d %H:%M:%S UTC"),
    "elapsed_s": $elapsed,
    "lscpu": lscpu,
    "kernel": platform.release(),
    "os": osr.get("PRETTY_NAME", "?").strip('"'),
    "compiler": run("c++", "--version").splitlines()[0] if run("c++", "--version") else "?",
    "build_type": run("sh", "-c", "grep '^CMAKE_BUILD_TYPE:' '$build_dir/CMakeCache.txt' | cut -d= -f2") or "?",
    "load_before": "$load_before",
    "load_after": open("/proc/loadavg").read().split()[:3] and " ".join(open("/proc/loadavg").read().split()[:3]),
    "nproc": $(nproc),
    "cpu_a": "$cpu_a", "cpu_b": "$cpu_b",
    "git_rev": run("git", "-C", "$repo", "rev-parse", "--short", "HEAD"),
    "git_dirty": "$git_dirty".strip(),
}, open(sys.argv[1], "w"), indent=1)
EOF
python3 "$bench_dir/report/make_report.py" "$raw" "$results_dir" "$out_dir/BENCHMARKS.md" || failed+=("make_report.py")

echo "run_comparison.sh: wrote $out_dir/BENCHMARKS.md and $results_dir/*.png in $(($(date +%s) - started)) s"
if ((${#failed[@]})); then
  printf 'run_comparison.sh: FAILED: %s\n' "${failed[@]}" >&2
  exit 1
fi

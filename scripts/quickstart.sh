#!/usr/bin/env bash
# Installs what is missing, builds, starts shmbusd (embedded defaults, no config file), runs the example
# publisher and subscriber against it (1 000 000 messages, lossless), prints what flowed, stops everything.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup-deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j"$(nproc)" --target shmbusd shmbus example_publisher example_subscriber >/dev/null

export SHMBUS_INSTANCE="quickstart-$$"
export SHMBUS_RUNTIME_DIR="${TMPDIR:-/tmp}/shmbus-quickstart-$$"
daemon_pid=""
cleanup() {
  if [[ -n "$daemon_pid" ]] && kill -0 "$daemon_pid" 2>/dev/null; then
    kill -TERM "$daemon_pid"
    wait "$daemon_pid" || true
  fi
  rm -rf "$SHMBUS_RUNTIME_DIR"
}
trap cleanup EXIT

build/daemon/shmbusd --log-level warn &
daemon_pid=$!
for _ in $(seq 200); do build/tools/shmbus list >/dev/null 2>&1 && break; sleep 0.05; done
build/tools/shmbus list >/dev/null || { echo "quickstart: shmbusd did not come up" >&2; exit 1; }

count=1000000
build/examples/example_subscriber "$count" &
sub_pid=$!
build/examples/example_publisher "$count"
wait "$sub_pid"
kill -TERM "$daemon_pid" && wait "$daemon_pid"
daemon_pid=""
leftovers=$(ls /dev/shm | grep -c "^shmbus\.$SHMBUS_INSTANCE\." || true)
echo "daemon stopped; shared-memory segments left behind: $leftovers"
[[ "$leftovers" == 0 ]]

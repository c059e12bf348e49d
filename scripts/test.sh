#!/usr/bin/env bash
# Installs what is missing, builds, and runs the whole test suite (ctest). Run as root on Debian 12.
#   scripts/test.sh            build in build/ and run every test
#   SHMBUS_SANITIZE=address,undefined scripts/test.sh   the same under sanitizers (build-address,undefined/)
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup-deps.sh
sanitize="${SHMBUS_SANITIZE:-}"
build="build${sanitize:+-$sanitize}"
cmake -S . -B "$build" -DSHMBUS_SANITIZE="$sanitize" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$build" -j"$(nproc)"
cd "$build"
ctest --output-on-failure -j"$(nproc)" ${SHMBUS_CTEST_ARGS:-}

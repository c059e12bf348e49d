#!/usr/bin/env bash
# Lint: clang-tidy (checks in .clang-tidy) over the project's own sources, and clang-format (.clang-format)
# over every tracked C++ file. Fails on any finding. Run as root on Debian 12 (installs what is missing).
#   scripts/tidy.sh
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup-deps.sh --lint
build=build-tidy
cmake -S . -B "$build" -DCMAKE_EXPORT_COMPILE_COMMANDS=ON -DCMAKE_BUILD_TYPE=Debug >/dev/null
log=$(mktemp)
trap 'rm -f "$log"' EXIT
status=0
git ls-files '*.cpp' | grep -E '^(shm|bus|daemon|bridge|tools|examples)/' |
  xargs -P"$(nproc)" -n4 clang-tidy -p "$build" --quiet >"$log" 2>&1 || status=$?
grep -v -E '^[0-9]+ warnings? generated\.$' "$log" || true
if ((status != 0)); then
  echo "tidy: clang-tidy found problems (above)" >&2
  exit 1
fi
echo "tidy: clang-tidy clean"
git ls-files '*.cpp' '*.h' | xargs clang-format --dry-run --Werror
echo "tidy: clang-format clean"

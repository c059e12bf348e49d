#!/usr/bin/env bash
# Installs the Debian 12 packages shmbus needs to build and test. Idempotent; run as root.
# Usage: scripts/setup-deps.sh [--bench] [--lint]   (--bench: the peers and plotting tools too; --lint:
# clang-tidy and clang-format)
set -euo pipefail

packages=(
  build-essential cmake pkg-config
  libboost-dev                  # Boost.Interprocess (segments)
  libzmq3-dev cppzmq-dev        # ZeroMQ bridge
  libspdlog-dev                 # logging
  libtomlplusplus-dev           # config files
  libcli11-dev                  # command lines
  libgtest-dev libbenchmark-dev # tests, micro-benchmarks
  clang                         # sanitizers
)
for arg in "$@"; do
  case "$arg" in
    --bench) packages+=(iceoryx libiceoryx-posh-dev libiceoryx-hoofs-dev gnuplot-nox strace python3) ;;
    --lint) packages+=(clang-tidy clang-format) ;;
    *) echo "setup-deps: unknown option $arg" >&2; exit 2 ;;
  esac
done

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]} == 0)); then
  exit 0
fi
if [[ $(id -u) -ne 0 ]]; then
  echo "setup-deps: missing packages (${missing[*]}); run as root" >&2
  exit 1
fi
echo "setup-deps: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null

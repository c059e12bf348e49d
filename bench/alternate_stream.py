#!/usr/bin/env python3
"""Alternating stream runs of several bench programs, for A/B comparisons on a machine whose vCPU placement
changes from minute to minute: each round runs every program once, in turn, so that they share placements.

usage: bench/alternate_stream.py ROUNDS [--size BYTES] [--count N] PROGRAM...
  e.g. (cd build-bench/bench && ../../bench/alternate_stream.py 5 ./bench-naive-ring shmbus/bench-shmbus-batch)
Prints each round's msg/s with the ping-pong probes, then per program the median rate and the median of its
per-round ratios to the first program.
"""
import json
import statistics
import subprocess
import sys


def main():
    args = sys.argv[1:]
    if not args or not args[0].isdigit():
        sys.exit(__doc__)
    rounds, size, count = int(args.pop(0)), 64, 3000000
    while args and args[0] in ("--size", "--count"):
        if args[0] == "--size":
            size = int(args[1])
        else:
            count = int(args[1])
        args = args[2:]
    if not args:
        sys.exit(__doc__)
    rates = {p: [] for p in args}
    for r in range(rounds):
        row = []
        for p in args:
            out = subprocess.run([p, "--mode", "stream", "--size", str(size), "--count", str(count), "--cpu-a",
                                  "0", "--cpu-b", "1"], capture_output=True, text=True, check=True).stdout
            j = [json.loads(line) for line in out.splitlines() if line.startswith("{")][-1]
            rates[p].append(j["msgs_per_s"])
            row.append("%s %.1fM (probes %d/%d ns)" % (p, j["msgs_per_s"] / 1e6, j["probe_before_p50_ns"],
                                                       j["probe_after_p50_ns"]))
        print("round %d: %s" % (r, " | ".join(row)), flush=True)
    for p in args:
        ratio = statistics.median(a / b for a, b in zip(rates[p], rates[args[0]]))
        print("%s: median %.1fM msg/s, %.2fx %s" % (p, statistics.median(rates[p]) / 1e6, ratio, args[0]))


if __name__ == "__main__":
    main()

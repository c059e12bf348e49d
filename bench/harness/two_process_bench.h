#pragma once
// The whole life of a bench program: fork into side A (parent, measuring) and side B (child,
// echoing or receiving), pin each, probe the floor, measure one row, probe again, and print
// one JSON line. Each peer program is only its transport plus a one-line main.
//
// A Peer type provides:
//   static constexpr const char* kName;          // "uds": JSON "peer" and program bench-uds
//   static constexpr bool kSupportsStream;
//   static constexpr uint64_t kFixedMessageSize;  // optional: bytes it moves whatever --size says
//   static constexpr bool kCopiesPayload;         // optional, default true; false for zero copy
//   explicit Peer(const BenchOptions&);          // parent, before fork: what both sides share,
//                                                // names registered with register_cleanup_path
//   Transport open(Side);                        // each process, after fork and pinning

#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <new>
#include <optional>
#include <string>
#include <system_error>
#include <vector>

#include "cache_line_channel.h"
#include "child_watch.h"
#include "cleanup_registry.h"
#include "json_line.h"
#include "latency_stats.h"
#include "message_loops.h"
#include "options.h"
#include "pinning.h"
#include "rendezvous.h"
#include "shared_region.h"

namespace bench {

struct RowResult {
  std::vector<uint64_t> round_trips_ns;  // rtt and probe mode, side A
  uint64_t stream_elapsed_ns = 0;        // stream mode, measured by B, read by A
  std::vector<uint64_t> probe_before_ns;
  std::vector<uint64_t> probe_after_ns;
};

// A short cache-line ping-pong between the very processes of the row (README trap 1): the
// hypervisor moves vCPUs between near and far cores, so a row is only comparable with
// another through its ratio to the probe taken right beside it.
inline std::vector<uint64_t> probe_floor(PingPongLines& lines, Side side, uint64_t rounds) {
  if (rounds == 0) return {};
  const uint64_t warmup = rounds / 4;
  if (side == Side::a) {
    CacheLineChannel channel(lines.to_b, lines.to_a);
    return measure_round_trips(channel, warmup, rounds);
  }
  CacheLineChannel channel(lines.to_a, lines.to_b);
  echo_round_trips(channel, warmup, rounds);
  return {};
}

template <class Peer>
RowResult run_side(Peer& peer, ControlBlock& control, const BenchOptions& options, Side side) {
  pin_to_cpu(side == Side::a ? options.cpu_a : options.cpu_b);
  auto transport = peer.open(side);
  RowResult result;
  rendezvous(control, side);  // both transports connected
  result.probe_before_ns = probe_floor(control.probe_before, side, options.probe_rounds);
  rendezvous(control, side);
  if (options.mode == Mode::stream) {
    if (side == Side::a) {
      send_stream(transport, options.warmup + options.count);
    } else {
      const uint64_t elapsed = receive_stream(transport, options.warmup, options.count);
      // Relaxed: the release store in the rendezvous below publishes it to A's acquire there.
      control.stream_elapsed_ns.value.store(elapsed, std::memory_order_relaxed);
    }
  } else if (side == Side::a) {
    result.round_trips_ns = measure_round_trips(transport, options.warmup, options.count);
  } else {
    echo_round_trips(transport, options.warmup, options.count);
  }
  rendezvous(control, side);  // B has every message: A may now close its end
  if (side == Side::a)
    result.stream_elapsed_ns = control.stream_elapsed_ns.value.load(std::memory_order_relaxed);
  result.probe_after_ns = probe_floor(control.probe_after, side, options.probe_rounds);
  rendezvous(control, side);
  return result;
}

inline void print_row(const char* peer, bool copies_payload, const BenchOptions& options,
                      const RowResult& row) {
  JsonLine line;
  line.add("peer", peer)
      .add("mode", mode_name(options.mode))
      .add("size", options.size)
      .add("count", options.count);
  if (options.mode == Mode::stream) {
    const double seconds = static_cast<double>(std::max<uint64_t>(row.stream_elapsed_ns, 1)) / 1e9;
    const double messages_per_s = static_cast<double>(options.count) / seconds;
    line.add("msgs_per_s", messages_per_s)
        .add("gb_per_s", messages_per_s * static_cast<double>(options.size) / 1e9)
        .add("elapsed_ns", row.stream_elapsed_ns);
  } else {
    const LatencyStats stats = summarize_latencies(row.round_trips_ns);
    line.add("p50_ns", stats.p50_ns)
        .add("p90_ns", stats.p90_ns)
        .add("p99_ns", stats.p99_ns)
        .add("p999_ns", stats.p999_ns)
        .add("max_ns", stats.max_ns);
  }
  if (!row.probe_before_ns.empty()) {
    line.add("probe_before_p50_ns", summarize_latencies(row.probe_before_ns).p50_ns)
        .add("probe_after_p50_ns", summarize_latencies(row.probe_after_ns).p50_ns);
  }
  if (!copies_payload) line.add("copies_payload", false);
  if (options.cpu_a >= 0) line.add("cpu_a", static_cast<uint64_t>(options.cpu_a));
  if (options.cpu_b >= 0) line.add("cpu_b", static_cast<uint64_t>(options.cpu_b));
  line.print();
}

// Zero-copy peers only pass a reference to the payload; their gb_per_s is what a reader
// could have read, not bytes moved, and the JSON line says so.
template <class Peer>
constexpr bool copies_payload() {
  if constexpr (requires { Peer::kCopiesPayload; }) return Peer::kCopiesPayload;
  return true;
}

// When $BENCH_CDF_DIR is set, an rtt row also writes its latency distribution to
// $BENCH_CDF_DIR/<peer>-rtt-<size>.cdf: 1000 lines "latency_ns fraction" (nearest-rank quantiles
// 0.001..1), for the CDF plot of the report (bench/run_comparison.sh). A write failure only warns.
inline void write_cdf(const char* peer, const BenchOptions& options, const RowResult& row) {
  const char* dir = std::getenv("BENCH_CDF_DIR");
  if (dir == nullptr || *dir == '\0' || options.mode != Mode::round_trip || row.round_trips_ns.empty())
    return;
  std::vector<uint64_t> sorted = row.round_trips_ns;
  std::sort(sorted.begin(), sorted.end());
  const std::string path = std::string(dir) + "/" + peer + "-rtt-" + std::to_string(options.size) + ".cdf";
  std::FILE* f = std::fopen(path.c_str(), "w");
  if (f == nullptr) {
    std::fprintf(stderr, "%s: warning: cannot write %s\n", g_program_name, path.c_str());
    return;
  }
  for (unsigned per_mille = 1; per_mille <= 1000; ++per_mille)
    std::fprintf(f, "%llu %.3f\n", static_cast<unsigned long long>(nearest_rank(sorted, per_mille)),
                 per_mille / 1000.0);
  std::fclose(f);
}

template <class Peer>
int run_pair(const BenchOptions& options) {
  SharedRegion control_region(sizeof(ControlBlock));
  ControlBlock& control = *new (control_region.data()) ControlBlock;
  Peer peer(options);
  std::fflush(nullptr);  // or buffered output would be written twice, once by each process
  const pid_t parent = getpid();
  const pid_t child = fork();
  if (child < 0) throw std::system_error(errno, std::generic_category(), "fork");
  if (child == 0) {
    follow_parent(parent);
    int exit_code = 0;
    try {
      run_side(peer, control, options, Side::b);
    } catch (const std::exception& error) {
      std::fprintf(stderr, "%s (side B): error: %s\n", g_program_name, error.what());
      exit_code = 1;
    }
    // exit, not _exit: static destructors must run (the iceoryx runtime deregisters from
    // RouDi in one). `peer` is deliberately not destroyed here: its names belong to A.
    std::exit(exit_code);
  }
  watch_child(child, options.timeout_s);
  RowResult row;
  try {
    row = run_side(peer, control, options, Side::a);
  } catch (...) {
    stop_watching_child();
    kill(child, SIGKILL);
    waitpid(child, nullptr, 0);
    throw;
  }
  int status = 0;
  while (waitpid(child, &status, 0) < 0 && errno == EINTR) {
  }
  stop_watching_child();
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) throw std::runtime_error("side B failed");
  print_row(Peer::kName, copies_payload<Peer>(), options, row);
  write_cdf(Peer::kName, options, row);
  return 0;
}

template <class Peer>
int run_two_process_bench(int argc, char** argv) {
  static const std::string program = std::string("bench-") + Peer::kName;
  g_program_name = program.c_str();
  BenchOptions options;
  try {
    options = parse_options(argc, argv, program);
  } catch (const std::invalid_argument& error) {
    std::fprintf(stderr, "%s: %s\n", program.c_str(), error.what());
    return 2;
  }
  if (options.mode == Mode::stream && !Peer::kSupportsStream) {
    std::fprintf(stderr, "%s: --mode stream does not apply to this peer (round trips only)\n",
                 program.c_str());
    return 2;
  }
  if constexpr (requires { Peer::kFixedMessageSize; }) options.size = Peer::kFixedMessageSize;
  if (options.mode == Mode::stream) options.warmup = std::max<uint64_t>(options.warmup, 1);
  int exit_code = 1;
  try {
    exit_code = run_pair<Peer>(options);
  } catch (const std::exception& error) {
    std::fprintf(stderr, "%s: error: %s\n", program.c_str(), error.what());
  }
  unlink_registered_paths();
  return exit_code;
}

}  // namespace bench

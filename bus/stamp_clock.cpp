#include "bus/stamp_clock.h"

#include <chrono>
#include <fstream>
#include <string>

#if defined(__x86_64__)
#include <x86intrin.h>
#endif

namespace shmbus::detail {
namespace {

uint64_t steady_ns() {
  return static_cast<uint64_t>(std::chrono::steady_clock::now().time_since_epoch().count());
}

#if defined(__x86_64__)
// The TSC can carry a clock between anchors: the kernel's clocksource is the TSC (it found it invariant and
// synchronised across CPUs), or the CPU declares it invariant (constant_tsc: a fixed rate; nonstop_tsc: it
// runs in idle states) while the kernel was told to use another clocksource. A VM booted with
// `clocksource=kvm-clock tsc=unstable`, as the 2-vCPU bench machine is, reads its clock for 30 ns (rdtsc:
// 12 ns). The anchoring below bounds what a skew between CPUs' TSCs could do: a thread that moves to a CPU
// whose TSC is behind re-anchors at once; on one whose TSC is ahead its stamps run ahead by that skew, for at
// most a millisecond. A thread's stamps never decrease.
bool tsc_usable() {
  static const bool usable = [] {
    std::ifstream source("/sys/devices/system/clocksource/clocksource0/current_clocksource");
    std::string name;
    if (source >> name && name == "tsc") return true;
    std::ifstream cpuinfo("/proc/cpuinfo");
    for (std::string line; std::getline(cpuinfo, line);) {
      if (line.rfind("flags", 0) != 0) continue;
      const std::string flags = line + " ";  // each flag is followed by a space
      return flags.find(" constant_tsc ") != std::string::npos &&
             flags.find(" nonstop_tsc ") != std::string::npos;
    }
    return false;
  }();
  return usable;
}

constexpr uint64_t kAnchorEveryNs = 1'000'000;  // bounds the extrapolation error (rate error x 1 ms)
constexpr uint64_t kMinRateSpanNs = 500'000;    // anchors closer than this give too rough a rate
constexpr uint64_t kMaxPairTicks = 1'000;  // a clock read takes ~60 ticks; more: the pair was interrupted

struct ThreadStampClock {
  uint64_t anchor_tsc = 0;
  uint64_t anchor_ns = 0;
  uint64_t anchor_span_ticks = 0;  // ticks until the next anchor; 0 until the rate is known
  double ns_per_tick = 0;
  uint64_t last = 0;

  uint64_t anchor() {
    // The clock read sits between two TSC reads: pair it with their midpoint.
    const uint64_t before = __rdtsc();
    const uint64_t ns = steady_ns();
    const uint64_t after = __rdtsc();
    // Preempted between the reads (or a TSC that jumped): the pair says nothing precise. Return the clock
    // and leave the anchor for the next stamp.
    if (after - before > kMaxPairTicks) return ns;
    const uint64_t tsc = before + (after - before) / 2;
    if (anchor_ns != 0 && ns >= anchor_ns + kMinRateSpanNs && tsc > anchor_tsc) {
      const double rate = static_cast<double>(ns - anchor_ns) / static_cast<double>(tsc - anchor_tsc);
      // Smoothed: one anchor pair's rate is off by (clock read jitter) / (span), tens of ppm. A pair rate
      // more than 1% away from the estimate (a TSC step, a migration) re-anchors without moving the rate.
      if (ns_per_tick == 0) {
        ns_per_tick = rate;
      } else if (rate > 0.99 * ns_per_tick && rate < 1.01 * ns_per_tick) {
        ns_per_tick = 0.875 * ns_per_tick + 0.125 * rate;
      }
      anchor_tsc = tsc, anchor_ns = ns;
    } else if (anchor_ns == 0 || ns_per_tick > 0) {
      // The first anchor; or a TSC that went behind the anchor (another CPU's): start from here. Before the
      // rate is known the first anchor stays, and every stamp is a clock read, for kMinRateSpanNs.
      anchor_tsc = tsc, anchor_ns = ns;
    }
    anchor_span_ticks =
        ns_per_tick > 0 ? static_cast<uint64_t>(static_cast<double>(kAnchorEveryNs) / ns_per_tick) : 0;
    return ns;
  }
};

thread_local ThreadStampClock stamp_clock;
#endif

}  // namespace

uint64_t stamp_now_ns() {
#if defined(__x86_64__)
  if (tsc_usable()) {
    ThreadStampClock& c = stamp_clock;
    const uint64_t ticks = __rdtsc() - c.anchor_tsc;  // a TSC behind the anchor wraps: re-anchor below
    uint64_t ns = ticks < c.anchor_span_ticks
                      ? c.anchor_ns + static_cast<uint64_t>(static_cast<double>(ticks) * c.ns_per_tick)
                      : c.anchor();
    if (ns < c.last) ns = c.last;
    c.last = ns;
    return ns;
  }
#endif
  return steady_ns();
}

}  // namespace shmbus::detail

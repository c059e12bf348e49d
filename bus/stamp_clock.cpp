#include "bus/stamp_clock.h"

#include <sched.h>

#include <chrono>
#include <fstream>
#include <string>

#if defined(__x86_64__)
#include <sys/rseq.h>  // glibc >= 2.35: __rseq_offset, __rseq_size
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
// 12 ns). The CPUs' TSCs may be offset from each other (that is one reason a kernel rejects the TSC), so a
// stamp extrapolates only from an anchor taken on the CPU it runs on: a thread that moves re-anchors.
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

// The CPU this thread runs on, read from the rseq area glibc registered for it: one load, where
// sched_getcpu is a call of ~15 instructions (its two calls a stamp were 11% of a streaming publisher's
// instructions under callgrind). The kernel keeps cpu_id current whenever the thread is scheduled.
// sched_getcpu where glibc registered no area (__rseq_size 0: the glibc.pthread.rseq tunable off, or a
// kernel without rseq) or this thread's registration failed (cpu_id negative).
int current_cpu() {
  if (__rseq_size != 0) [[likely]] {
    const auto* area = reinterpret_cast<const volatile struct rseq*>(
        static_cast<const char*>(__builtin_thread_pointer()) + __rseq_offset);
    const auto cpu = static_cast<int32_t>(area->cpu_id);
    if (cpu >= 0) [[likely]] {
      return cpu;
    }
  }
  return sched_getcpu();
}

constexpr uint64_t kAnchorEveryNs = 1'000'000;  // bounds the extrapolation error (rate error x 1 ms)
constexpr uint64_t kMinRateSpanNs = 500'000;    // anchors closer than this give too rough a rate
constexpr uint64_t kMaxPairTicks = 1'000;  // a clock read takes ~60 ticks; more: the pair was interrupted

struct ThreadStampClock {
  uint64_t anchor_tsc = 0;
  uint64_t anchor_ns = 0;
  uint64_t anchor_span_ticks = 0;  // ticks until the next anchor; 0 until the rate is known (or if unusable)
  double ns_per_tick = 0;
  // ns_per_tick in 32.32 fixed point, for the stamps between anchors: an integer multiply and shift where
  // double conversions took several instructions a stamp. ticks < anchor_span_ticks keeps the product below
  // kAnchorEveryNs << 32 (2^52).
  uint64_t ns_per_tick_q32 = 0;
  int anchor_cpu = -1;  // the CPU whose TSC anchor_tsc was read on: stamps extrapolate on that CPU only
  int rejected = 0;     // pair rates in a row more than 1% away from the estimate
  uint64_t last = 0;

  // Anchors to steady_clock on `cpu` (where the caller runs) and returns the clock's reading.
  uint64_t anchor(int cpu) {
    // The clock read sits between two TSC reads: pair it with their midpoint.
    const uint64_t before = __rdtsc();
    const uint64_t ns = steady_ns();
    const uint64_t after = __rdtsc();
    // Preempted between the reads, moved to another CPU, or a TSC that jumped: the pair says nothing
    // precise. Return the clock and leave the anchor for the next stamp.
    if (after - before > kMaxPairTicks || current_cpu() != cpu) return ns;
    const uint64_t tsc = before + (after - before) / 2;
    if (cpu == anchor_cpu && anchor_ns != 0 && ns >= anchor_ns + kMinRateSpanNs && tsc > anchor_tsc) {
      // A rate only between two anchors on one CPU: another CPU's TSC may be offset from this one's.
      const double rate = static_cast<double>(ns - anchor_ns) / static_cast<double>(tsc - anchor_tsc);
      // Smoothed: one anchor pair's rate is off by (clock read jitter) / (span), tens of ppm. A pair rate
      // more than 1% away from the estimate (a TSC step) re-anchors without moving the rate, unless four in
      // a row say so: then the TSC's rate changed (a VM moved to another host) and the estimate follows.
      if (ns_per_tick == 0) {
        ns_per_tick = rate;
      } else if (rate > 0.99 * ns_per_tick && rate < 1.01 * ns_per_tick) {
        ns_per_tick = 0.875 * ns_per_tick + 0.125 * rate;
        rejected = 0;
      } else if (++rejected >= 4) {
        ns_per_tick = rate;
        rejected = 0;
      }
      anchor_tsc = tsc, anchor_ns = ns;
    } else if (cpu != anchor_cpu || anchor_ns == 0 || ns_per_tick > 0) {
      // The first anchor; another CPU (the rate carries over, the offset does not); or a TSC that went behind
      // the anchor: start from here. Before the rate is known the first anchor on a CPU stays, and every
      // stamp is a clock read, for kMinRateSpanNs.
      anchor_tsc = tsc, anchor_ns = ns, anchor_cpu = cpu;
    }
    // A TSC slower than 1 MHz or faster than 1 THz (real ones run at GHz: 0.2-1 ns a tick) is broken, or a
    // jump fooled the first rate: every stamp is then a clock read. The bounds also keep both conversions
    // below 2^64.
    const bool rate_usable = ns_per_tick > 1e-3 && ns_per_tick < 1000.0;
    anchor_span_ticks =
        rate_usable ? static_cast<uint64_t>(static_cast<double>(kAnchorEveryNs) / ns_per_tick) : 0;
    ns_per_tick_q32 = rate_usable ? static_cast<uint64_t>(ns_per_tick * 4294967296.0) : 0;
    return ns;
  }

  // A stamp from `ns`, never below the last one of this thread.
  uint64_t monotonic(uint64_t ns) {
    if (ns < last) ns = last;
    last = ns;
    return ns;
  }
  // Out of line: an anchor is a clock read at most every millisecond, and kept apart it leaves the common
  // stamp a short function that saves no registers.
  [[gnu::noinline]] uint64_t anchored_stamp(int cpu) { return monotonic(anchor(cpu)); }
};

thread_local ThreadStampClock stamp_clock;
#endif

}  // namespace

uint64_t stamp_now_ns() {
#if defined(__x86_64__)
  if (tsc_usable()) {
    ThreadStampClock& c = stamp_clock;
    // The CPU before and after the TSC read: a TSC read on the anchor's CPU extrapolates, anything else
    // re-anchors.
    const int cpu = current_cpu();
    const uint64_t ticks = __rdtsc() - c.anchor_tsc;  // a TSC behind the anchor wraps: re-anchor below
    if (ticks < c.anchor_span_ticks && cpu == c.anchor_cpu && current_cpu() == cpu) [[likely]] {
      return c.monotonic(c.anchor_ns + ((ticks * c.ns_per_tick_q32) >> 32));
    }
    return c.anchored_stamp(cpu);
  }
#endif
  return steady_ns();
}

}  // namespace shmbus::detail

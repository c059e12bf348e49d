#pragma once
// Monotonic nanosecond clock for all measurements.

#include <chrono>
#include <cstdint>

namespace bench {

// steady_clock is CLOCK_MONOTONIC read through the vDSO (kvm-clock on these VMs): tens of
// nanoseconds and no syscall, so one read per round trip does not distort the result.
inline uint64_t now_ns() {
  return static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(
                                   std::chrono::steady_clock::now().time_since_epoch())
                                   .count());
}

}  // namespace bench

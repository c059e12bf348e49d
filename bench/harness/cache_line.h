#pragma once
// The cache-line unit every shared layout in bench/ is built from.

#include <atomic>
#include <cstddef>
#include <cstdint>

namespace bench {

// Fixed at 64 rather than std::hardware_destructive_interference_size, which may differ
// between compilers and so between two binaries that must agree on a layout.
inline constexpr size_t kCacheLine = 64;

// One 64-bit counter alone on its cache line, so that a store to it moves exactly one line
// and never invalidates a neighbour (false sharing).
struct alignas(kCacheLine) PaddedCounter {
  std::atomic<uint64_t> value{0};
};
static_assert(sizeof(PaddedCounter) == kCacheLine, "a counter must own its whole cache line");
static_assert(std::atomic<uint64_t>::is_always_lock_free,
              "counters are shared between processes: a lock-based atomic would not be");

}  // namespace bench

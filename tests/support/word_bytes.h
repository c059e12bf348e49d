// A 64-bit word as a message and back: the payload of the queue and exhaustion tests.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>

namespace shmbus::test {

inline std::span<const std::byte> bytes_of(const uint64_t& v) {
  return std::as_bytes(std::span(&v, 1));
}

// The first 8 bytes of `b` (zero-padded when shorter).
inline uint64_t value_of(std::span<const std::byte> b) {
  uint64_t v = 0;
  std::memcpy(&v, b.data(), std::min(b.size(), sizeof v));
  return v;
}

}  // namespace shmbus::test

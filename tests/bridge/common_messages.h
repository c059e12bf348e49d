// Test payloads that carry their own number and checksum, so a receiver can tell what arrived intact.
#pragma once

#include <cstdint>
#include <cstring>
#include <span>

namespace shmbus::test {

struct Numbered {
  uint64_t number = 0;
  uint64_t checksum = 0;
  uint8_t body[48] = {};
};

inline uint64_t checksum_of(const Numbered& m) {
  uint64_t h = 14695981039346656037ull ^ m.number;
  for (uint8_t b : m.body) h = (h ^ b) * 1099511628211ull;
  return h;
}

inline Numbered numbered(uint64_t n) {
  Numbered m;
  m.number = n;
  for (std::size_t i = 0; i < sizeof m.body; ++i) m.body[i] = static_cast<uint8_t>(n * 31 + i);
  m.checksum = checksum_of(m);
  return m;
}

// The message in `bytes` if it is a whole Numbered with a matching checksum.
inline bool read_numbered(std::span<const std::byte> bytes, Numbered* out) {
  if (bytes.size() != sizeof(Numbered)) return false;
  std::memcpy(out, bytes.data(), sizeof *out);
  return checksum_of(*out) == out->checksum;
}

}  // namespace shmbus::test

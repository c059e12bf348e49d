#pragma once
// A process-local buffer holding one message, for the transports that copy.

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <vector>

namespace bench {

// Every page is written at construction, so no page fault lands in a measurement (README
// trap 2). The message's sequence number sits in its first 8 bytes.
class MessageBuffer {
 public:
  // REQUIRES: size >= sizeof(uint64_t).
  explicit MessageBuffer(size_t size) : bytes_(size, std::byte{0x5a}) {}

  std::byte* data() { return bytes_.data(); }
  size_t size() const { return bytes_.size(); }

  void put_sequence(uint64_t seq) { std::memcpy(bytes_.data(), &seq, sizeof(seq)); }
  uint64_t sequence() const {
    uint64_t seq;
    std::memcpy(&seq, bytes_.data(), sizeof(seq));
    return seq;
  }

 private:
  std::vector<std::byte> bytes_;
};

}  // namespace bench

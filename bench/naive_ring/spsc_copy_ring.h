#pragma once
// The simplest correct single-producer single-consumer ring in shared memory: fixed-size
// slots, the message copied in and copied out, both sides busy spinning. It is the baseline a
// smarter shared-memory design has to beat; it is deliberately naive, so it reads the other
// side's index on every call instead of caching it.

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstring>

#include "harness/cache_line.h"

namespace bench {

// The shared part. Slots follow the header at kCacheLine * 2; each is `slot_bytes` long.
struct SpscRingHeader {
  PaddedCounter head;  // written by the producer: messages pushed so far
  PaddedCounter tail;  // written by the consumer: messages popped so far
};
static_assert(offsetof(SpscRingHeader, tail) == kCacheLine,
              "head and tail must be a cache line apart, or every push and pop would false-share");
static_assert(sizeof(SpscRingHeader) == 2 * kCacheLine, "slots start right after the header");

// Bytes of shared memory one ring needs.
inline size_t spsc_ring_bytes(size_t slot_count, size_t slot_bytes) {
  return sizeof(SpscRingHeader) + slot_count * slot_bytes;
}

// Process-local view of a ring living at `memory` (zero-filled, spsc_ring_bytes long).
// REQUIRES: slot_count is a power of two; slot_bytes a multiple of kCacheLine, so slots never
// share a line.
class SpscCopyRing {
 public:
  SpscCopyRing(void* memory, size_t slot_count, size_t slot_bytes)
      : header_(*static_cast<SpscRingHeader*>(memory)),
        slots_(static_cast<std::byte*>(memory) + sizeof(SpscRingHeader)),
        slot_count_(slot_count),
        slot_bytes_(slot_bytes) {}

  // Producer only. Spins while the ring is full. REQUIRES: bytes <= slot_bytes.
  void push(const void* message, size_t bytes) {
    const uint64_t head = header_.head.value.load(std::memory_order_relaxed);  // own index
    // Acquire: pairs with the consumer's release of tail, so its copy out of this slot is
    // complete before this copy in overwrites it.
    while (head - header_.tail.value.load(std::memory_order_acquire) == slot_count_) {
    }
    std::memcpy(slot(head), message, bytes);
    // Release: pairs with the consumer's acquire of head; the copy in is visible first.
    header_.head.value.store(head + 1, std::memory_order_release);
  }

  // Consumer only. Spins while the ring is empty. REQUIRES: bytes <= slot_bytes.
  void pop(void* message, size_t bytes) {
    const uint64_t tail = header_.tail.value.load(std::memory_order_relaxed);  // own index
    // Acquire: pairs with the producer's release of head.
    while (header_.head.value.load(std::memory_order_acquire) == tail) {
    }
    std::memcpy(message, slot(tail), bytes);
    // Release: pairs with the producer's acquire of tail; the slot is free only now.
    header_.tail.value.store(tail + 1, std::memory_order_release);
  }

 private:
  std::byte* slot(uint64_t index) const { return slots_ + (index & (slot_count_ - 1)) * slot_bytes_; }

  SpscRingHeader& header_;
  std::byte* slots_;
  size_t slot_count_;
  size_t slot_bytes_;
};

}  // namespace bench

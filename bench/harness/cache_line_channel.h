#pragma once
// The physical floor: a message that is one 64-bit store on one cache line.

#include <cstddef>
#include <cstdint>

#include "cache_line.h"

namespace bench {

// Two counters on their own lines, one per direction: A writes `to_b`, B writes `to_a`.
// A round trip therefore moves exactly two cache lines, the least any IPC can do.
struct PingPongLines {
  PaddedCounter to_b;
  PaddedCounter to_a;
};
static_assert(offsetof(PingPongLines, to_a) == kCacheLine, "the two directions must be a cache line apart");

// One side's view of a PingPongLines: it carries only the sequence number (the payload size
// is ignored). Values on a line are seq + 1, so the zero a fresh line starts with means
// "nothing sent yet"; sequences on a line must not repeat (use a fresh PingPongLines per run).
class CacheLineChannel {
 public:
  CacheLineChannel(PaddedCounter& tx, PaddedCounter& rx) : tx_(tx.value), rx_(rx.value) {}

  // Release: pairs with the acquire in the other side's receive(), so anything written
  // before send() is visible once the peer sees the new value.
  void send(uint64_t seq) { tx_.store(seq + 1, std::memory_order_release); }

  // Busy spins until the peer stores a value other than the last one seen.
  uint64_t receive() {
    uint64_t value;
    // Acquire: pairs with the release in the peer's send().
    while ((value = rx_.load(std::memory_order_acquire)) == last_seen_) {
    }
    last_seen_ = value;
    return value - 1;
  }

 private:
  std::atomic<uint64_t>& tx_;
  std::atomic<uint64_t>& rx_;
  uint64_t last_seen_ = 0;
};

}  // namespace bench

// The writing side of one single-writer broadcast ring in a topic segment.
//
// Publish = claim the slot at `head`, write the payload in place, commit (store-release the slot's sequence).
// Lossy rings never look at readers: a reader that is lapped notices from the sequence and counts the gap.
// Lossless rings may reuse a slot only once every active reader cursor has passed it; the writer keeps a
// cached copy of the slowest cursor and rescans the real ones only when that copy says the ring may be full
// or when the daemon announces a joining/leaving subscriber, so the gate costs nothing while readers keep up.
//
// Thread safety: one RingWriter per ring, used by one thread at a time.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <span>

#include "shm/topic_segment_layout.h"

namespace shmbus::shm {

class RingWriter {
 public:
  RingWriter() = default;
  // REQUIRES: `base` maps a segment validated against `g`; ring `index` < g.max_publishers was handed to this
  // writer by the daemon with `generation`.
  RingWriter(std::byte* base, const TopicGeometry& g, uint32_t index, uint32_t generation, bool lossless);

  // Returns the payload area (g.max_message_size bytes) of the next slot, or nullptr when a lossless ring is
  // full for longer than `timeout` (zero: do not wait). Spins first, then sleeps on a futex.
  std::byte* claim(std::chrono::nanoseconds timeout);

  // Publishes the claimed slot. REQUIRES: claim() returned non-null since the last commit; size <= max.
  void commit(uint32_t size, uint64_t publish_ns);

  // Copies `messages` into consecutive slots and publishes them with one publish stamp and at most one check
  // for sleepers (one wake-up; without cheap commits, one full fence) per ring's worth, instead of one per
  // message. A full lossless ring is waited for as in claim(). Returns how many were published: fewer than
  // messages.size() only when the ring stayed full for `timeout`. REQUIRES: no claim outstanding; every
  // message <= g.max_message_size.
  std::size_t write_batch(std::span<const std::span<const std::byte>> messages, uint64_t publish_ns,
                          std::chrono::nanoseconds timeout);

  // Positions committed so far (the next message's sequence number minus one).
  uint64_t head() const { return head_; }
  uint32_t index() const { return index_; }

 private:
  bool gate_open();                                      // lossless: may the slot at head_ be (re)written?
  bool wait_for_room(std::chrono::nanoseconds timeout);  // gate_open(), spinning then sleeping up to timeout
  uint64_t slowest_cursor();
  bool sleepers_present() const;  // after a commit: is a reader asleep (or about to be)?
  void wake_readers();

  std::byte* base_ = nullptr;
  TopicGeometry geometry_{};
  TopicHeader* header_ = nullptr;
  PublisherSlot* slot_ = nullptr;
  std::byte* ring_ = nullptr;
  uint32_t index_ = 0;
  uint32_t generation_ = 0;
  bool lossless_ = false;
  bool cheap_commit_ = false;  // this process is registered for membarrier: commits need no full fence
  uint64_t head_ = 0;
  uint64_t cached_slowest_ = 0;  // a lower bound of every active reader cursor
  uint32_t seen_subscribers_epoch_ = 0;
};

}  // namespace shmbus::shm

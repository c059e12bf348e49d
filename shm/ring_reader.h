// The reading side of one broadcast ring: a private read position, the positions of samples still held, and a
// cursor in shared memory published lazily (every quarter ring, or when the reader catches up) so that the
// lossless writer's gate costs a fraction of a cache-line transfer per message.
//
// Thread safety: one RingReader per (subscriber, ring), used by one thread at a time.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "shm/topic_segment_layout.h"

namespace shmbus::shm {

class RingReader {
 public:
  RingReader() = default;
  // REQUIRES: `base` maps a segment validated against `g`; ring < max_publishers; subscriber <
  // max_subscribers; `start` is the first position to read (history), `generation` the ring's generation.
  RingReader(std::byte* base, const TopicGeometry& g, uint32_t ring, uint32_t subscriber, uint32_t generation,
             uint64_t start, uint32_t max_held);

  // What peek() found.
  enum class Peek { kEmpty, kReady, kCorrupt };

  // Looks at the slot at the read position. kReady: `*slot` is committed for that position. A lapped reader
  // (lossy ring) jumps to the oldest slot still intact and adds the skipped count to `*dropped`. kCorrupt:
  // the slot's size field exceeds the maximum (a buggy writer); the caller skips it with skip().
  Peek peek(SlotHeader** slot, uint64_t* dropped);

  // Takes the slot peek() returned and marks it held. Returns its position. REQUIRES: can_hold().
  uint64_t hold();
  // Skips the slot peek() returned without holding it.
  void skip() { ++read_position_; }
  // Releases a held position (any order).
  void release(uint64_t position);
  bool can_hold() const { return held_.size() < max_held_; }

  // Publishes the cursor if it moved a quarter ring, or `force` and it moved at all.
  void publish_cursor(bool force);

  // True if a sample taken at `position` still holds that message (a lossy writer may have overwritten it).
  bool still_valid(uint64_t position) const;

  uint64_t read_position() const { return read_position_; }
  uint32_t generation() const { return generation_; }
  uint32_t ring() const { return ring_index_; }
  std::size_t held() const { return held_.size(); }

 private:
  uint64_t oldest_in_use() const;

  std::byte* base_ = nullptr;
  TopicGeometry geometry_{};
  PublisherSlot* slot_ = nullptr;
  std::byte* ring_ = nullptr;
  Cursor* cursor_ = nullptr;
  uint32_t ring_index_ = 0;
  uint32_t generation_ = 0;
  uint64_t read_position_ = 0;
  uint64_t published_ = 0;
  uint32_t max_held_ = 0;
  std::vector<uint64_t> held_;  // reserved at construction: no allocation on the hot path
};

}  // namespace shmbus::shm

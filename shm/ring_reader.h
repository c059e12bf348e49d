// The reading side of one broadcast ring: a private read position, the positions of samples still held, and a
// cursor in shared memory published lazily (every quarter ring, or when the reader catches up) so that the
// lossless writer's gate costs a fraction of a cache-line transfer per message.
//
// Thread safety: one RingReader per (subscriber, ring), used by one thread at a time.
#pragma once

#include <atomic>
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
  // the slot's size field exceeds the maximum, or it holds a later sequence than the writer's head admits
  // (a buggy writer); the caller skips it with skip(). Never more than a ring of kCorrupt in a row: past
  // the writer's head a garbage slot reads as kEmpty.
  // Inline, the poll of the next slot; a lap goes out of line.
  Peek peek(SlotHeader** slot, uint64_t* dropped) {
    bool lapped = false;
    const Peek p = look(slot, &lapped);
    return lapped ? peek_lapped(slot, dropped) : p;
  }

  // Takes the slot peek() returned and marks it held. Returns its position. REQUIRES: can_hold().
  uint64_t hold() {
    held_.push_back(read_position_);  // within the capacity reserved at construction
    return read_position_++;
  }
  // Skips the slot peek() returned without holding it.
  void skip() { ++read_position_; }
  // Calls visit(slot, position) for `first`, the slot peek() just reported kReady, and for each slot after it
  // that peek() would report kReady in turn, at most `max` (>= 1) in all; returns how many. Consumes nothing
  // (skip(count) does). One tight pass: a drain's run of ready slots.
  template <typename F>
  std::size_t for_each_ready(SlotHeader* first, std::size_t max, F&& visit) const {
    std::byte* const end = ring_ + geometry_.ring_bytes;  // depth x slot_stride: the pointer steps land on it
    SlotHeader* s = first;
    uint64_t position = read_position_;
    std::size_t n = 0;
    for (;;) {
      visit(s, position);
      if (++n == max) break;
      ++position;
      std::byte* next = reinterpret_cast<std::byte*>(s) + geometry_.slot_stride;
      s = reinterpret_cast<SlotHeader*>(next == end ? ring_ : next);
      // acquire: as in look(); the payload and header fields of this slot are visible after it.
      if (s->sequence.load(std::memory_order_acquire) != position + 1 || s->size > geometry_.max_message_size)
        break;
    }
    return n;
  }
  // Consumes `count` slots found ready (for_each_ready) without holding them.
  void skip(uint64_t count) { read_position_ += count; }
  // Releases a held position (any order).
  void release(uint64_t position) {
    for (auto it = held_.begin(); it != held_.end(); ++it) {
      if (*it == position) {
        *it = held_.back();
        held_.pop_back();
        return;
      }
    }
  }
  bool can_hold() const { return held_.size() < max_held_; }

  // Publishes the cursor if it moved a quarter ring, or `force` and it moved at all. Inline, the test that
  // nothing is due: it runs after every release and every empty poll. The oldest position in use never passes
  // read_position_, so a read position less than a quarter ring on means no publication yet.
  void publish_cursor(bool force) {
    if (force ? (held_.empty() && read_position_ == published_) : read_position_ - published_ < quarter_)
      return;
    publish_cursor_slow(force);
  }

  // True if a sample taken at `position` still holds that message (a lossy writer may have overwritten it).
  bool still_valid(uint64_t position) const;

  uint64_t read_position() const { return read_position_; }
  // How far the read position moves between two publications of the cursor: a quarter ring, at least 1.
  uint64_t publish_interval() const { return quarter_; }
  uint32_t generation() const { return generation_; }
  uint32_t ring() const { return ring_index_; }
  std::size_t held() const { return held_.size(); }

 private:
  // The slot at the read position, as peek() reports it; *lapped (and no report) if it holds a later
  // position.
  Peek look(SlotHeader** slot, bool* lapped) {
    SlotHeader* s = ring_slot(ring_, geometry_, read_position_);
    const uint64_t expected = read_position_ + 1;
    // acquire: pairs with the writer's commit store; the payload and header fields are visible after it.
    const uint64_t seq = s->sequence.load(std::memory_order_acquire);
    if (seq == expected) {
      if (s->size > geometry_.max_message_size) return Peek::kCorrupt;
      *slot = s;
      return Peek::kReady;
    }
    *lapped = (seq & ~kSlotBusyBit) > expected;  // else not yet written, or being written for us
    return Peek::kEmpty;
  }
  Peek peek_lapped(SlotHeader** slot, uint64_t* dropped);
  uint64_t oldest_in_use() const;
  void publish_cursor_slow(bool force);

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
  uint64_t quarter_ = 1;        // max(1, depth / 4): how far the cursor moves before it is published
  std::vector<uint64_t> held_;  // reserved at construction: no allocation on the hot path
};

}  // namespace shmbus::shm

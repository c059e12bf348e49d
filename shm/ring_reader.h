// The reading side of one broadcast ring: a private read position, the positions of samples still held, and a
// cursor in shared memory published lazily (every quarter ring, or when the reader catches up) so that the
// lossless writer's gate costs a fraction of a cache-line transfer per message.
//
// Thread safety: one RingReader per (subscriber, ring), used by one thread at a time.
#pragma once

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <vector>

#include "shm/packed_slot.h"
#include "shm/topic_segment_layout.h"

namespace shmbus::shm {

// One message of a committed slot: a slot holds one, or several if packed (shm/packed_slot.h).
struct RingMessage {
  const std::byte* data;
  uint32_t size;
  uint64_t sequence;     // the message's sequence: 1, 2, 3... per ring
  uint64_t publish_ns;   // its slot's stamp
  uint64_t position;     // the slot's
  uint32_t next_sub;     // the index of the next message in this slot; 0: the next slot
  uint32_t next_offset;  // where that message starts in the payload
};

class RingReader {
 public:
  RingReader() = default;
  // REQUIRES: `base` maps a segment validated against `g`; ring < max_publishers; subscriber <
  // max_subscribers; `start` is the first position to read (history), `generation` the ring's generation;
  // `lossless` the topic's policy as validated (not re-read from the segment).
  RingReader(std::byte* base, const TopicGeometry& g, uint32_t ring, uint32_t subscriber, uint32_t generation,
             uint64_t start, uint32_t max_held, bool lossless);

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

  // One message of a slot peek() reported kReady (see RingMessage).
  using Message = RingMessage;
  // The message at the read position of `slot`, the slot peek() just reported kReady. False if the slot is
  // packed and its table is corrupt, or packed on a lossy ring (which never packs): the caller skips the slot
  // with skip(). Inline: it runs per message.
  bool message(const SlotHeader* slot, Message* out) const {
    return message_at(slot, read_position_, sub_, sub_offset_, out);
  }

  // The common case of peek() + message() in one: true, with `out` filled in, when the slot at the read
  // position is committed for it, within bounds and holds one message (not packed). False for anything else
  // (empty, lapped, corrupt, packed), which peek() sorts out. Inline: it runs per message.
  bool ready_single(Message* out) const {
    const SlotHeader* s = ring_slot(ring_, geometry_, read_position_);
    // acquire: as in look().
    if (s->sequence.load(std::memory_order_acquire) != read_position_ + 1) return false;
    const uint32_t size = s->size;  // read once: a lossy writer may be rewriting the slot
    if (size > geometry_.max_message_size || (s->flags & kSlotPacked) != 0) return false;
    single_message(s, read_position_, size, out);
    return true;
  }

  // Takes the message `m` (from message()) and marks its slot held: a slot holding several messages is held
  // once for each. Returns the slot's position. REQUIRES: can_hold().
  uint64_t hold(const Message& m) {
    held_.push_back(read_position_);  // within the capacity reserved at construction
    consume(m.position, m.next_sub, m.next_offset);
    return m.position;
  }
  // Skips the slot peek() returned, whatever of it was not read yet, without holding it.
  void skip() {
    ++read_position_;
    sub_ = 0;
  }
  // Skips a slot message() refused; returns the messages lost with it, as far as its table tells (1 if it
  // does not).
  uint64_t skip_corrupt(const SlotHeader* slot) {
    const uint32_t size = std::min(slot->size, geometry_.max_message_size);
    const uint32_t count =
        (slot->flags & kSlotPacked) ? packed_count(reinterpret_cast<const std::byte*>(slot + 1), size) : 0;
    const uint64_t lost = count > sub_ ? count - sub_ : 1;
    skip();
    return lost;
  }
  // Calls visit(message) for `first` (what message() returned for the slot peek() reported kReady) and for
  // each message after it that message() would return in turn: at most `max` (>= 1) messages in all, from at
  // most `max_slots` (>= 1) slots. Returns how many. Consumes nothing (consume() does). One tight pass: a
  // drain's run of ready messages. Stops before a corrupt packed slot (peek() and message() find it).
  // *caught_up (if given): it stopped at a slot not yet committed, the writer's head as far as it knows.
  template <typename F>
  std::size_t for_each_ready(const SlotHeader* first_slot, const Message& first, std::size_t max,
                             uint64_t max_slots, F&& visit, bool* caught_up = nullptr) const {
    std::byte* const end = ring_ + geometry_.ring_bytes;  // depth x slot_stride: the pointer steps land on it
    const SlotHeader* s = first_slot;
    Message m = first;
    std::size_t n = 0;
    uint64_t slots = 1;
    for (;;) {
      visit(m);
      if (++n == max) break;
      uint32_t sub = 0;
      uint32_t offset = 0;
      if (m.next_sub != 0) {  // the next message of a packed slot
        sub = m.next_sub;
        offset = m.next_offset;
      } else {
        if (slots++ == max_slots) break;
        const std::byte* next = reinterpret_cast<const std::byte*>(s) + geometry_.slot_stride;
        s = reinterpret_cast<const SlotHeader*>(next == end ? ring_ : next);
        // acquire: as in look(); the payload and header fields of this slot are visible after it.
        const uint64_t seq = s->sequence.load(std::memory_order_acquire);
        if (seq != m.position + 2) {
          // Below, or being written: not yet committed. Above: lapped (lossy), more to read.
          if (caught_up != nullptr) *caught_up = (seq & ~kSlotBusyBit) <= m.position + 2;
          break;
        }
        if (s->size > geometry_.max_message_size) break;
      }
      if (!message_at(s, m.position + (sub == 0 ? 1 : 0), sub, offset, &m)) break;
    }
    return n;
  }
  // Moves the read position past a message found by message() or for_each_ready(), given its slot's position
  // and its next_sub and next_offset, without holding it.
  void consume(uint64_t position, uint32_t next_sub, uint32_t next_offset) {
    read_position_ = position + (next_sub == 0 ? 1 : 0);
    sub_ = next_sub;
    sub_offset_ = next_offset;
  }
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

  // Publishes the cursor once it moved a quarter ring, and wakes a lossless writer waiting for room. This
  // alone keeps a writer going: it waits only a ring ahead of the published cursor, which lags the read
  // position by less than a quarter ring, so the reader has most of a ring to read and passes the next
  // quarter mark (unless a sample it holds pins the cursor). Inline, the test that nothing is due:
  // it runs after every release. The oldest position in use never passes read_position_, so a read position
  // less than a quarter ring on means no publication yet.
  void publish_cursor() {
    if (read_position_ - published_ < quarter_) return;
    publish_cursor_slow();
  }
  // Publishes the cursor if it moved at all, when the reader caught up or leaves the ring (a drain's visit
  // ends): the writer's room and the daemon's slots_in_use are exact while the reader is idle. A plain
  // release store when nothing is held and no writer is seen waiting: no writer needs it to go on then (see
  // publish_cursor), so a reader keeping up with a stream pays no fence per message for it.
  void publish_cursor_idle() {
    if (held_.empty() && read_position_ == published_) return;
    publish_cursor_idle_slow();
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
  // Message `sub` (starting at `offset`, see PackedMessage) of the slot at `position`.
  bool message_at(const SlotHeader* s, uint64_t position, uint32_t sub, uint32_t offset, Message* out) const {
    const uint32_t size = std::min(s->size, geometry_.max_message_size);  // a writer may rewrite it (lossy)
    if ((s->flags & kSlotPacked) == 0) [[likely]] {
      single_message(s, position, size, out);
      return true;
    }
    const std::byte* payload = reinterpret_cast<const std::byte*>(s + 1);
    out->position = position;
    out->publish_ns = s->publish_ns;
    PackedMessage p;
    if (!lossless_ || !packed_message(payload, size, sub, offset, &p)) return false;
    out->data = p.data;
    out->size = p.size;
    out->sequence = s->first_message + sub;
    out->next_sub = p.last ? 0 : sub + 1;
    out->next_offset = p.next_offset;
    return true;
  }
  // The message of the slot `s` at `position` when it holds one (not packed), `size` bytes (within bounds).
  void single_message(const SlotHeader* s, uint64_t position, uint32_t size, Message* out) const {
    out->data = reinterpret_cast<const std::byte*>(s + 1);
    out->size = size;
    // Lossy: position + 1, as the ring never packs; read from a slot a lap may be rewriting, it could be
    // torn.
    out->sequence = lossless_ ? s->first_message : position + 1;
    out->publish_ns = s->publish_ns;
    out->position = position;
    out->next_sub = 0;
    out->next_offset = 0;
  }
  uint64_t oldest_in_use() const;
  void publish_cursor_slow();
  void publish_cursor_idle_slow();
  void publish_and_wake(uint64_t oldest);  // the Dekker publication: see publish_cursor_slow

  std::byte* base_ = nullptr;
  TopicGeometry geometry_{};
  PublisherSlot* slot_ = nullptr;
  bool lossless_ = false;  // the topic's policy (immutable): only lossless slots are packed
  std::byte* ring_ = nullptr;
  Cursor* cursor_ = nullptr;
  uint32_t ring_index_ = 0;
  uint32_t generation_ = 0;
  uint64_t read_position_ = 0;
  uint32_t sub_ = 0;         // the next message in the packed slot at read_position_ (0: its first)
  uint32_t sub_offset_ = 0;  // where that message starts in the payload (when sub_ > 0)
  uint64_t published_ = 0;
  uint32_t max_held_ = 0;
  uint64_t quarter_ = 1;        // max(1, depth / 4): how far the cursor moves before it is published
  std::vector<uint64_t> held_;  // reserved at construction: no allocation on the hot path
};

}  // namespace shmbus::shm

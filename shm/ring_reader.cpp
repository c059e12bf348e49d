#include "shm/ring_reader.h"

#include <algorithm>

#include "shm/futex.h"

namespace shmbus::shm {

RingReader::RingReader(std::byte* base, const TopicGeometry& g, uint32_t ring, uint32_t subscriber,
                       uint32_t generation, uint64_t start, uint32_t max_held, bool lossless)
    : base_(base),
      geometry_(g),
      slot_(publisher_slot(base, g, ring)),
      lossless_(lossless),
      ring_(ring_base(base, g, ring)),
      cursor_(cursor(base, g, ring, subscriber)),
      ring_index_(ring),
      generation_(generation),
      read_position_(start),
      published_(start),
      max_held_(max_held),
      quarter_(std::max<uint32_t>(1, g.depth / 4)) {
  held_.reserve(max_held);
  // seq_cst: this cursor gates the writer from now on (see publish_cursor).
  cursor_->value.store(make_cursor(generation_, start), std::memory_order_seq_cst);
}

RingReader::Peek RingReader::peek_lapped(SlotHeader** out, uint64_t* dropped) {
  for (;;) {
    // Lapped: the slot already holds a later position. The oldest intact slot is head - depth + 1 (the writer
    // may be rewriting head - depth right now). acquire: pairs with the writer's release store of head.
    const uint64_t head = slot_->head.load(std::memory_order_acquire);
    const uint64_t oldest = head >= geometry_.depth ? head - geometry_.depth + 1 : 0;
    if (oldest <= read_position_) {
      // A sequence from the future that head does not confirm: the writer is corrupting its ring. Below head
      // the slot is skipped (at most a ring of them: then we are at head). At or past head there is nothing
      // committed to read: empty, until the writer overwrites the garbage. Skipping there would follow a
      // ring full of garbage round and round, for ever.
      return read_position_ < head ? Peek::kCorrupt : Peek::kEmpty;
    }
    *dropped += oldest - read_position_;
    read_position_ = oldest;
    sub_ = 0;
    bool lapped = false;
    const Peek p = look(out, &lapped);
    if (!lapped) return p;
  }
}

uint64_t RingReader::oldest_in_use() const {
  uint64_t oldest = read_position_;
  for (uint64_t p : held_) oldest = std::min(oldest, p);
  return oldest;
}

void RingReader::publish_cursor_slow() {
  const uint64_t oldest = oldest_in_use();
  if (oldest - published_ < quarter_) return;  // a held sample pins the cursor
  publish_and_wake(oldest);
}

void RingReader::publish_and_wake(uint64_t oldest) {
  published_ = oldest;
  // seq_cst store then seq_cst load of writer_waiting: Dekker with the writer, which sets writer_waiting
  // before rescanning cursors; one of us sees the other. Also a release: our reads of the slots happen before
  // reuse.
  cursor_->value.store(make_cursor(generation_, oldest), std::memory_order_seq_cst);
  if (slot_->writer_waiting.load(std::memory_order_seq_cst) != 0) {
    slot_->writer_waiting.store(0, std::memory_order_relaxed);
    futex_wake(&slot_->writer_waiting);
  }
}

void RingReader::publish_cursor_idle_slow() {
  const uint64_t oldest = oldest_in_use();
  if (oldest == published_) return;
  // While a sample is held, the Dekker publication: the quarter rule counts from the oldest held position,
  // so it may never move the cursor again, and a writer that waits behind it (its wait racing this store)
  // must be seen and woken. With nothing held, a waiting writer is a ring ahead of a cursor that lags the
  // read position by less than a quarter ring, and publish_cursor() wakes it a quarter ring on (see the
  // header); then only a writer seen waiting (relaxed: a hint) is woken now.
  if (!held_.empty() || slot_->writer_waiting.load(std::memory_order_relaxed) != 0) {
    publish_and_wake(oldest);
    return;
  }
  published_ = oldest;
  // release: our reads of the slots before `oldest` happen before the writer (its load of the cursor is
  // acquire or seq_cst) reuses them.
  cursor_->value.store(make_cursor(generation_, oldest), std::memory_order_release);
}

bool RingReader::still_valid(uint64_t position) const {
  const SlotHeader* slot = ring_slot(ring_, geometry_, position);
  // acquire: orders this check after the caller's reads of the payload (seqlock validation).
  std::atomic_thread_fence(std::memory_order_acquire);
  return slot->sequence.load(std::memory_order_relaxed) == position + 1;
}

}  // namespace shmbus::shm

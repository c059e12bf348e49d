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

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <span>

#include "shm/topic_segment_layout.h"

namespace shmbus::shm {

// Asks for `p`'s cache line in a writable state ahead of a store or RMW to it: one transfer from another
// core instead of a read miss then an upgrade. PREFETCHW (a NOP on x86 CPUs without it); a hint, so any
// address is safe.
inline void prefetch_for_write(const void* p) {
#if defined(__x86_64__)
  asm volatile("prefetchw %0" : : "m"(*static_cast<const char*>(p)));
#else
  __builtin_prefetch(p, 1, 3);
#endif
}

class RingWriter {
 public:
  RingWriter() = default;
  // REQUIRES: `base` maps a segment validated against `g`; ring `index` < g.max_publishers was handed to this
  // writer by the daemon with `generation`.
  RingWriter(std::byte* base, const TopicGeometry& g, uint32_t index, uint32_t generation, bool lossless);

  // Returns the payload area (g.max_message_size bytes) of the next slot, or nullptr when a lossless ring is
  // full for longer than `timeout` (zero: do not wait). Spins first, then sleeps on a futex.
  std::byte* claim(std::chrono::nanoseconds timeout) {
    // The last commit woke a reader, so it is likely asleep again by the time this one commits: fetch the
    // wake word's line for writing now, while the message is written, instead of loading it at the commit
    // (a miss, as the reader armed it) and then taking it for writing to disarm it (a second cross-core
    // transfer), both on the path to the wake-up.
    if (woke_last_) prefetch_for_write(&header_->wake_word);
    // Inline, the common case: a lossy ring, or a lossless one whose cached slowest cursor leaves room and
    // whose subscribers did not change (acquire: pairs with the daemon's release bump after it set a joining
    // reader's cursor).
    const bool room =
        !lossless_ || (head_ - cached_slowest_ < geometry_.depth &&
                       header_->subscribers_epoch.load(std::memory_order_acquire) == seen_subscribers_epoch_);
    if (!room && !wait_for_room(timeout)) [[unlikely]] {
      return nullptr;
    }
    SlotHeader* slot = begin_slot();
    claimed_ = slot;
    // relaxed: a statistic for `stats` (loans outstanding); the commit's head store ends it, abandon() too.
    slot_->loaned.store(head_ + 1, std::memory_order_relaxed);
    return slot_payload(slot);
  }

  // Publishes the claimed slot. REQUIRES: claim() returned non-null since the last commit; size <= max.
  void commit(uint32_t size, uint64_t publish_ns) {
    // release: pairs with the reader's acquire load of the sequence, making payload and header visible. No
    // store-load fence before the load of `sleepers`: a reader going to sleep pays for that order with
    // fence_before_sleep(), or skips it in a short first sleep (shm/sleep_fence.h). Without cheap commits,
    // seq_cst: also ordered before our load of `sleepers` (Dekker with a reader going to sleep).
    end_slot(claimed_, size, publish_ns, /*seq_cst=*/!cheap_commit_);
    PublisherSlot* const ps = slot_;
    bytes_ += size;
    // relaxed: a statistic for `stats`, single writer.
    ps->bytes.store(bytes_, std::memory_order_relaxed);
    if (sleepers_present()) [[unlikely]] {
      wake_readers();
    } else {
      woke_last_ = false;
    }
  }

  // Copies `messages` into consecutive slots and publishes them with one publish stamp and at most one check
  // for sleepers (one wake-up; without cheap commits, one full fence) per ring's worth, instead of one per
  // message. On a lossless ring, messages that fit together in a slot's payload (g.max_message_size) share
  // it (shm/packed_slot.h). A full lossless ring is waited for as in claim(). Returns how many were
  // published: fewer than messages.size() only when the ring stayed full for `timeout`. REQUIRES: no claim
  // outstanding; every message <= g.max_message_size.
  std::size_t write_batch(std::span<const std::span<const std::byte>> messages, uint64_t publish_ns,
                          std::chrono::nanoseconds timeout);

  // The loan claim() made ends without a commit (the next claim reuses its slot): `stats` stops counting it.
  void abandon() {
    // relaxed: a statistic, as in claim().
    slot_->loaned.store(0, std::memory_order_relaxed);
  }

  // Slots committed so far (the next slot's sequence number minus one).
  uint64_t head() const { return head_; }
  // Messages committed so far (head() plus the extra messages of packed slots).
  uint64_t messages() const { return messages_; }
  uint32_t index() const { return index_; }

 private:
  // The two halves of writing one message, shared by claim()/commit() and write_batch().
  // Lossy: marks the slot at head_ busy before its payload is touched, so that a lapped reader (seqlock
  // check) sees the overwrite. relaxed + release fence: the mark is ordered before the payload stores that
  // follow (free on x86). Lossless: no mark. No subscriber reads a slot the writer rewrites: the cursors
  // gate it, and a joiner's history start stays two slots clear of the ring's far end
  // (TopicRegistry::add_subscriber). (The daemon's metrics may read a slot being rewritten; they bound
  // what they find.) The mark would cost a second cross-core transfer of the slot's line when a reader is
  // polling it: the mark takes the line, the reader's poll takes it back, the commit takes it again.
  SlotHeader* begin_slot() {
    SlotHeader* slot = ring_slot(ring_, geometry_, head_);
    if (!lossless_) {
      slot->sequence.store((head_ + 1) | kSlotBusyBit, std::memory_order_relaxed);
      std::atomic_thread_fence(std::memory_order_release);
    }
    return slot;
  }
  // Fills in the header of the slot begun at head_ (holding `count` messages: more than one if `flags` says
  // kSlotPacked), commits it and advances head_. The sequence store is a release (pairs with the reader's
  // acquire load), or seq_cst if asked. A branch, not a runtime memory_order: GCC treats a non-constant order
  // as seq_cst (a locked instruction on x86).
  void end_slot(SlotHeader* slot, uint32_t size, uint64_t publish_ns, bool seq_cst, uint32_t flags = 0,
                uint32_t count = 1) {
    // Members in locals: the compiler cannot tell that the stores to shared memory below leave them alone.
    PublisherSlot* const ps = slot_;
    const uint64_t first = messages_ + 1;
    const uint64_t head = head_ + 1;
    messages_ += count;
    head_ = head;
    slot->publish_ns = publish_ns;
    slot->size = size;
    slot->flags = flags;
    slot->first_message = first;
    // relaxed: a statistic (stats); the line is ours, as head's store below. Only once packing made messages
    // and head differ (messages_committed): a store fewer a publish, as each is a store buffer entry that
    // waits behind the slot's line while a reader holds it.
    if (messages_ != head) ps->messages.store(messages_, std::memory_order_relaxed);
    if (seq_cst) {
      slot->sequence.store(head, std::memory_order_seq_cst);
    } else {
      slot->sequence.store(head, std::memory_order_release);
    }
    // release: joiners and lapped readers read head with acquire to find the newest committed position.
    ps->head.store(head, std::memory_order_release);
  }
  // How many of `messages`, from the first, share the next slot: 2 or more that fit packed in a payload,
  // or 1.
  std::size_t pack_count(std::span<const std::span<const std::byte>> messages) const;
  // Writes messages[0..count) (count >= 2, as pack_count found) into one packed slot and commits it.
  uint64_t write_packed(std::span<const std::span<const std::byte>> messages, uint64_t publish_ns);
  bool gate_open();                                      // lossless: may the slot at head_ be (re)written?
  bool wait_for_room(std::chrono::nanoseconds timeout);  // gate_open(), spinning then sleeping up to timeout
  uint64_t slowest_cursor();
  // After a commit: is a reader asleep (or about to be)?
  bool sleepers_present() const {
    if (cheap_commit_) {
      // A compiler barrier keeps this load after our commit stores in program order; the CPU may still run it
      // earlier, which the sleeper's membarrier covers. relaxed: see shm/sleep_fence.h.
      std::atomic_signal_fence(std::memory_order_seq_cst);
      return header_->sleepers.load(std::memory_order_relaxed) != 0;
    }
    // seq_cst: after our seq_cst commit (or fence); a reader increments sleepers (seq_cst) and fences before
    // its last check for data, so either we see it or it sees our message.
    return header_->sleepers.load(std::memory_order_seq_cst) != 0;
  }
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
  bool woke_last_ = false;     // the last commit found the wake word armed (a hint for claim())
  uint64_t head_ = 0;
  uint64_t messages_ = 0;
  uint64_t bytes_ = 0;             // slot_->bytes: kept here, as the writer is its only writer
  SlotHeader* claimed_ = nullptr;  // the slot claim() began (at head_)
  uint64_t cached_slowest_ = 0;    // a lower bound of every active reader cursor
  uint32_t seen_subscribers_epoch_ = 0;
};

}  // namespace shmbus::shm

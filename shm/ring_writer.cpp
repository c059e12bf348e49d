#include "shm/ring_writer.h"

#include <algorithm>
#include <cstring>

#include "shm/deadline.h"
#include "shm/futex.h"
#include "shm/packed_slot.h"
#include "shm/sleep_fence.h"

namespace shmbus::shm {
namespace {
constexpr int kSpinsBeforeSleep = 200;
}

RingWriter::RingWriter(std::byte* base, const TopicGeometry& g, uint32_t index, uint32_t generation,
                       bool lossless)
    : base_(base),
      geometry_(g),
      header_(topic_header(base)),
      slot_(publisher_slot(base, g, index)),
      ring_(ring_base(base, g, index)),
      index_(index),
      generation_(generation),
      lossless_(lossless),
      cheap_commit_(register_cheap_commits()) {
  // acquire: pairs with the daemon's release when it (re)initialised this ring for us.
  head_ = slot_->head.load(std::memory_order_acquire);
  // relaxed: messages (which may lag head: see PublisherSlot) and bytes were reset by the daemon before it
  // handed the ring over, ordered by head's acquire. From now on this writer is their only writer.
  messages_ = std::max(slot_->messages.load(std::memory_order_relaxed), head_);
  bytes_ = slot_->bytes.load(std::memory_order_relaxed);
  seen_subscribers_epoch_ = header_->subscribers_epoch.load(std::memory_order_acquire);
  cached_slowest_ = slowest_cursor();
}

uint64_t RingWriter::slowest_cursor() {
  uint64_t slowest = head_;
  for (uint32_t s = 0; s < geometry_.max_subscribers; ++s) {
    // seq_cst: pairs with a reader's seq_cst cursor store followed by its load of writer_waiting (Dekker), so
    // either we see its progress or it sees that we wait. Also acquire: its reads of slots happen before
    // reuse.
    const uint64_t v = cursor(base_, geometry_, index_, s)->value.load(std::memory_order_seq_cst);
    if (v == kCursorInactive) continue;
    // A cursor of another generation belongs to a reader that has not yet noticed this ring was handed to us:
    // gate as if it were at position 0 until it catches up.
    const uint64_t pos = (v >> kGenerationShift) == (generation_ & 0xffff) ? cursor_position(v, head_) : 0;
    slowest = std::min(slowest, pos);
  }
  return slowest;
}

bool RingWriter::gate_open() {
  // acquire: pairs with the daemon's release bump after it set a joining reader's cursor.
  const uint32_t epoch = header_->subscribers_epoch.load(std::memory_order_acquire);
  if (epoch != seen_subscribers_epoch_) {
    seen_subscribers_epoch_ = epoch;
    cached_slowest_ = slowest_cursor();
  }
  if (head_ - cached_slowest_ < geometry_.depth) return true;
  cached_slowest_ = slowest_cursor();
  return head_ - cached_slowest_ < geometry_.depth;
}

bool RingWriter::wait_for_room(std::chrono::nanoseconds timeout) {
  if (!lossless_ || gate_open()) return true;
  const auto deadline = deadline_after(timeout);
  // A short spin (tens of microseconds): a reader that keeps up frees a quarter ring soon; a longer spin only
  // takes the CPU that reader needs on a small machine.
  for (int spin = 0; spin < kSpinsBeforeSleep; ++spin) {
    // Let the readers' cursor lines settle instead of pulling them back on every iteration.
    for (int i = 0; i < 8; ++i) __builtin_ia32_pause();
    if (gate_open()) return true;
  }
  for (;;) {
    const auto left = deadline - std::chrono::steady_clock::now();
    if (left <= std::chrono::nanoseconds::zero()) {
      // relaxed: a statistic.
      slot_->gate_timeouts.fetch_add(1, std::memory_order_relaxed);
      return false;
    }
    // seq_cst: Dekker with the readers' cursor store + load of writer_waiting (see slowest_cursor).
    slot_->writer_waiting.store(1, std::memory_order_seq_cst);
    bool open = gate_open();
    if (!open)
      futex_wait(&slot_->writer_waiting, 1,
                 std::min<std::chrono::nanoseconds>(left, std::chrono::milliseconds(100)));
    slot_->writer_waiting.store(0, std::memory_order_relaxed);
    if (open || gate_open()) return true;
  }
}

std::size_t RingWriter::pack_count(std::span<const std::span<const std::byte>> messages) const {
  if (!lossless_) return 1;  // a lossy reader lapped on a packed slot could not count what it lost
  uint64_t bytes = 0;        // the messages so far, each but the last rounded up to kPayloadAlignment
  std::size_t k = 0;
  for (const auto& m : messages) {
    const uint64_t with_next = round_up_payload(bytes) + m.size();
    if (packed_first_offset(k + 1) + with_next > geometry_.max_message_size) break;
    bytes = with_next;
    ++k;
  }
  return std::max<std::size_t>(k, 1);
}

uint64_t RingWriter::write_packed(std::span<const std::span<const std::byte>> messages, uint64_t publish_ns) {
  SlotHeader* slot = begin_slot();
  std::byte* const payload = slot_payload(slot);
  const auto count = static_cast<uint32_t>(messages.size());
  std::memcpy(payload, &count, sizeof count);
  uint64_t offset = packed_first_offset(count);
  uint64_t end = offset;
  uint64_t bytes = 0;
  for (uint32_t i = 0; i < count; ++i) {
    const auto size = static_cast<uint32_t>(messages[i].size());
    std::memcpy(payload + sizeof(uint32_t) * (1 + i), &size, sizeof size);
    if (size != 0) std::memcpy(payload + offset, messages[i].data(), size);
    end = offset + size;
    offset = round_up_payload(end);
    bytes += size;
  }
  // release: the sequence as in commit(); end <= max_message_size (pack_count).
  end_slot(slot, static_cast<uint32_t>(end), publish_ns, /*seq_cst=*/false, kSlotPacked, count);
  return bytes;
}

std::size_t RingWriter::write_batch(std::span<const std::span<const std::byte>> messages, uint64_t publish_ns,
                                    std::chrono::nanoseconds timeout) {
  std::size_t done = 0;
  while (done < messages.size()) {
    if (!wait_for_room(timeout)) break;
    if (woke_last_) prefetch_for_write(&header_->wake_word);  // as in claim()
    // Lossless: as many slots as the slowest reader left free (at least one: the gate is open). Lossy: at
    // most a ring, so that no slot is written twice in one batch.
    const uint64_t room = lossless_ ? geometry_.depth - (head_ - cached_slowest_) : geometry_.depth;
    // relaxed: a statistic for `stats` (loans outstanding), as in claim().
    slot_->loaned.store(head_ + 1, std::memory_order_relaxed);
    uint64_t bytes = 0;
    std::size_t written = 0;
    // Slot by slot, as claim() + commit() do, so that the daemon's invariants hold at every moment: head
    // trails the newest committed sequence by at most one (a cursor beyond head + 1 is corruption), and a
    // subscriber joining a lossless ring (epoch bump, then a read of head) sees at most one slot in flight.
    // What the batch saves is the stamp, the sleeper check and the wake-up (once per chunk), and, packed, a
    // header and a head store per message.
    for (uint64_t slots = 0; slots < room && done + written < messages.size(); ++slots) {
      // acquire: as in gate_open(); a subscriber joined: stop the chunk, wait_for_room() rescans the cursors.
      if (lossless_ && header_->subscribers_epoch.load(std::memory_order_acquire) != seen_subscribers_epoch_)
        break;
      const auto rest = messages.subspan(done + written);
      const std::size_t k = pack_count(rest);
      if (k > 1) {
        bytes += write_packed(rest.first(k), publish_ns);
        written += k;
        continue;
      }
      const std::span<const std::byte> m = rest.front();
      SlotHeader* slot = begin_slot();
      if (!m.empty()) std::memcpy(slot_payload(slot), m.data(), m.size());
      bytes += m.size();
      // release: the sequence as in commit(); the sleeper check's order comes once a chunk, below.
      end_slot(slot, static_cast<uint32_t>(m.size()), publish_ns, /*seq_cst=*/false);
      ++written;
    }
    bytes_ += bytes;
    slot_->bytes.store(bytes_, std::memory_order_relaxed);
    if (written == 0) slot_->loaned.store(0, std::memory_order_relaxed);  // head did not move past it
    // One check for sleepers (and one wake-up) a chunk. Without cheap commits, a seq_cst fence orders the
    // sequences before it (Dekker with a reader going to sleep), once for the whole chunk.
    if (!cheap_commit_) std::atomic_thread_fence(std::memory_order_seq_cst);
    if (written > 0 && sleepers_present()) {
      wake_readers();
    } else {
      woke_last_ = false;
    }
    done += written;
  }
  return done;
}

void RingWriter::wake_readers() {
  // Only an armed word (a reader asked since the last wake-up, arm_wake_word) costs a system call. The bump
  // to the next even value disarms it and changes the value every sleeper waits on. A failed exchange saw
  // another change: an even value was bumped by a waker who wakes; an odd one was re-armed: try again.
  // seq_cst (a plain load and the locked exchange on x86): after our commit and our load of sleepers, as
  // that load is (Dekker with the sleeper, which arms before its fence; shm/sleep_fence.h).
  uint32_t w = header_->wake_word.load(std::memory_order_seq_cst);
  woke_last_ = (w & 1) != 0;
  while ((w & 1) != 0) {
    if (header_->wake_word.compare_exchange_weak(w, w + 1, std::memory_order_seq_cst)) {
      futex_wake(&header_->wake_word);
      return;
    }
  }
}

}  // namespace shmbus::shm

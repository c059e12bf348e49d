// Layout of one topic's shared-memory segment: the format shared by the daemon (which creates and repairs it)
// and every publisher and subscriber (which use it). docs/shared-memory-layout.md explains it with a picture.
//
//   TopicHeader | PublisherSlot[max_publishers] | Cursor[max_publishers][max_subscribers]
//               | SubscriberSlot[max_subscribers] | Ring[max_publishers] (each: depth x slot_stride bytes)
//
// Each publisher owns one single-writer broadcast ring (no writer-writer contention, and a writer that dies
// mid-message leaves nothing to repair but its own ring). Subscribers read rings in place and keep a cursor
// per ring; the writer of a lossless topic may reuse a slot only once every active cursor has passed it.
//
// Offsets and sizes are recomputed from the settings by every process (compute_topic_geometry) and compared
// with the header before use, so a corrupted header is refused instead of followed.
#pragma once

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>

namespace shmbus::shm {

// A fixed constant, not hardware_destructive_interference_size: every binary must agree on the layout.
inline constexpr std::size_t kCacheLine = 64;
inline constexpr uint64_t kTopicMagic = 0x3150'4f54'5355'4253;  // "SBUSTOP1" little-endian
// 2: readers arm the wake word (bit 0) before sleeping; 3: packed slots, SlotHeader::first_message,
// PublisherSlot::messages; 4: SubscriberSlot::sleeping is a count, and a reader stays counted in sleepers
// between blocking takes; 5: PublisherSlot::loaned holds the lent position + 1, and messages is written only
// once it differs from head (two stores fewer a publish).
inline constexpr uint32_t kLayoutVersion = 5;
inline constexpr std::size_t kMaxTopicNameBytes = 255;

// Limits that keep every size computation far from overflow.
inline constexpr uint32_t kMaxMessageSizeLimit = 256u << 20;  // 256 MiB
inline constexpr uint32_t kMaxDepthLimit = 1u << 20;
inline constexpr uint32_t kMaxPublishersLimit = 64;
inline constexpr uint32_t kMaxSubscribersLimit = 256;
inline constexpr uint64_t kMaxSegmentBytes = 16ull << 30;

// TopicHeader::closed values.
inline constexpr uint32_t kTopicOpen = 0;
inline constexpr uint32_t kTopicClosed = 1;    // the daemon shut down: no more messages will come
inline constexpr uint32_t kTopicReshaped = 2;  // the first publisher changed the settings of a topic its
                                               // subscribers had created: they re-open it (new segment)

inline constexpr uint32_t kPolicyLossless = 0;
inline constexpr uint32_t kPolicyLossy = 1;

// A cursor value: (ring generation << 48) | position. kCursorInactive never gates the writer.
inline constexpr uint64_t kCursorInactive = ~0ull;
inline constexpr int kGenerationShift = 48;
inline constexpr uint64_t kPositionMask = (1ull << kGenerationShift) - 1;
inline constexpr uint64_t make_cursor(uint32_t generation, uint64_t position) {
  return (static_cast<uint64_t>(generation & 0xffff) << kGenerationShift) | (position & kPositionMask);
}
// The full position a cursor's low 48 bits stand for, given its ring's head: the latest position at most
// head + 1 with those bits (a reader may be one ahead of the head it reads). A cursor trails its head by at
// most a ring (2^20), so this is exact, also after 2^48 messages, where the masked value alone wraps to 0.
inline constexpr uint64_t cursor_position(uint64_t cursor, uint64_t head) {
  return head + 1 - ((head + 1 - cursor) & kPositionMask);
}
// True if the cursor's low bits place it beyond head + 1 (within 2^47 ahead): a reader cannot have passed
// what was not written yet.
inline constexpr bool cursor_ahead_of(uint64_t cursor, uint64_t head) {
  return ((cursor - (head + 1)) & kPositionMask) != 0 &&
         ((cursor - (head + 1)) & kPositionMask) < (1ull << 47);
}

// Slot sequence word: position + 1 once committed; the top bit marks a slot being (over)written.
inline constexpr uint64_t kSlotBusyBit = 1ull << 63;

// Publish-to-take latency histogram: 4 buckets per power of two of nanoseconds.
inline constexpr int kLatencyBuckets = 192;

struct alignas(kCacheLine) TopicHeader {
  // Immutable after creation (written by the daemon before any client maps the segment).
  uint64_t magic;
  uint32_t version;
  uint32_t topic_id;
  uint64_t segment_size;
  uint32_t max_message_size;
  uint32_t depth;  // power of two
  uint32_t slot_stride;
  uint32_t policy;
  uint32_t history;
  uint32_t max_publishers;
  uint32_t max_subscribers;
  uint32_t daemon_pid;
  uint64_t created_unix_ns;
  char name[kMaxTopicNameBytes + 1];  // NUL-terminated
  uint64_t publishers_offset;
  uint64_t cursors_offset;
  uint64_t subscribers_offset;
  uint64_t rings_offset;
  uint64_t ring_bytes;
  uint8_t pad0_[24];

  // Written by the daemon when a publisher slot changes state; read by subscribers on every take (stays
  // cached-clean between changes).
  alignas(kCacheLine) std::atomic<uint32_t> publishers_epoch;
  std::atomic<uint32_t> closed;  // kTopicOpen, kTopicClosed or kTopicReshaped
  uint8_t pad1_[56];

  // Read by every writer on every publish: it changes only when a reader sleeps or a subscriber joins/leaves.
  alignas(kCacheLine) std::atomic<uint32_t> wake_word;  // futex word blocking readers sleep on; bit 0: armed
  std::atomic<uint32_t> sleepers;                       // readers that may sleep on the wake word
  std::atomic<uint32_t> subscribers_epoch;              // bumped by the daemon on join/leave: writers rescan
  uint8_t pad2_[52];
};
static_assert(offsetof(TopicHeader, magic) == 0);
static_assert(offsetof(TopicHeader, segment_size) == 16);
static_assert(offsetof(TopicHeader, name) == 64);
static_assert(offsetof(TopicHeader, publishers_offset) == 320);
static_assert(offsetof(TopicHeader, ring_bytes) == 352);
static_assert(offsetof(TopicHeader, publishers_epoch) == 384);
static_assert(offsetof(TopicHeader, wake_word) == 448);
static_assert(offsetof(TopicHeader, subscribers_epoch) == 456);
static_assert(sizeof(TopicHeader) == 512);

inline constexpr uint32_t kSlotFree = 0;
inline constexpr uint32_t kSlotActive = 1;
inline constexpr uint32_t kSlotDead = 2;  // publisher gone: subscribers drain what it committed, then skip

struct alignas(kCacheLine) PublisherSlot {
  // Daemon-owned: changes only when a publisher attaches or goes away.
  std::atomic<uint32_t> state;
  std::atomic<uint32_t> generation;  // bumped each time the slot is handed to a new publisher
  uint32_t pid;
  uint32_t uid;
  uint64_t participant_id;
  uint8_t pad0_[40];

  // Writer-owned, written on every publish; readers look at it only after an overrun or when joining.
  alignas(kCacheLine) std::atomic<uint64_t> head;  // positions committed so far (= next position)
  std::atomic<uint64_t> bytes;                     // payload bytes committed
  std::atomic<uint64_t> gate_timeouts;             // lossless loans that timed out on a full ring
  // head + 1 when the slot at head was lent (claimed) and not yet committed: a loan is outstanding while
  // loaned == head + 1. Written once a claim (and a write_batch chunk), not at the commit, which moves head
  // past it; cleared when a loan is abandoned.
  std::atomic<uint64_t> loaned;
  // Messages committed so far: head counts slots, and a packed slot holds several. Written only once packing
  // made the two differ; until then it may lag and readers take head (messages_committed below).
  std::atomic<uint64_t> messages;
  uint8_t pad1b_[24];

  // Futex word a lossless writer sleeps on while the slowest reader blocks it; readers wake it.
  alignas(kCacheLine) std::atomic<uint32_t> writer_waiting;
  uint8_t pad2_[60];
};
static_assert(offsetof(PublisherSlot, head) == 64);
static_assert(offsetof(PublisherSlot, loaned) == 88);
static_assert(offsetof(PublisherSlot, messages) == 96);
static_assert(offsetof(PublisherSlot, writer_waiting) == 128);
static_assert(sizeof(PublisherSlot) == 192);

// What the writer's statistics say (relaxed reads: a gauge and a counter, racing the writer).
inline bool loan_outstanding(const PublisherSlot& p) {
  return p.loaned.load(std::memory_order_relaxed) == p.head.load(std::memory_order_relaxed) + 1;
}
inline uint64_t messages_committed(const PublisherSlot& p) {
  return std::max(p.messages.load(std::memory_order_relaxed), p.head.load(std::memory_order_relaxed));
}

// One reader's position in one ring, alone on its line: only that reader writes it (lazily), the writer reads
// it only when the ring looks full.
struct alignas(kCacheLine) Cursor {
  std::atomic<uint64_t>
      value;  // make_cursor(generation, position of the oldest slot still in use) or inactive
  uint8_t pad_[56];
};
static_assert(sizeof(Cursor) == kCacheLine);

struct alignas(kCacheLine) SubscriberSlot {
  // Daemon-owned.
  std::atomic<uint32_t> state;  // kSlotFree or kSlotActive
  uint32_t pid;
  uint32_t uid;
  // How many times this reader counts in TopicHeader::sleepers (repair after a crash): its owner's take()
  // and each EventSource thread watching it.
  std::atomic<uint32_t> sleeping;
  uint64_t participant_id;
  uint8_t pad0_[40];

  // Reader-owned statistics (relaxed: counters read by the daemon for `stats`, no ordering needed). taken,
  // dropped and bytes count over the subscriber's life: a re-opened subscriber carries them on.
  alignas(kCacheLine) std::atomic<uint64_t> taken;
  std::atomic<uint64_t> dropped;  // messages overwritten before this reader took them (lossy topics)
  std::atomic<uint64_t> bytes;
  std::atomic<uint32_t> held;  // samples currently held
  uint8_t pad1_[4];
  // The sampled publish -> take latencies (every 64th take, and a take after a lull) as a sum and a count,
  // for the daemon's mean waiting time over its metrics window. Added in former padding: a segment is
  // zero-filled, so a client built before these fields leaves them 0 (the daemon then reports no waiting
  // time) - no version bump.
  std::atomic<uint64_t> latency_sum_ns;
  std::atomic<uint64_t> latency_samples;  // stored after latency_sum_ns (release; the daemon loads acquire)
  // Sleeps that ran their whole time (to their cap or the wait's deadline) and then found a message: wake-ups
  // missed (shm/sleep_fence.h), each late by at most the cap. Also in former padding.
  std::atomic<uint64_t> late_wakeups;
  uint8_t pad2_[8];
  std::atomic<uint64_t> latency_ns[kLatencyBuckets];  // publish -> take, sampled
};
static_assert(offsetof(SubscriberSlot, taken) == 64);
static_assert(offsetof(SubscriberSlot, held) == 88);
static_assert(offsetof(SubscriberSlot, latency_sum_ns) == 96);
static_assert(offsetof(SubscriberSlot, latency_samples) == 104);
static_assert(offsetof(SubscriberSlot, late_wakeups) == 112);
static_assert(offsetof(SubscriberSlot, latency_ns) == 128);

// SlotHeader::flags: the payload holds several messages (shm/packed_slot.h), not one.
inline constexpr uint32_t kSlotPacked = 1;

// Header of every ring slot; the payload follows it directly so a small message and its sequence share lines.
struct SlotHeader {
  std::atomic<uint64_t> sequence;  // position + 1 once committed; lossy: kSlotBusyBit while being written
  uint64_t publish_ns;             // CLOCK_MONOTONIC
  uint32_t size;                   // payload bytes; readers check it against max_message_size
  uint32_t flags;                  // kSlotPacked or 0
  uint64_t first_message;  // the message sequence (1, 2, 3... per ring) of the payload's first message
};
static_assert(sizeof(SlotHeader) == 32);
inline constexpr std::size_t kPayloadAlignment = 32;

static_assert(std::atomic<uint64_t>::is_always_lock_free && std::atomic<uint32_t>::is_always_lock_free,
              "shared-memory atomics must be lock-free to work across processes");

// Sizes and offsets derived from a topic's settings; the only source of truth for indexing.
struct TopicGeometry {
  uint32_t max_message_size = 0;
  uint32_t depth = 0;
  uint32_t slot_stride = 0;
  uint32_t max_publishers = 0;
  uint32_t max_subscribers = 0;
  uint64_t publishers_offset = 0;
  uint64_t cursors_offset = 0;
  uint64_t subscribers_offset = 0;
  uint64_t rings_offset = 0;
  uint64_t ring_bytes = 0;
  uint64_t segment_size = 0;
};

// Returns nullopt (with `error` set) if the settings exceed the limits above. `depth` must be a power of two.
std::optional<TopicGeometry> compute_topic_geometry(uint32_t max_message_size, uint32_t depth,
                                                    uint32_t max_publishers, uint32_t max_subscribers,
                                                    std::string* error);

// Checks that a mapped segment of `mapped_size` bytes carries a header consistent with itself and with the
// geometry its settings imply. On success returns that geometry (copied out of shared memory).
std::optional<TopicGeometry> validate_topic_header(const TopicHeader& header, std::size_t mapped_size,
                                                   std::string* error);

// Writes a fresh header for geometry `g` into a zero-filled segment and marks every cursor inactive.
void initialize_topic_segment(std::byte* base, const TopicGeometry& g, uint32_t topic_id, uint32_t policy,
                              uint32_t history, const std::string& name, uint32_t daemon_pid);

// Typed accessors. REQUIRES: `base` maps a segment validated against `g`, and indices below the maxima.
inline TopicHeader* topic_header(std::byte* base) {
  return reinterpret_cast<TopicHeader*>(base);
}
inline PublisherSlot* publisher_slot(std::byte* base, const TopicGeometry& g, uint32_t p) {
  return reinterpret_cast<PublisherSlot*>(base + g.publishers_offset) + p;
}
inline Cursor* cursor(std::byte* base, const TopicGeometry& g, uint32_t p, uint32_t s) {
  return reinterpret_cast<Cursor*>(base + g.cursors_offset) +
         (static_cast<uint64_t>(p) * g.max_subscribers + s);
}
inline SubscriberSlot* subscriber_slot(std::byte* base, const TopicGeometry& g, uint32_t s) {
  return reinterpret_cast<SubscriberSlot*>(base + g.subscribers_offset) + s;
}
inline std::byte* ring_base(std::byte* base, const TopicGeometry& g, uint32_t p) {
  return base + g.rings_offset + static_cast<uint64_t>(p) * g.ring_bytes;
}
inline SlotHeader* ring_slot(std::byte* ring, const TopicGeometry& g, uint64_t position) {
  return reinterpret_cast<SlotHeader*>(ring +
                                       (position & (g.depth - 1)) * static_cast<uint64_t>(g.slot_stride));
}
inline std::byte* slot_payload(SlotHeader* slot) {
  return reinterpret_cast<std::byte*>(slot + 1);
}

// The most counts of one reader the daemon undoes: a take() and an EventSource thread per source watching
// it. More, and a crash leaves the topic's count high (harmless: writers load the wake word in vain); the
// cap keeps a corrupt count from taking other readers' counts away.
inline constexpr uint32_t kMaxSleeperCounts = 8;

// A reader announces that it may sleep on `h`'s wake word, and withdraws later (Subscriber::take keeps the
// count between takes, see SubscriberCore::counted_sleeper). The per-reader count lets the daemon undo the
// counts of a reader killed while counted (else every publish would load the wake word in vain).
inline void enter_sleep(TopicHeader* h, SubscriberSlot* me) {
  // seq_cst: Dekker with the writer's seq_cst commit + load of sleepers (see RingWriter::commit).
  h->sleepers.fetch_add(1, std::memory_order_seq_cst);
  // relaxed: a count for the daemon's repair, which runs only once this process is gone.
  me->sleeping.fetch_add(1, std::memory_order_relaxed);
}
// The value a reader about to sleep waits on: the wake word with its low bit set, asking the next writer for
// a wake-up. Writers wake only an armed word and disarm it as they bump it (RingWriter::wake_readers): one
// futex_wake per sleep, not one per message while a woken reader is still on its way out of the sleep.
// seq_cst: a locked RMW, ordered before the caller's fence_before_sleep() like the sleepers increment.
inline uint32_t arm_wake_word(TopicHeader* h) {
  return h->wake_word.fetch_or(1, std::memory_order_seq_cst) | 1;
}
// Wakes every reader asleep on `h`'s wake word whatever its state (the daemon, at shutdown or reclaim): moves
// it to the next even value, disarmed. Returns after the change; the caller makes the futex_wake.
// relaxed/release: a woken reader re-checks everything it sleeps for.
inline void bump_wake_word(TopicHeader* h) {
  uint32_t w = h->wake_word.load(std::memory_order_relaxed);
  while (!h->wake_word.compare_exchange_weak(w, (w | 1) + 1, std::memory_order_release,
                                             std::memory_order_relaxed)) {
  }
}
// Decrements `sleepers` unless it is already 0 (a crash repair may have raced us). relaxed: a count.
inline void decrement_sleepers(TopicHeader* h) {
  uint32_t v = h->sleepers.load(std::memory_order_relaxed);
  while (v != 0 && !h->sleepers.compare_exchange_weak(v, v - 1, std::memory_order_relaxed)) {
  }
}
// The reader's own count first, and the topic's only if the reader's was not already 0 (the daemon undid
// both, say, after it dropped this process): a reader killed between the two leaves the topic's count one
// too high (writers load the wake word in vain), never one too low (another reader's wake-ups lost).
// relaxed: counts.
inline void leave_sleep(TopicHeader* h, SubscriberSlot* me) {
  uint32_t mine = me->sleeping.load(std::memory_order_relaxed);
  while (mine != 0 && !me->sleeping.compare_exchange_weak(mine, mine - 1, std::memory_order_relaxed)) {
  }
  if (mine != 0) decrement_sleepers(h);
}

// Bucket index of a latency in the histogram, and the upper bound of a bucket in nanoseconds.
int latency_bucket(uint64_t ns);
uint64_t latency_bucket_upper_ns(int bucket);

}  // namespace shmbus::shm

// Layout of a work queue's memory: a point-to-point queue with acknowledgements, priorities and dead letters,
// shared by the daemon (which creates, recovers and reaps it) and its producers and consumers. The same bytes
// live in a POSIX shared-memory object or, for durable queues, in a file mapped MAP_SHARED.
//
//   WorkQueueHeader (one page) | EntryIndex[capacity] | Entry[capacity] (each: slot_stride bytes)
//
// Unlike a topic's broadcast ring, each message here goes to exactly one consumer and stays until that
// consumer acknowledges it, so entries change state out of order (a message can be redelivered while later
// ones are done). That bookkeeping is guarded by one process-shared lock (shm/owner_lock.h); the entry's
// payload is written and read outside it by the one process that holds the entry (WRITING or IN_FLIGHT).
//
// States of an entry: FREE -> WRITING (a producer's loan) -> READY -> IN_FLIGHT (delivered to one consumer)
// -> FREE (acked), back to READY (rejected, consumer died, visibility timeout) or DEAD (too many deliveries).
#pragma once

#include <pthread.h>

#include <atomic>
#include <cstddef>
#include <cstdint>

namespace shmbus::shm {

inline constexpr uint64_t kWorkQueueMagic = 0x3151'4b52'4f57'5342;  // "BSWORKQ1" little-endian
inline constexpr uint32_t kWorkQueueVersion = 1;
inline constexpr std::size_t kWorkQueueHeaderBytes = 4096;
inline constexpr std::size_t kEntryHeaderBytes = 128;
inline constexpr uint32_t kPriorityLevels = 10;  // 0 (lowest) .. 9 (highest)
inline constexpr uint32_t kMaxQueueCapacity = 1u << 16;
inline constexpr uint32_t kMaxQueueMessageSize = 64u << 20;

enum class EntryState : uint32_t { kFree = 0, kWriting = 1, kReady = 2, kInFlight = 3, kDead = 4 };

// WorkQueueHeader::flags
inline constexpr uint32_t kQueueDurable = 1u << 0;  // file-backed: entries carry a CRC-32 of their contents
inline constexpr uint32_t kQueueService = 1u << 1;  // requests of a service: a dead server fails the call
inline constexpr uint32_t kQueueReply = 1u << 2;    // one client's private response queue

// Entry flags
inline constexpr uint32_t kEntryErrorResponse = 1u << 0;  // a response carrying an error (status_code)

// Cumulative counters and time integrals for queueing metrics. Written only under the lock (each store is a
// plain relaxed read-modify-write: the lock serialises writers); read without it by `shmbus stats`, which
// only needs each value to be untorn (relaxed atomics).
struct QueueCounters {
  std::atomic<uint64_t> enqueued;        // commits (arrivals)
  std::atomic<uint64_t> delivered;       // pops, redeliveries included
  std::atomic<uint64_t> acked;           // departures
  std::atomic<uint64_t> rejected;        // reject() calls
  std::atomic<uint64_t> redelivered;     // returned to READY by reject, timeout or a dead consumer
  std::atomic<uint64_t> expired;         // visibility timeouts
  std::atomic<uint64_t> dead_lettered;   // moved to DEAD
  std::atomic<uint64_t> corrupt;         // entries found corrupt (bad checksum or size) and dropped
  std::atomic<uint64_t> full;            // reserve() refused: no FREE entry
  std::atomic<uint64_t> wait_ns;         // sum over deliveries of (pop - became READY)
  std::atomic<uint64_t> service_ns;      // sum over acks of (ack - pop)
  std::atomic<uint64_t> sojourn_ns;      // sum over acks of (ack - enqueue)
  std::atomic<uint64_t> ready_area;      // integral of the READY count over time (count x ns)
  std::atomic<uint64_t> in_flight_area;  // integral of the IN_FLIGHT count over time
  std::atomic<uint64_t> last_change_ns;  // when the areas were last advanced
};

struct alignas(64) WorkQueueHeader {
  // Immutable after creation.
  uint64_t magic;
  uint32_t version;
  uint32_t queue_id;
  uint64_t total_size;
  uint32_t capacity;
  uint32_t max_message_size;
  uint32_t slot_stride;
  uint32_t max_deliveries;
  uint32_t flags;
  uint32_t daemon_pid;
  uint64_t index_offset;
  uint64_t entries_offset;
  char boot_id[40];  // the boot that last recovered the queue: another boot means every holder is gone
  char name[256];

  // Guards every EntryIndex and entry metadata (shm/owner_lock.h: a word that holds its owner's thread id).
  // Where version 1 had a robust pthread mutex, whose first word is 0 when free: files keep their layout.
  std::atomic<uint32_t> lock;
  uint32_t lock_reserved[9];

  // Futex words. ready_word is bumped (release) after every transition into READY; space_word after every
  // transition into FREE. The *_sleepers counts let the waking side skip FUTEX_WAKE when nobody sleeps.
  alignas(64) std::atomic<uint32_t> ready_word;
  std::atomic<uint32_t> ready_sleepers;
  std::atomic<uint32_t> space_word;
  std::atomic<uint32_t> space_sleepers;
  std::atomic<uint32_t> closed;  // the daemon shut down: consumers stop waiting
  // Bumped by a daemon that adopts the queue from a crashed predecessor: a client that sees it change knows
  // its daemon went away and reconnects, so that the new one learns who uses the queue (0 in version 1
  // files).
  std::atomic<uint32_t> daemon_epoch;

  // Gauges, written under the lock, read anywhere (relaxed).
  alignas(64) std::atomic<uint32_t> ready;
  std::atomic<uint32_t> in_flight;
  std::atomic<uint32_t> dead;
  std::atomic<uint32_t> writing;
  std::atomic<uint32_t> consumers;  // attached consumers, maintained by the daemon
  uint32_t sync_policy;             // durable queues: 2 = every commit and ack syncs its pages (persist)
  uint64_t next_seq;                // under the lock: FIFO order of commits
  uint64_t
      next_delivery_tag;  // under the lock: identifies one delivery, so a stale ack cannot hit a redelivery
  uint32_t free_hint;     // under the lock: where the FREE search starts
  uint32_t pad1_;

  alignas(64) QueueCounters counters;
};
static_assert(sizeof(WorkQueueHeader) <= kWorkQueueHeaderBytes, "the header must fit in its page");
static_assert(std::atomic<uint64_t>::is_always_lock_free && std::atomic<uint32_t>::is_always_lock_free,
              "atomics in shared memory must be lock-free");

// The compact per-entry state scanned by pop(): 16 bytes, so a 1024-entry queue scans 16 KiB.
struct EntryIndex {
  uint32_t state;     // EntryState
  uint32_t priority;  // 0..9
  uint64_t seq;       // commit order; a redelivered entry keeps its place at the front of its level
};
static_assert(sizeof(EntryIndex) == 16);

// The header of each entry; the payload follows at kEntryHeaderBytes.
struct EntryHeader {
  uint32_t size;
  uint32_t deliveries;
  uint64_t delivery_tag;
  int32_t owner_pid;  // the producer (WRITING) or consumer (IN_FLIGHT) holding the entry
  uint32_t flags;
  uint64_t enqueue_ns;        // steady clock at commit
  uint64_t ready_ns;          // steady clock when it last became READY (commit or redelivery)
  uint64_t delivered_ns;      // steady clock of the current delivery
  uint64_t visible_deadline;  // IN_FLIGHT: steady ns after which the daemon takes it back
  uint64_t call_deadline;     // requests: steady ns after which the caller no longer waits (0: none)
  uint64_t correlation;       // request/response pairing
  uint32_t reply_queue;       // requests: the queue id the response goes to
  int32_t status_code;        // error responses: an Errc
  uint32_t crc;               // durable queues: CRC-32 of the immutable fields and the payload
  uint8_t pad_[44];
};
static_assert(sizeof(EntryHeader) == kEntryHeaderBytes);

// Decrements a sleeper count unless it is already 0 (the daemon zeroed it after a participant went: see
// WorkQueue::reset_sleepers). seq_cst: as the increment it undoes (WorkQueue::wait_ready).
inline void leave_queue_sleep(std::atomic<uint32_t>* sleepers) {
  uint32_t v = sleepers->load(std::memory_order_seq_cst);
  while (v != 0 && !sleepers->compare_exchange_weak(v, v - 1, std::memory_order_seq_cst)) {
  }
}

}  // namespace shmbus::shm

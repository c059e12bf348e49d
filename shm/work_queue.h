// A work queue in shared memory (layout: work_queue_layout.h): each message goes to exactly one consumer,
// which acknowledges or rejects it. Higher priority first, FIFO within a priority. A message whose consumer
// rejects it, dies, or holds it past its visibility deadline is delivered again; after max_deliveries it
// becomes a dead letter, kept for inspection and replay.
//
// WorkQueue is a process-local view of the mapped bytes (it owns nothing). Each method names who may call it.
// Every index and size read from the memory is checked before use: a corrupt entry is dropped and counted,
// never followed. Every lock is taken with a deadline, so a process that holds the lock cannot hang the
// others (they get kLockTimeout), and one that scribbles on it cannot crash them (shm/owner_lock.h).
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "shm/work_queue_layout.h"

namespace shmbus::shm {

struct WorkQueueGeometry {
  uint32_t capacity = 256;
  uint32_t max_message_size = 4096;
  uint32_t max_deliveries = 5;
  uint32_t flags = 0;  // kQueueDurable, kQueueService, kQueueReply
};

// Bytes a queue of this geometry needs; 0 if a field is out of range.
std::size_t work_queue_bytes(const WorkQueueGeometry& geometry);

enum class QueueOp {
  kOk,
  kEmpty,        // pop: nothing READY
  kFull,         // reserve: no FREE entry
  kStale,        // ack/reject/commit: the entry is no longer this caller's (redelivered, reaped or replayed)
  kLockTimeout,  // the lock stayed held by a live process (a stuck or hostile one) for the view's deadline
  kCorrupt,      // the entry's metadata was impossible; it was dropped and counted
  kClosed,       // commit: the daemon closed the queue first; the entry was given back, nothing sent
};

// An entry lent to a producer for writing in place.
struct ClaimedEntry {
  uint32_t index = 0;
  std::byte* payload = nullptr;
  uint32_t capacity = 0;
};

// What a producer commits beside the payload.
struct CommitInfo {
  uint32_t size = 0;
  uint32_t priority = 0;
  uint64_t correlation = 0;
  uint32_t reply_queue = 0;
  uint64_t call_deadline = 0;
  uint32_t flags = 0;
  int32_t status_code = 0;
};

// An entry delivered to a consumer: payload in place, valid until ack/reject.
struct DeliveredEntry {
  uint32_t index = 0;
  uint64_t tag = 0;
  const std::byte* payload = nullptr;
  uint32_t size = 0;
  uint32_t priority = 0;
  uint32_t deliveries = 0;
  uint64_t seq = 0;
  uint64_t enqueue_ns = 0;
  uint64_t correlation = 0;
  uint32_t reply_queue = 0;
  uint64_t call_deadline = 0;
  uint32_t flags = 0;
  int32_t status_code = 0;
};

// A dead letter copied out for inspection.
struct DeadLetter {
  uint64_t seq = 0;
  uint32_t priority = 0;
  uint32_t deliveries = 0;
  uint64_t enqueue_ns = 0;
  std::vector<std::byte> payload;
};

struct QueueSnapshot {
  uint32_t capacity = 0, ready = 0, in_flight = 0, dead = 0, writing = 0, consumers = 0;
  uint64_t enqueued = 0, delivered = 0, acked = 0, rejected = 0, redelivered = 0, expired = 0;
  uint64_t dead_lettered = 0, corrupt = 0, full = 0;
  uint64_t wait_ns = 0, service_ns = 0, sojourn_ns = 0;
  uint64_t ready_area = 0, in_flight_area = 0;  // advanced to `taken_ns`
  uint64_t taken_ns = 0;
};

struct RecoveryReport {
  uint32_t recovered = 0;  // READY or DEAD entries kept
  uint32_t requeued = 0;   // IN_FLIGHT entries of a previous boot made READY again
  uint32_t discarded = 0;  // WRITING entries of a previous boot (never committed)
  uint32_t corrupt = 0;    // entries with a bad checksum or impossible metadata, dropped
};

uint64_t steady_now_ns();

class WorkQueue {
 public:
  static constexpr std::chrono::nanoseconds kDefaultLockTimeout = std::chrono::seconds(2);
  // How long this view's calls wait for the lock while another live process holds it, before kLockTimeout.
  // The daemon's views wait briefly: its one thread serves every participant.
  void set_lock_timeout(std::chrono::nanoseconds timeout) { lock_timeout_ = timeout; }

  // Daemon: formats `size` bytes at `base` (zero-filled) as an empty queue.
  static void initialize(std::byte* base, std::size_t size, const WorkQueueGeometry& geometry,
                         uint32_t queue_id, std::string_view name, std::string_view boot_id);
  // Anyone: checks the header against `size` and its own recomputation; nullopt (and `*why`) if it is not
  // a queue of this version or its geometry does not fit.
  static std::optional<WorkQueue> attach(std::byte* base, std::size_t size, std::string* why);

  // Producer: lends a FREE entry (kFull if none). The entry is marked WRITING with `pid` as its owner, so
  // the daemon frees it if the producer dies before committing.
  QueueOp reserve(pid_t pid, ClaimedEntry* claimed);
  // Producer: makes a reserved entry READY. kStale if the daemon took it back meanwhile.
  QueueOp commit(const ClaimedEntry& claimed, pid_t pid, const CommitInfo& info);
  // Producer: gives back a reserved entry without publishing it.
  void abandon(const ClaimedEntry& claimed, pid_t pid);

  // Consumer: takes the READY entry of the highest priority (oldest first within it) and marks it IN_FLIGHT
  // until now + visibility.
  QueueOp pop(pid_t pid, std::chrono::nanoseconds visibility, DeliveredEntry* delivered);
  // Consumer: done with a delivery; the entry becomes FREE.
  QueueOp ack(uint32_t index, uint64_t tag);
  // Consumer: failed a delivery. requeue: READY again (DEAD once max_deliveries is reached); else DEAD.
  QueueOp reject(uint32_t index, uint64_t tag, bool requeue);

  // Waits (futex) until an entry may be READY / FREE, or timeout. Spurious returns are allowed: callers loop.
  void wait_ready(std::chrono::nanoseconds timeout);
  void wait_space(std::chrono::nanoseconds timeout);

  // Daemon: takes back IN_FLIGHT entries past their visibility deadline. Returns how many.
  uint32_t expire(uint64_t now_ns);
  // Daemon: a process died. Its WRITING entries become FREE; its IN_FLIGHT entries are requeued, or, when
  // `requeue` is false (service queues), freed and returned so the daemon can fail the calls.
  std::vector<DeliveredEntry> release_owner(pid_t pid, bool requeue);
  // Daemon, before anyone else maps the queue: checks every entry; with `new_boot`, entries held by
  // processes of an earlier boot are requeued (IN_FLIGHT) or discarded (WRITING) and the lock freed.
  RecoveryReport recover(bool new_boot, std::string_view boot_id);

  // Inspector: copies of up to `max` dead letters, oldest first.
  std::vector<DeadLetter> dead_letters(std::size_t max);
  // Inspector: moves dead letters back to READY (deliveries reset) / drops them. Return how many.
  uint32_t replay_dead();
  uint32_t purge_dead();

  // Daemon: the processes holding entries (WRITING or IN_FLIGHT), to check which of them still live.
  std::vector<pid_t> owners();

  QueueSnapshot snapshot() const;
  // Durable queues: writes the entry's pages and the bookkeeping back to the file (msync, MS_SYNC).
  void persist(uint32_t index) const;
  void persist_all() const;

  WorkQueueHeader* header() const { return header_; }
  uint32_t capacity() const { return layout_.capacity; }
  uint32_t max_message_size() const { return layout_.max_message_size; }
  bool closed() const;
  // Daemon, when a participant went: zeroes the sleeper counts and wakes every sleeper. A process killed in
  // a wait leaves its count behind (every later notify would pay a futex wake); the live sleepers wake, find
  // nothing, and count themselves again at their next wait.
  void reset_sleepers();
  void close();  // daemon: wakes every sleeper; consumers stop waiting

 private:
  // The header's geometry as attach() checked it. Only this copy is used to address entries: any process
  // mapping the queue can write the header, and a size or offset changed after the check must not steer us
  // out of the mapping.
  struct Layout {
    uint32_t capacity = 0;
    uint32_t max_message_size = 0;
    uint32_t slot_stride = 0;
    uint32_t max_deliveries = 0;
    uint32_t flags = 0;
    uint64_t entries_offset = 0;
  };
  WorkQueue(std::byte* base, std::size_t size, const Layout& layout, uint64_t index_offset);
  class Lock;
  EntryIndex& index_at(uint32_t i) const { return index_[i]; }
  EntryHeader* entry(uint32_t i) const;
  std::byte* payload(uint32_t i) const { return reinterpret_cast<std::byte*>(entry(i)) + kEntryHeaderBytes; }
  uint32_t checksum(uint32_t i) const;
  void advance_areas(uint64_t now);
  void set_state(uint32_t i, EntryState to, uint64_t now);
  void requeue_locked(uint32_t i, uint64_t now);  // IN_FLIGHT -> READY or DEAD
  template <typename Settle>
  QueueOp settle_delivery(uint32_t i, uint64_t tag, Settle settle, void (WorkQueue::*notify)());
  void recount_locked();
  uint32_t move_dead(EntryState to);  // every DEAD entry to READY (replay) or FREE (purge)
  void notify_ready();
  void notify_space();

  std::byte* base_ = nullptr;
  std::size_t size_ = 0;
  std::chrono::nanoseconds lock_timeout_ = kDefaultLockTimeout;
  WorkQueueHeader* header_ = nullptr;
  EntryIndex* index_ = nullptr;
  Layout layout_;
};

}  // namespace shmbus::shm

#include "shm/work_queue.h"

#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <boost/crc.hpp>
#include <cerrno>
#include <cstring>
#include <ctime>

#include "shm/futex.h"
#include "shm/owner_lock.h"

namespace shmbus::shm {
namespace {

constexpr std::size_t kAlign = 64;

std::size_t round_up(std::size_t n, std::size_t to) {
  return (n + to - 1) / to * to;
}

uint32_t stride_of(uint32_t max_message_size) {
  return static_cast<uint32_t>(round_up(kEntryHeaderBytes + max_message_size, kAlign));
}

// Relaxed read-modify-write of a counter whose writers the lock serialises: readers elsewhere only need an
// untorn value.
void add(std::atomic<uint64_t>& counter, uint64_t n) {
  counter.store(counter.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
}
void add32(std::atomic<uint32_t>& gauge, int32_t n) {
  gauge.store(static_cast<uint32_t>(static_cast<int64_t>(gauge.load(std::memory_order_relaxed)) + n),
              std::memory_order_relaxed);
}

std::atomic<uint32_t>* gauge_of(WorkQueueHeader* h, EntryState s) {
  switch (s) {
    case EntryState::kReady:
      return &h->ready;
    case EntryState::kInFlight:
      return &h->in_flight;
    case EntryState::kDead:
      return &h->dead;
    case EntryState::kWriting:
      return &h->writing;
    default:
      return nullptr;
  }
}

}  // namespace

uint64_t steady_now_ns() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1'000'000'000ull + static_cast<uint64_t>(ts.tv_nsec);
}

std::size_t work_queue_bytes(const WorkQueueGeometry& g) {
  if (g.capacity == 0 || g.capacity > kMaxQueueCapacity || g.max_message_size == 0 ||
      g.max_message_size > kMaxQueueMessageSize || g.max_deliveries == 0) {
    return 0;
  }
  const std::size_t index = round_up(sizeof(EntryIndex) * g.capacity, kAlign);
  return kWorkQueueHeaderBytes + index + static_cast<std::size_t>(stride_of(g.max_message_size)) * g.capacity;
}

// The queue's lock, taken with the view's deadline. A previous holder that died may have left the gauges
// mid-update: they are recounted from the index, whose single-word states are always whole.
class WorkQueue::Lock {
 public:
  explicit Lock(WorkQueue& q) : q_(q) {
    const LockResult r = OwnerLock::lock(&q_.header_->lock, q_.lock_timeout_);
    if (r == LockResult::kOwnerDied) q_.recount_locked();
    held_ = r != LockResult::kTimeout;
  }
  ~Lock() {
    if (held_) OwnerLock::unlock(&q_.header_->lock);
  }
  Lock(const Lock&) = delete;
  Lock& operator=(const Lock&) = delete;
  bool held() const { return held_; }

 private:
  WorkQueue& q_;
  bool held_ = false;
};

WorkQueue::WorkQueue(std::byte* base, std::size_t size, const Layout& layout, uint64_t index_offset)
    : base_(base),
      size_(size),
      header_(reinterpret_cast<WorkQueueHeader*>(base)),
      index_(reinterpret_cast<EntryIndex*>(base + index_offset)),
      layout_(layout) {}

void WorkQueue::initialize(std::byte* base, std::size_t size, const WorkQueueGeometry& g, uint32_t queue_id,
                           std::string_view name, std::string_view boot_id) {
  auto* h = new (base) WorkQueueHeader{};
  h->magic = kWorkQueueMagic;
  h->version = kWorkQueueVersion;
  h->queue_id = queue_id;
  h->total_size = size;
  h->capacity = g.capacity;
  h->max_message_size = g.max_message_size;
  h->slot_stride = stride_of(g.max_message_size);
  h->max_deliveries = g.max_deliveries;
  h->flags = g.flags;
  h->daemon_pid = static_cast<uint32_t>(getpid());
  h->index_offset = kWorkQueueHeaderBytes;
  h->entries_offset = kWorkQueueHeaderBytes + round_up(sizeof(EntryIndex) * g.capacity, kAlign);
  std::memcpy(h->name, name.data(), std::min(name.size(), sizeof h->name - 1));
  std::memcpy(h->boot_id, boot_id.data(), std::min(boot_id.size(), sizeof h->boot_id - 1));
  h->next_seq = 1;
  h->next_delivery_tag = 1;
  h->counters.last_change_ns.store(steady_now_ns(), std::memory_order_relaxed);
  h->lock.store(0, std::memory_order_relaxed);  // relaxed: nobody maps the queue before it is initialized
}

std::optional<WorkQueue> WorkQueue::attach(std::byte* base, std::size_t size, std::string* why) {
  auto fail = [&](const char* reason) {
    if (why) *why = reason;
    return std::nullopt;
  };
  if (base == nullptr || size < kWorkQueueHeaderBytes) return fail("smaller than a queue header");
  // A copy: another process may rewrite the header while we check it; we check, and keep, what we read.
  WorkQueueHeader h;
  std::memcpy(static_cast<void*>(&h), base, sizeof h);
  if (h.magic != kWorkQueueMagic) return fail("not a work queue (bad magic)");
  if (h.version != kWorkQueueVersion) return fail("work queue of another layout version");
  const WorkQueueGeometry g{h.capacity, h.max_message_size, h.max_deliveries, h.flags};
  const std::size_t need = work_queue_bytes(g);
  if (need == 0) return fail("impossible queue geometry");
  if (need > size || h.total_size != need) return fail("queue geometry does not match its size");
  const uint64_t entries_offset = kWorkQueueHeaderBytes + round_up(sizeof(EntryIndex) * g.capacity, kAlign);
  if (h.slot_stride != stride_of(g.max_message_size) || h.index_offset != kWorkQueueHeaderBytes ||
      h.entries_offset != entries_offset) {
    return fail("queue offsets do not match its geometry");
  }
  const Layout layout{g.capacity, g.max_message_size, h.slot_stride, g.max_deliveries,
                      g.flags,    entries_offset};
  return WorkQueue(base, size, layout, kWorkQueueHeaderBytes);
}

EntryHeader* WorkQueue::entry(uint32_t i) const {
  // Offsets from the validated copy (attach); i < capacity is checked by every caller.
  return reinterpret_cast<EntryHeader*>(base_ + layout_.entries_offset +
                                        static_cast<std::size_t>(i) * layout_.slot_stride);
}

uint32_t WorkQueue::checksum(uint32_t i) const {
  const EntryHeader* e = entry(i);
  boost::crc_32_type crc;
  const uint64_t fixed[] = {e->size,          index_[i].priority, index_[i].seq,
                            e->enqueue_ns,    e->correlation,     e->reply_queue,
                            e->call_deadline, e->flags,           static_cast<uint32_t>(e->status_code)};
  crc.process_bytes(fixed, sizeof fixed);
  crc.process_bytes(payload(i), std::min(e->size, layout_.max_message_size));
  return crc.checksum();
}

void WorkQueue::advance_areas(uint64_t now) {
  QueueCounters& c = header_->counters;
  const uint64_t last = c.last_change_ns.load(std::memory_order_relaxed);
  if (now <= last) return;
  const uint64_t dt = now - last;
  add(c.ready_area, dt * header_->ready.load(std::memory_order_relaxed));
  add(c.in_flight_area, dt * header_->in_flight.load(std::memory_order_relaxed));
  c.last_change_ns.store(now, std::memory_order_relaxed);
}

// Under the lock. The index word is the truth; the gauges follow it (recount_locked repairs them).
void WorkQueue::set_state(uint32_t i, EntryState to, uint64_t now) {
  advance_areas(now);
  const auto from = static_cast<EntryState>(index_[i].state);
  if (auto* g = gauge_of(header_, from)) add32(*g, -1);
  index_[i].state = static_cast<uint32_t>(to);
  if (auto* g = gauge_of(header_, to)) add32(*g, 1);
}

void WorkQueue::recount_locked() {
  uint32_t counts[5] = {};
  uint64_t max_seq = 0;
  for (uint32_t i = 0; i < layout_.capacity; ++i) {
    const uint32_t s = index_[i].state;
    if (s > static_cast<uint32_t>(EntryState::kDead)) {
      index_[i].state = static_cast<uint32_t>(EntryState::kFree);  // garbage: drop it
      add(header_->counters.corrupt, 1);
      continue;
    }
    ++counts[s];
    if (s != static_cast<uint32_t>(EntryState::kFree)) max_seq = std::max(max_seq, index_[i].seq);
  }
  header_->writing.store(counts[1], std::memory_order_relaxed);
  header_->ready.store(counts[2], std::memory_order_relaxed);
  header_->in_flight.store(counts[3], std::memory_order_relaxed);
  header_->dead.store(counts[4], std::memory_order_relaxed);
  if (header_->next_seq <= max_seq) header_->next_seq = max_seq + 1;
}

void WorkQueue::notify_ready() {
  // seq_cst bump then seq_cst sleeper check: pairs with wait_ready's sleeper increment then word load, so
  // either the waker sees the sleeper or the sleeper sees the new word (and futex_wait returns at once).
  header_->ready_word.fetch_add(1, std::memory_order_seq_cst);
  if (header_->ready_sleepers.load(std::memory_order_seq_cst) != 0) futex_wake(&header_->ready_word);
}

void WorkQueue::notify_space() {
  // Same protocol as notify_ready, for producers waiting on a full queue.
  header_->space_word.fetch_add(1, std::memory_order_seq_cst);
  if (header_->space_sleepers.load(std::memory_order_seq_cst) != 0) futex_wake(&header_->space_word);
}

QueueOp WorkQueue::reserve(pid_t pid, ClaimedEntry* claimed) {
  Lock lock(*this);
  if (!lock.held()) return QueueOp::kLockTimeout;
  const uint32_t n = layout_.capacity;
  const uint32_t start = header_->free_hint < n ? header_->free_hint : 0;
  for (uint32_t k = 0; k < n; ++k) {
    const uint32_t i = (start + k) % n;
    if (index_[i].state != static_cast<uint32_t>(EntryState::kFree)) continue;
    EntryHeader* e = entry(i);
    e->owner_pid = pid;
    e->size = 0;
    set_state(i, EntryState::kWriting, steady_now_ns());
    header_->free_hint = (i + 1) % n;
    *claimed = {i, payload(i), layout_.max_message_size};
    return QueueOp::kOk;
  }
  add(header_->counters.full, 1);
  return QueueOp::kFull;
}

QueueOp WorkQueue::commit(const ClaimedEntry& claimed, pid_t pid, const CommitInfo& info) {
  if (claimed.index >= layout_.capacity || info.size > layout_.max_message_size ||
      info.priority >= kPriorityLevels) {
    return QueueOp::kCorrupt;
  }
  const uint32_t i = claimed.index;
  {
    Lock lock(*this);
    if (!lock.held()) return QueueOp::kLockTimeout;
    EntryHeader* e = entry(i);
    if (index_[i].state != static_cast<uint32_t>(EntryState::kWriting) || e->owner_pid != pid) {
      return QueueOp::kStale;
    }
    const uint64_t now = steady_now_ns();
    // Closed under this lock (close()): a message committed now would never be delivered, its consumers
    // gone once the queue drained. relaxed: the lock orders us after close()'s store.
    if (header_->closed.load(std::memory_order_relaxed) != 0) {
      set_state(i, EntryState::kFree, now);
      return QueueOp::kClosed;
    }
    e->size = info.size;
    e->deliveries = 0;
    e->flags = info.flags;
    e->status_code = info.status_code;
    e->correlation = info.correlation;
    e->reply_queue = info.reply_queue;
    e->call_deadline = info.call_deadline;
    e->enqueue_ns = now;
    e->ready_ns = now;
    e->owner_pid = 0;
    index_[i].priority = info.priority;
    index_[i].seq = header_->next_seq++;
    if (layout_.flags & kQueueDurable) e->crc = checksum(i);
    set_state(i, EntryState::kReady, now);
    add(header_->counters.enqueued, 1);
  }
  notify_ready();
  return QueueOp::kOk;
}

void WorkQueue::abandon(const ClaimedEntry& claimed, pid_t pid) {
  if (claimed.index >= layout_.capacity) return;
  {
    Lock lock(*this);
    if (!lock.held()) return;
    const uint32_t i = claimed.index;
    if (index_[i].state != static_cast<uint32_t>(EntryState::kWriting) || entry(i)->owner_pid != pid) return;
    set_state(i, EntryState::kFree, steady_now_ns());
  }
  notify_space();
}

QueueOp WorkQueue::pop(pid_t pid, std::chrono::nanoseconds visibility, DeliveredEntry* out) {
  // Relaxed peek without the lock, so that consumers polling an empty queue do not contend with producers
  // for it. A commit this misses is seen by the next poll, or wakes the sleeper (notify_ready).
  if (header_->ready.load(std::memory_order_relaxed) == 0) return QueueOp::kEmpty;
  bool dropped = false;
  QueueOp result = QueueOp::kEmpty;
  {
    Lock lock(*this);
    if (!lock.held()) return QueueOp::kLockTimeout;
    // Relaxed: the gauge is written under this lock, which we hold.
    if (header_->ready.load(std::memory_order_relaxed) == 0) return QueueOp::kEmpty;
    uint32_t best = layout_.capacity;
    for (uint32_t i = 0; i < layout_.capacity; ++i) {
      const EntryIndex& x = index_[i];
      if (x.state != static_cast<uint32_t>(EntryState::kReady)) continue;
      if (best == layout_.capacity || x.priority > index_[best].priority ||
          (x.priority == index_[best].priority && x.seq < index_[best].seq)) {
        best = i;
      }
    }
    if (best == layout_.capacity) {
      recount_locked();  // the gauge said READY but the index holds none: repair it
      return QueueOp::kEmpty;
    }
    const uint64_t now = steady_now_ns();
    EntryHeader* e = entry(best);
    // Read once: a process ignoring the lock could grow it between a check and a second read.
    const uint32_t size = e->size;
    if (size > layout_.max_message_size || index_[best].priority >= kPriorityLevels) {
      set_state(best, EntryState::kFree, now);
      add(header_->counters.corrupt, 1);
      dropped = true;
      result = QueueOp::kCorrupt;
    } else {
      e->deliveries += 1;
      e->delivery_tag = header_->next_delivery_tag++;
      e->owner_pid = pid;
      e->delivered_ns = now;
      e->visible_deadline = now + static_cast<uint64_t>(visibility.count());
      add(header_->counters.wait_ns, now > e->ready_ns ? now - e->ready_ns : 0);
      add(header_->counters.delivered, 1);
      set_state(best, EntryState::kInFlight, now);
      *out = {best,
              e->delivery_tag,
              payload(best),
              size,
              index_[best].priority,
              e->deliveries,
              index_[best].seq,
              e->enqueue_ns,
              e->correlation,
              e->reply_queue,
              e->call_deadline,
              e->flags,
              e->status_code};
      result = QueueOp::kOk;
    }
  }
  if (dropped) notify_space();
  return result;
}

// What ack() and reject() share: under the lock, entry `i` must still be the delivery `tag` names (not
// redelivered, expired or reaped since). Runs `settle(entry, now)` on it, then wakes `notify`'s sleepers.
template <typename Settle>
QueueOp WorkQueue::settle_delivery(uint32_t i, uint64_t tag, Settle settle, void (WorkQueue::*notify)()) {
  if (i >= layout_.capacity) return QueueOp::kStale;
  {
    Lock lock(*this);
    if (!lock.held()) return QueueOp::kLockTimeout;
    EntryHeader* e = entry(i);
    if (index_[i].state != static_cast<uint32_t>(EntryState::kInFlight) || e->delivery_tag != tag) {
      return QueueOp::kStale;
    }
    settle(e, steady_now_ns());
  }
  (this->*notify)();
  return QueueOp::kOk;
}

QueueOp WorkQueue::ack(uint32_t i, uint64_t tag) {
  return settle_delivery(
      i, tag,
      [&](EntryHeader* e, uint64_t now) {
        add(header_->counters.service_ns, now > e->delivered_ns ? now - e->delivered_ns : 0);
        add(header_->counters.sojourn_ns, now > e->enqueue_ns ? now - e->enqueue_ns : 0);
        add(header_->counters.acked, 1);
        e->owner_pid = 0;
        set_state(i, EntryState::kFree, now);
      },
      &WorkQueue::notify_space);
}

void WorkQueue::requeue_locked(uint32_t i, uint64_t now) {
  EntryHeader* e = entry(i);
  e->owner_pid = 0;
  if (e->deliveries >= layout_.max_deliveries) {
    set_state(i, EntryState::kDead, now);
    add(header_->counters.dead_lettered, 1);
  } else {
    e->ready_ns = now;
    set_state(i, EntryState::kReady, now);
    add(header_->counters.redelivered, 1);
  }
}

QueueOp WorkQueue::reject(uint32_t i, uint64_t tag, bool requeue) {
  return settle_delivery(
      i, tag,
      [&](EntryHeader* e, uint64_t now) {
        add(header_->counters.rejected, 1);
        if (requeue) {
          requeue_locked(i, now);
        } else {
          e->owner_pid = 0;
          set_state(i, EntryState::kDead, now);
          add(header_->counters.dead_lettered, 1);
        }
      },
      &WorkQueue::notify_ready);
}

void WorkQueue::wait_ready(std::chrono::nanoseconds timeout) {
  if (timeout <= std::chrono::nanoseconds::zero()) return;
  // seq_cst increment, then seq_cst load of the word: pairs with notify_ready (see there).
  header_->ready_sleepers.fetch_add(1, std::memory_order_seq_cst);
  const uint32_t word = header_->ready_word.load(std::memory_order_seq_cst);
  if (header_->ready.load(std::memory_order_relaxed) == 0 && !closed())
    futex_wait(&header_->ready_word, word, timeout);
  leave_queue_sleep(&header_->ready_sleepers);
}

void WorkQueue::wait_space(std::chrono::nanoseconds timeout) {
  if (timeout <= std::chrono::nanoseconds::zero()) return;
  header_->space_sleepers.fetch_add(1, std::memory_order_seq_cst);
  const uint32_t word = header_->space_word.load(std::memory_order_seq_cst);
  const uint32_t used =
      header_->ready.load(std::memory_order_relaxed) + header_->in_flight.load(std::memory_order_relaxed) +
      header_->dead.load(std::memory_order_relaxed) + header_->writing.load(std::memory_order_relaxed);
  if (used >= layout_.capacity && !closed()) futex_wait(&header_->space_word, word, timeout);
  leave_queue_sleep(&header_->space_sleepers);
}

void WorkQueue::reset_sleepers() {
  // seq_cst, as every access to the counts and words (see notify_ready): the bumps come after the zeroing,
  // so a sleeper that loads a word from before its bump is woken by the futex_wake or fails its wait at once.
  header_->ready_sleepers.store(0, std::memory_order_seq_cst);
  header_->space_sleepers.store(0, std::memory_order_seq_cst);
  header_->ready_word.fetch_add(1, std::memory_order_seq_cst);
  header_->space_word.fetch_add(1, std::memory_order_seq_cst);
  futex_wake(&header_->ready_word);
  futex_wake(&header_->space_word);
}

uint32_t WorkQueue::expire(uint64_t now) {
  uint32_t n = 0;
  {
    Lock lock(*this);
    if (!lock.held()) return 0;
    if (header_->in_flight.load(std::memory_order_relaxed) == 0) return 0;
    for (uint32_t i = 0; i < layout_.capacity; ++i) {
      if (index_[i].state != static_cast<uint32_t>(EntryState::kInFlight)) continue;
      if (entry(i)->visible_deadline > now) continue;
      add(header_->counters.expired, 1);
      requeue_locked(i, now);
      ++n;
    }
  }
  if (n) notify_ready();
  return n;
}

std::vector<DeliveredEntry> WorkQueue::release_owner(pid_t pid, bool requeue) {
  std::vector<DeliveredEntry> taken;
  uint32_t changed = 0;
  {
    Lock lock(*this);
    if (!lock.held()) return taken;
    const uint64_t now = steady_now_ns();
    for (uint32_t i = 0; i < layout_.capacity; ++i) {
      EntryHeader* e = entry(i);
      const auto state = static_cast<EntryState>(index_[i].state);
      if (e->owner_pid != pid) continue;
      if (state == EntryState::kWriting) {
        e->owner_pid = 0;
        set_state(i, EntryState::kFree, now);
        ++changed;
      } else if (state == EntryState::kInFlight) {
        if (requeue) {
          requeue_locked(i, now);
        } else {
          taken.push_back({i, e->delivery_tag, nullptr, 0, index_[i].priority, e->deliveries, index_[i].seq,
                           e->enqueue_ns, e->correlation, e->reply_queue, e->call_deadline, e->flags,
                           e->status_code});
          e->owner_pid = 0;
          set_state(i, EntryState::kFree, now);
        }
        ++changed;
      }
    }
  }
  if (changed) {
    notify_ready();
    notify_space();
  }
  return taken;
}

RecoveryReport WorkQueue::recover(bool new_boot, std::string_view boot_id) {
  RecoveryReport report;
  if (new_boot) {
    // Nobody of an earlier boot can hold the lock any more (its thread ids mean nothing now); its word may
    // say otherwise. relaxed: the daemon recovers the queue before it hands it to anyone.
    header_->lock.store(0, std::memory_order_relaxed);
    std::memset(header_->boot_id, 0, sizeof header_->boot_id);
    std::memcpy(header_->boot_id, boot_id.data(), std::min(boot_id.size(), sizeof header_->boot_id - 1));
    header_->ready_sleepers.store(0, std::memory_order_relaxed);
    header_->space_sleepers.store(0, std::memory_order_relaxed);
  }
  header_->closed.store(0, std::memory_order_relaxed);  // a clean stop closed it; this daemon reopens it
  Lock lock(*this);
  if (!lock.held()) return report;
  const uint64_t now = steady_now_ns();
  const bool durable = layout_.flags & kQueueDurable;
  for (uint32_t i = 0; i < layout_.capacity; ++i) {
    EntryIndex& x = index_[i];
    EntryHeader* e = entry(i);
    auto state = static_cast<EntryState>(x.state);
    if (x.state > static_cast<uint32_t>(EntryState::kDead)) {
      x.state = static_cast<uint32_t>(EntryState::kFree);
      ++report.corrupt;
      continue;
    }
    if (state == EntryState::kFree) continue;
    if (state == EntryState::kWriting) {
      if (new_boot) {
        x.state = static_cast<uint32_t>(EntryState::kFree);
        ++report.discarded;
      }
      continue;
    }
    if (e->size > layout_.max_message_size || x.priority >= kPriorityLevels ||
        (durable && e->crc != checksum(i))) {
      x.state = static_cast<uint32_t>(EntryState::kFree);
      ++report.corrupt;
      continue;
    }
    if (new_boot) {
      // Steady-clock stamps of another boot mean nothing now.
      e->enqueue_ns = now;
      e->ready_ns = now;
      if (durable) e->crc = checksum(i);
      if (state == EntryState::kInFlight) {
        x.state = static_cast<uint32_t>(EntryState::kReady);
        e->owner_pid = 0;
        ++report.requeued;
      }
    }
    ++report.recovered;
  }
  add(header_->counters.corrupt, report.corrupt);
  header_->counters.last_change_ns.store(now, std::memory_order_relaxed);
  recount_locked();
  return report;
}

std::vector<DeadLetter> WorkQueue::dead_letters(std::size_t max) {
  std::vector<DeadLetter> out;
  Lock lock(*this);
  if (!lock.held()) return out;
  // The oldest `max` by sequence, found first and copied alone: copying every dead payload under the lock
  // (gigabytes, on a large queue) would hold off producers and consumers meanwhile.
  std::vector<std::pair<uint64_t, uint32_t>> dead;  // (seq, index)
  for (uint32_t i = 0; i < layout_.capacity; ++i) {
    if (index_[i].state == static_cast<uint32_t>(EntryState::kDead)) dead.emplace_back(index_[i].seq, i);
  }
  const std::size_t n = std::min(max, dead.size());
  std::partial_sort(dead.begin(), dead.begin() + static_cast<std::ptrdiff_t>(n), dead.end());
  out.reserve(n);
  for (std::size_t k = 0; k < n; ++k) {
    const uint32_t i = dead[k].second;
    const EntryHeader* e = entry(i);
    const uint32_t size = std::min(e->size, layout_.max_message_size);
    DeadLetter d{index_[i].seq, index_[i].priority, e->deliveries, e->enqueue_ns, {}};
    d.payload.assign(payload(i), payload(i) + size);
    out.push_back(std::move(d));
  }
  return out;
}

uint32_t WorkQueue::replay_dead() {
  return move_dead(EntryState::kReady);
}

uint32_t WorkQueue::purge_dead() {
  return move_dead(EntryState::kFree);
}

uint32_t WorkQueue::move_dead(EntryState to) {
  uint32_t n = 0;
  {
    Lock lock(*this);
    if (!lock.held()) return 0;
    const uint64_t now = steady_now_ns();
    for (uint32_t i = 0; i < layout_.capacity; ++i) {
      if (index_[i].state != static_cast<uint32_t>(EntryState::kDead)) continue;
      EntryHeader* e = entry(i);
      e->deliveries = 0;  // a replayed message starts its count again
      e->ready_ns = now;
      set_state(i, to, now);
      ++n;
    }
  }
  if (n) to == EntryState::kReady ? notify_ready() : notify_space();
  return n;
}

std::vector<pid_t> WorkQueue::owners() {
  std::vector<pid_t> pids;
  if (header_->writing.load(std::memory_order_relaxed) + header_->in_flight.load(std::memory_order_relaxed) ==
      0) {
    return pids;
  }
  Lock lock(*this);
  if (!lock.held()) return pids;
  for (uint32_t i = 0; i < layout_.capacity; ++i) {
    const auto state = static_cast<EntryState>(index_[i].state);
    if (state != EntryState::kWriting && state != EntryState::kInFlight) continue;
    const pid_t pid = entry(i)->owner_pid;
    if (pid > 0 && std::find(pids.begin(), pids.end(), pid) == pids.end()) pids.push_back(pid);
  }
  return pids;
}

QueueSnapshot WorkQueue::snapshot() const {
  // Relaxed loads of values written under the lock: each is untorn; together they are approximately
  // simultaneous, which is all statistics need.
  const WorkQueueHeader* h = header_;
  const QueueCounters& c = h->counters;
  QueueSnapshot s;
  auto r32 = [](const std::atomic<uint32_t>& a) { return a.load(std::memory_order_relaxed); };
  auto r64 = [](const std::atomic<uint64_t>& a) { return a.load(std::memory_order_relaxed); };
  s.capacity = h->capacity;
  s.ready = r32(h->ready);
  s.in_flight = r32(h->in_flight);
  s.dead = r32(h->dead);
  s.writing = r32(h->writing);
  s.consumers = r32(h->consumers);
  s.enqueued = r64(c.enqueued);
  s.delivered = r64(c.delivered);
  s.acked = r64(c.acked);
  s.rejected = r64(c.rejected);
  s.redelivered = r64(c.redelivered);
  s.expired = r64(c.expired);
  s.dead_lettered = r64(c.dead_lettered);
  s.corrupt = r64(c.corrupt);
  s.full = r64(c.full);
  s.wait_ns = r64(c.wait_ns);
  s.service_ns = r64(c.service_ns);
  s.sojourn_ns = r64(c.sojourn_ns);
  s.taken_ns = steady_now_ns();
  const uint64_t last = r64(c.last_change_ns);
  const uint64_t dt = s.taken_ns > last ? s.taken_ns - last : 0;
  s.ready_area = r64(c.ready_area) + dt * s.ready;
  s.in_flight_area = r64(c.in_flight_area) + dt * s.in_flight;
  return s;
}

void WorkQueue::persist(uint32_t i) const {
  if (!(layout_.flags & kQueueDurable) || i >= layout_.capacity) return;
  const auto page = static_cast<std::size_t>(sysconf(_SC_PAGESIZE));
  auto sync = [&](std::size_t offset, std::size_t length) {
    const std::size_t begin = offset / page * page;
    const std::size_t end = std::min(round_up(offset + length, page), size_);
    msync(base_ + begin, end - begin, MS_SYNC);
  };
  sync(0, kWorkQueueHeaderBytes);
  sync(kWorkQueueHeaderBytes + i * sizeof(EntryIndex), sizeof(EntryIndex));
  sync(layout_.entries_offset + static_cast<std::size_t>(i) * layout_.slot_stride,
       kEntryHeaderBytes + std::min(entry(i)->size, layout_.max_message_size));
}

void WorkQueue::persist_all() const {
  if (layout_.flags & kQueueDurable) msync(base_, size_, MS_SYNC);
}

bool WorkQueue::closed() const {
  // acquire: pairs with close()'s release; nothing else is published through it.
  return header_->closed.load(std::memory_order_acquire) != 0;
}

void WorkQueue::close() {
  {
    // Under the lock, so that a commit is either before the close (delivered: consumers drain what the queue
    // holds before they see it closed) or after it (refused with kClosed). A lock held past the deadline
    // by a live process: closed all the same, and that one commit may be lost.
    Lock lock(*this);
    // release: pairs with closed()'s acquire; nothing else is published through it.
    header_->closed.store(1, std::memory_order_release);
  }
  header_->ready_word.fetch_add(1, std::memory_order_seq_cst);
  header_->space_word.fetch_add(1, std::memory_order_seq_cst);
  futex_wake(&header_->ready_word);
  futex_wake(&header_->space_word);
}

}  // namespace shmbus::shm

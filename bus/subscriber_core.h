// What a Subscriber owns: its topic mapping, a reader per live publisher ring, and its daemon registration.
#pragma once

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <memory>
#include <vector>

#include "bus/connection.h"
#include "bus/topic_attachment.h"
#include "bus/watching_sources.h"
#include "shm/ring_reader.h"
#include "shmbus/bus.h"
#include "shmbus/options.h"

namespace shmbus::detail {

// Each on its own cache lines (and a power-of-two size: indexing is a shift).
struct alignas(shm::kCacheLine) RingFollower {
  bool present = false;
  uint64_t publisher_id = 0;
  shm::RingReader reader;
};

static_assert(sizeof(RingFollower) == 256,
              "a RingFollower outgrew its four lines: indexing is no longer a shift");

struct SubscriberCore {
  std::shared_ptr<Connection> connection;
  TopicAttachment topic;
  SubscriberOptions options;
  uint32_t slot = 0;
  uint64_t id = 0;
  bool attached = false;
  shm::SubscriberSlot* stats = nullptr;
  std::vector<RingFollower> rings;    // indexed by ring (publisher slot)
  std::vector<RingFollower*> active;  // the present ones, polled in turn
  std::size_t next = 0;               // round-robin start
  uint32_t seen_publishers_epoch = ~0u;
  uint64_t taken = 0;
  uint64_t bytes_taken = 0;  // stats->bytes, kept here: this subscriber is its only writer
  uint64_t dropped = 0;
  uint64_t late_wakeups = 0;  // see SubscriberSlot::late_wakeups
  uint32_t held = 0;
  // Samples still held from rings freed or handed on since: they no longer count against max_held_samples,
  // but they still point into this mapping, which must stay until they are released (no re-open).
  uint32_t orphan_held = 0;
  // Inside a sleep (from arming the wake word to the end of the futex wait): the mapping must not change.
  bool sleeping = false;
  // Counted in the topic's sleepers (shm::enter_sleep) since take() first slept. take() keeps the count when
  // it returns: a reader that blocks again soon then neither decrements it on its way out of a sleep (taking
  // the header's cache line back from the writer that woke it, on the path from its wake-up to its reply)
  // nor increments it before the next sleep. Writers meanwhile find a sleeper on every commit and load the
  // wake word, which stays disarmed (no wake-up) and unwritten while the reader is awake. Withdrawn by
  // detach() and before a WaitSet or an EventSource counts this reader in its own way.
  bool counted_sleeper = false;
  void count_as_sleeper() {
    if (counted_sleeper) return;
    shm::enter_sleep(topic.header(), stats);
    counted_sleeper = true;
  }
  // A lost endpoint's counts were undone by the daemon that dropped it: nothing to withdraw then.
  void stop_counting_as_sleeper() {
    if (!counted_sleeper) return;
    if (!lost.load(std::memory_order_relaxed)) shm::leave_sleep(topic.header(), stats);
    counted_sleeper = false;
  }
  // Inside a drain callback: a view points into the current mapping and a reader is mid-visit, so nothing
  // may look for messages (find_ready returns nothing) or re-open.
  bool draining = false;
  // drain's current run (Subscriber::begin_run/end_run): the ring it reads, its views, how many, and whether
  // it stopped short of what was asked (the ring had no more ready). `visiting` stays set between two runs
  // of one drain on the same ring (the next run starts there) and is null outside drain.
  static constexpr std::size_t kDrainRun = 64;
  RingFollower* visiting = nullptr;
  std::array<SampleView, kDrainRun> run_views{};
  // Where reading goes on after each view (RingReader::Message::next_sub and next_offset).
  struct RunNext {
    uint32_t sub;
    uint32_t offset;
  };
  std::array<RunNext, kDrainRun> run_next{};
  uint32_t run_views_ring = ~0u;  // the ring, generation and publisher every view's shared fields hold
  uint32_t run_views_generation = 0;
  uint64_t run_views_publisher = 0;
  std::size_t run_size = 0;
  uint64_t run_bytes = 0;
  bool run_short = false;
  // Set by the connection when a restarted daemon refused to hand this endpoint back (it lost the topic).
  std::atomic<bool> lost{false};
  std::chrono::steady_clock::time_point next_reopen{};

  ~SubscriberCore();

  // Opens (or re-opens) this subscriber's endpoint on `topic_name` with the daemon and maps the topic.
  Status attach(const std::string& topic_name);
  // Gives the endpoint back to the daemon, unless it already went away with its daemon.
  void detach();
  // The endpoint went away with its daemon in one of two ways (relaxed loads: flags; the header word shares
  // the epoch's cache line). Not attached, or a restarted daemon refused this endpoint: its slot in the
  // segment may be someone else's now, so nothing more is read through it (its cursor would mislead a
  // lossless writer).
  bool endpoint_lost() const { return !attached || lost.load(std::memory_order_relaxed); }
  // The daemon shut the topic down: publishers move on at their next loan, and what the mapping still holds
  // is ours to read first.
  bool topic_closed() const {
    return topic.header()->closed.load(std::memory_order_relaxed) == shm::kTopicClosed;
  }
  // Opens the topic again (at most every kReopenRetry while that fails), once no sample is held and not
  // while sleeping on the current mapping. Messages then flow from the daemon's new segment. True if it
  // re-attached.
  bool maybe_reopen();
  // find_ready's way out when nothing was ready (or the endpoint is lost): re-opens if due, then polls the
  // new mapping once. Out of line and cold: the common poll stays short.
  [[gnu::cold, gnu::noinline]] RingFollower* reopen_then_poll(shm::SlotHeader** slot);

  // Re-reads the publisher table after the daemon changed it (publishers_epoch moved).
  void refresh(uint32_t epoch);
  // The follower with a ready slot, or nullptr; re-opens a lost endpoint when nothing is ready. Inline
  // (below), as are count_taken and release: they run per message.
  RingFollower* find_ready(shm::SlotHeader** slot);
  // One round-robin pass over the active rings for a ready slot.
  RingFollower* poll_rings(shm::SlotHeader** slot);
  // try_take's common case: below the held limit, not in a drain, the publisher table unchanged, and a
  // single message ready at the ring whose turn it is. Fills `m` and moves the turn on. Inline: no call on
  // the path of a message.
  RingFollower* ready_in_turn(shm::RingReader::Message* m) {
    // acquire: as in check_epoch().
    if (held >= options.max_held_samples || draining || active.empty() || endpoint_lost() ||
        topic.header()->publishers_epoch.load(std::memory_order_acquire) != seen_publishers_epoch) {
      return nullptr;
    }
    RingFollower* f = active[next];  // next < active.size(): refresh resets it
    if (!f->reader.ready_single(m)) return nullptr;
    next = next + 1 == active.size() ? 0 : next + 1;
    return f;
  }
  // Takes `m` (from ready_in_turn or find_message) of `f` as a held sample and counts it: its slot's
  // position.
  [[gnu::always_inline]] uint64_t hold(RingFollower* f, const shm::RingReader::Message& m) {
    const uint64_t position = f->reader.hold(m);
    ++held;
    // relaxed: statistics for `stats`, single writer (this subscriber).
    stats->held.store(held, std::memory_order_relaxed);
    sample_latency(taken, m.publish_ns);
    count_taken(1, m.size);
    return position;
  }
  // try_take's general case, out of line: the held limit, a change of publishers, the other rings in turn,
  // laps, packed and corrupt slots, re-opening. The follower with a message (in `m`), or nullptr.
  RingFollower* find_message(shm::RingReader::Message* m);
  static void log_reattach_failure(const Status& s);
  void release(uint32_t ring, uint32_t generation, uint64_t position);
  // True if the message at `position` of that ring (and generation) has not been overwritten since.
  bool still_valid(uint32_t ring, uint32_t generation, uint64_t position) const {
    if (ring >= rings.size()) return false;
    const RingFollower& f = rings[ring];
    return f.present && f.reader.generation() == generation && f.reader.still_valid(position);
  }
  // Counts `count` messages of `bytes` taken.
  void count_taken(uint64_t count, uint64_t bytes);
  // The `index`-th message taken (0-based, over this subscriber's life) was published at `publish_ns`: sample
  // its publish-to-take latency if it is one of every kLatencySampleEvery, or if it was published a
  // kLatencySampleGapNs or more after the previous sample was read. Systematic sampling is unbiased per
  // message unless the traffic repeats with a period of 64: batches of 64 drained from their first message
  // sample that first message, and drain samples a whole run before its callbacks (Subscriber::begin_run), so
  // under a backlog the figures leave out the handling of earlier messages of a run. The time rule keeps low
  // rates sampled (every take below ~1 000 a second) at the price of a slight lean, above that, to a message
  // that ends a lull. One in 64, not 16: sampling one in
  // 16 (a clock read and a histogram update each) cost ~1.5-2 ns a message, a seventh of a drained one.
  // Inline, the test: it runs per take.
  static constexpr uint64_t kLatencySampleEvery = 64;
  static constexpr uint64_t kLatencySampleGapNs = 1'000'000;
  void sample_latency(uint64_t index, uint64_t publish_ns) {
    if (index % kLatencySampleEvery == 0 || publish_ns >= next_latency_sample_ns) [[unlikely]] {
      if (publish_ns != 0) record_latency(publish_ns);  // 0: its publisher does not stamp
    }
  }
  // Records one sample and sets next_latency_sample_ns.
  void record_latency(uint64_t publish_ns);
  uint64_t next_latency_sample_ns = 0;  // the last sample's clock reading + kLatencySampleGapNs
  void count_late_wakeup() {
    ++late_wakeups;
    // relaxed: a statistic for `stats`, single writer.
    stats->late_wakeups.store(late_wakeups, std::memory_order_relaxed);
  }
  // Counts a lapped or corrupt stretch of a ring.
  void count_dropped(uint64_t count) {
    dropped += count;
    // relaxed: a statistic read by the daemon.
    stats->dropped.store(dropped, std::memory_order_relaxed);
  }
  // True if the daemon changed the publisher table (and this subscriber followed). Inline, the test: it runs
  // on every poll.
  bool check_epoch() {
    // acquire: pairs with the daemon's release bump after it changed a publisher slot.
    const uint32_t epoch = topic.header()->publishers_epoch.load(std::memory_order_acquire);
    if (epoch == seen_publishers_epoch) [[likely]] {
      return false;
    }
    return follow_epoch(epoch);
  }
  bool follow_epoch(uint32_t epoch);

  WatchingSources watching;  // the EventSources watching this subscriber
};

// always_inline: a call here cost a fifth of a take in register saves (callgrind).
[[gnu::always_inline]] inline RingFollower* SubscriberCore::find_ready(shm::SlotHeader** slot) {
  if (draining) [[unlikely]] {
    return nullptr;  // called from a drain callback: see Subscriber::drain's REQUIRES
  }
  if (endpoint_lost()) [[unlikely]] {
    return reopen_then_poll(slot);
  }
  check_epoch();
  if (RingFollower* f = poll_rings(slot)) [[likely]] {
    return f;
  }
  // Nothing ready: only now look at the shared closed word, so that what the old mapping still holds is read
  // first and a message costs no check of it.
  if (!topic_closed()) [[likely]] {
    return nullptr;
  }
  return reopen_then_poll(slot);
}

[[gnu::always_inline]] inline RingFollower* SubscriberCore::poll_rings(shm::SlotHeader** slot) {
  const std::size_t n = active.size();
  // Round robin from `next` (< n whenever n > 0: refresh resets it), without a division per call (a division
  // costs as much as the whole take).
  std::size_t at = next;
  for (std::size_t i = 0; i < n; ++i) {
    RingFollower* f = active[at];
    at = at + 1 == n ? 0 : at + 1;
    for (;;) {
      uint64_t lost = 0;
      const auto peek = f->reader.peek(slot, &lost);
      if (lost) count_dropped(lost);
      if (peek == shm::RingReader::Peek::kReady) [[likely]] {
        next = at;
        return f;
      }
      if (peek == shm::RingReader::Peek::kCorrupt) {
        f->reader.skip();
        count_dropped(1);
        continue;
      }
      f->reader.publish_cursor_idle();  // caught up: what it consumed is free now
      break;
    }
  }
  return nullptr;
}

inline void SubscriberCore::count_taken(uint64_t count, uint64_t bytes) {
  taken += count;
  bytes_taken += bytes;
  shm::SubscriberSlot* const s = stats;  // in a local: the compiler would reload it after each store
  // relaxed: statistics for `stats`, single writer (this subscriber).
  s->taken.store(taken, std::memory_order_relaxed);
  s->bytes.store(bytes_taken, std::memory_order_relaxed);
}

inline void SubscriberCore::release(uint32_t ring, uint32_t generation, uint64_t position) {
  if (ring >= rings.size()) return;
  RingFollower& f = rings[ring];
  if (!f.present || f.reader.generation() != generation) {  // ring freed or handed to a new publisher since
    if (orphan_held > 0) --orphan_held;
    return;
  }
  f.reader.release(position);
  --held;
  // relaxed: a statistic for `stats`, single writer.
  stats->held.store(held, std::memory_order_relaxed);
  f.reader.publish_cursor();
}

}  // namespace shmbus::detail

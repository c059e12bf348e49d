#include "shmbus/event_source.h"

#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <condition_variable>
#include <cstddef>
#include <cstring>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "bus/call_table.h"
#include "bus/log.h"
#include "bus/mapping_alias.h"
#include "bus/queue_attachment.h"
#include "bus/subscriber_core.h"
#include "shm/futex.h"
#include "shm/sleep_fence.h"
#include "shmbus/rpc.h"
#include "shmbus/work_queue.h"

namespace shmbus {
namespace detail {
namespace {

// The idle thread is woken through the control word; this only bounds one futex call.
constexpr auto kIdleSleep = std::chrono::hours(1);
// As in Subscriber::take: a sleeper looks at its topics' epochs this often, since a publisher ring handed out
// (or a topic re-opened) bumps an epoch but need not change the wake word. A closed topic (its daemon
// stopped) makes the fd readable this often, so that the owner's next look re-opens it once a daemon is back:
// nothing would wake the thread on the new segment otherwise.
constexpr auto kRecheckEvery = std::chrono::milliseconds(200);

void make_readable(int event_fd) {
  const uint64_t one = 1;
  // EAGAIN only if the counter would overflow, and then the fd is readable anyway.
  [[maybe_unused]] const ssize_t n = write(event_fd, &one, sizeof one);
}

void clear_readable(int event_fd) {
  uint64_t count = 0;
  // Reading an eventfd takes its whole counter; EAGAIN when it was not readable.
  [[maybe_unused]] const ssize_t n = read(event_fd, &count, sizeof count);
}

}  // namespace

// One watched subscriber, with the background thread's own view of the two things it touches: the topic
// header (wake word, sleepers, epoch, closed) and the subscriber's slot (the `sleeping` count the daemon uses
// to undo the sleepers counts of a process killed while counted). The alias survives the subscriber unmapping
// its topic to re-open it, so the thread never reads memory the owner thread may unmap.
struct WatchedSubscriber {
  // Identity: the subscriber's core, which stays put when the Subscriber is moved, and tells us when it goes
  // (WatchingSources). Read by the owner thread only.
  SubscriberCore* core = nullptr;
  std::byte* original_base = nullptr;  // the mapping the alias was made of; a re-opened topic has another
  uint32_t slot = 0;
  bool paused = false;  // owner thread only: not counted as ready (see EventSource::set_paused)
  MappingAlias alias;
  shm::TopicHeader* header = nullptr;         // in alias
  shm::SubscriberSlot* sleep_flag = nullptr;  // in alias
  // The topic's publisher slots, in alias, and how many: of the geometry the alias was made for, which a
  // re-opened topic whose new alias could not be made no longer has.
  const shm::PublisherSlot* publishers = nullptr;
  uint32_t publisher_count = 0;

  // Owner thread: true once the subscriber re-opened its topic (a reshape, a daemon restart), i.e. the alias
  // shows the old segment. The creation time (immutable) tells segments apart even if a new mapping reuses an
  // old address.
  bool mapping_changed() const {
    return core->topic.base() != original_base || core->slot != slot ||
           core->topic.header()->created_unix_ns != header->created_unix_ns;
  }
  // Owner thread. Every subscriber is asked (a call may refresh its publishers), the paused ones do not
  // count.
  bool ready() const {
    shm::SlotHeader* slot = nullptr;
    return !paused && core->find_ready(&slot) != nullptr;  // Subscriber::has_data
  }
};

// One watched work queue: a QueueConsumer's or a Server's (requests), or a Client's (its responses). The
// thread touches only the queue's header (ready_word, ready_sleepers), through its own mapping of that page:
// the attachment keeps its mapping while the endpoint lives, and tells us when it goes (WatchingSources), but
// the thread may still be asleep on the header then.
struct WatchedQueue {
  // Identity: the QueueConsumer's or Server's request queue, or the Client's response queue, which stays put
  // when the endpoint is moved. Owner thread only.
  QueueAttachment* attachment = nullptr;
  CallTable* calls = nullptr;    // a Client's pending calls; null for consumers and servers
  bool paused = false;           // owner thread only, as WatchedSubscriber::paused
  bool closed_reported = false;  // owner thread only: the closing was reported (once)
  MappingAlias alias;
  shm::WorkQueueHeader* header = nullptr;  // in alias

  // Owner thread. A consumer or server is ready while its queue holds a READY entry (competing consumers may
  // take it first: spurious readiness); a client when a pending call has its response (which takes the
  // waiting responses off the queue, so that answers to timed-out calls do not keep it ready). A queue the
  // daemon closed is ready once.
  bool ready() {
    // A restarted daemon adopted the queue: re-claim our roles even while nothing arrives (the thread wakes
    // the owner when the epoch moves), so that it is neither retired nor refused to servers.
    attachment->follow_daemon();
    if (paused) return false;
    if (attachment->queue->closed() && !closed_reported) {
      closed_reported = true;
      return true;
    }
    if (calls != nullptr) return calls->collect();
    // relaxed: a peek, as in WorkQueue::pop; try_receive then takes the mutex that orders the entry itself.
    return attachment->queue->header()->ready.load(std::memory_order_relaxed) > 0;
  }
};

// kIdle: the thread waits for work on control_word. kArmed: it sleeps on the plan's words. kDisarming: the
// owner asked it to stop sleeping (to change the plan) and waits for kIdle. kStopping: it exits.
enum class WaiterState { kIdle, kArmed, kDisarming, kStopping };

struct EventSourceState {
  int event_fd = -1;
  std::vector<WatchedSubscriber> watched;  // owner thread only
  std::vector<WatchedQueue> queues;        // owner thread only

  // The wait of an armed thread. Written by the owner only while the thread is kIdle, read by the thread only
  // while kArmed: the mutex around the state hands it over. targets[0] is control_word (the thread fills it
  // in), then one wake word per watched subscriber; headers, sleep_flags, epochs and closed run parallel.
  // Then one ready_word per watched queue, queue_headers parallel.
  std::vector<shm::FutexWaitTarget> targets;
  std::vector<shm::TopicHeader*> headers;
  std::vector<shm::SubscriberSlot*> sleep_flags;
  std::vector<uint32_t> epochs;
  std::vector<uint32_t> closed;
  std::vector<shm::WorkQueueHeader*> queue_headers;
  std::vector<uint32_t> queue_closed;  // each queue's closed word when the plan was made
  std::vector<uint32_t> queue_epochs;  // and its daemon epoch (a restarted daemon adopted it)
  // Per watched subscriber, parallel to headers: its topic's publisher slots (in the alias) and how many,
  // where its rings' heads start in `heads` (their values when the plan was made), and its core. A plan's
  // first sleep skips the membarrier (shm/sleep_fence.h), so a commit may not wake the thread: it finds such
  // a commit by a head that grew, and sets `missed`, which the owner counts as a late wake-up
  // (collect_missed). A head that shrank was reset by the daemon (its publisher left): not a commit.
  std::vector<const shm::PublisherSlot*> publisher_slots;
  std::vector<uint32_t> publisher_counts;
  std::vector<std::size_t> heads_from;
  std::vector<uint64_t> heads;
  std::vector<SubscriberCore*> cores;  // owner thread only
  std::vector<uint8_t> missed;
  // The plan's sleeper counts are entered (by arm(), for the thread) and not yet left: handed over with the
  // plan.
  bool plan_entered = false;

  std::mutex mutex;
  std::condition_variable became_idle;
  WaiterState state = WaiterState::kIdle;  // guarded by mutex
  // A process-local futex word, bumped after each change of `state` so that the thread's futex waits return.
  // It carries no data: the thread reads `state` under the mutex.
  std::atomic<uint32_t> control_word{0};
  std::thread thread;

  // Owner thread: announce a change of `state` (made under the mutex) to the thread.
  void poke() {
    // release: with the thread's acquire load, a bump it sees follows the state change (the mutex would do).
    control_word.fetch_add(1, std::memory_order_release);
    shm::futex_wake(&control_word);
  }

  // Owner thread: returns once the thread no longer sleeps on the plan (it is kIdle), after counting the
  // wake-ups it missed (before the owner changes what it watches).
  void disarm() {
    {
      std::unique_lock lock(mutex);
      if (state == WaiterState::kArmed) {
        state = WaiterState::kDisarming;
        poke();
        became_idle.wait(lock, [&] { return state == WaiterState::kIdle; });
      }
    }
    collect_missed();
  }

  // Owner thread, the thread idle: counts the commits the thread found without being woken for them.
  void collect_missed() {
    for (std::size_t i = 0; i < missed.size(); ++i) {
      if (missed[i] != 0) cores[i]->count_late_wakeup();
      missed[i] = 0;
    }
  }

  // Notes the heads of subscriber i's rings. acquire: a commit stores its slot's sequence before the head
  // (release), so a look for data after these loads sees every message they count.
  void note_heads(std::size_t i) {
    for (uint32_t p = 0; p < publisher_counts[i]; ++p)
      heads[heads_from[i] + p] = publisher_slots[i][p].head.load(std::memory_order_acquire);
  }
  // Whether one of subscriber i's rings was committed to since note_heads(i). relaxed: only a change is
  // looked for; the owner reads the slots with acquire.
  bool heads_grew(std::size_t i) const {
    for (uint32_t p = 0; p < publisher_counts[i]; ++p) {
      if (publisher_slots[i][p].head.load(std::memory_order_relaxed) > heads[heads_from[i] + p]) return true;
    }
    return false;
  }

  // Undoes the plan's sleeper counts (entered by arm()).
  void leave_sleep_all() {
    plan_entered = false;
    for (std::size_t i = 0; i < headers.size(); ++i) shm::leave_sleep(headers[i], sleep_flags[i]);
    for (shm::WorkQueueHeader* h : queue_headers) {
      // Not below 0: the daemon may have zeroed the count (WorkQueue::reset_sleepers).
      shm::leave_queue_sleep(&h->ready_sleepers);
    }
  }

  bool any_ready() {
    bool ready = false;
    for (WatchedSubscriber& w : watched) ready = w.ready() || ready;  // every one is asked (see ready())
    for (WatchedQueue& q : queues) ready = q.ready() || ready;
    return ready;
  }

  // Owner thread: how many subscribers and queues are watched.
  std::size_t size() const { return watched.size() + queues.size(); }

  Status add_subscriber(SubscriberCore* core);
  void remove_subscriber(SubscriberCore* core);
  Status add_queue(QueueAttachment* attachment, CallTable* calls);
  void remove_queue(QueueAttachment* attachment);
  void set_queue_paused(QueueAttachment* attachment, bool paused);
  // An endpoint going away without remove(): it is no longer watched.
  void forget(const WatchingSources* watching);
  // The source goes: its endpoints no longer tell it anything.
  void leave_endpoints();

  // Owner thread: makes the fd readable if a subscriber has a message, else has the thread sleep on all of
  // them. Returns whether a message is waiting.
  bool arm();
  // Owner thread: (re)maps `w`'s topic header and slot for the thread.
  static Status alias_topic(WatchedSubscriber& w);
  Status check_capacity() const;

  // The background thread.
  void run();
  enum class WaitEnd { kPublished, kAsked };
  WaitEnd wait_armed(uint32_t seen);
};

Status EventSourceState::alias_topic(WatchedSubscriber& w) {
  const SubscriberCore& core = *w.core;
  const auto& g = core.topic.geometry;
  // Everything the thread touches lies before the slot's end: the header, then (after publisher slots and
  // cursors) the subscriber slots. The rings, possibly large, are not aliased.
  const std::size_t length = g.subscribers_offset + (core.slot + 1) * sizeof(shm::SubscriberSlot);
  auto alias =
      MappingAlias::create(core.topic.base(), length, offsetof(shm::TopicHeader, closed), shm::kTopicClosed);
  if (!alias) return alias.status();
  w.alias = std::move(alias).value();
  w.original_base = core.topic.base();
  w.slot = core.slot;
  w.header = shm::topic_header(w.alias.data());
  w.sleep_flag = shm::subscriber_slot(w.alias.data(), g, core.slot);
  w.publishers = shm::publisher_slot(w.alias.data(), g, 0);
  w.publisher_count = g.max_publishers;
  return Status::Ok();
}

Status EventSourceState::check_capacity() const {
  if (size() < EventSource::kMaxWatched) return Status::Ok();
  return {Errc::kExhausted, "an event source watches at most " + std::to_string(EventSource::kMaxWatched) +
                                " subscribers and queues; use another one"};
}

Status EventSourceState::add_subscriber(SubscriberCore* core) {
  if (core == nullptr) return {Errc::kInvalidArgument, "an empty (moved-from) subscriber"};
  if (std::any_of(watched.begin(), watched.end(), [&](auto& w) { return w.core == core; }))
    return Status::Ok();
  if (Status s = check_capacity(); !s.ok()) return s;
  WatchedSubscriber w;
  w.core = core;
  if (Status s = alias_topic(w); !s.ok()) return s;
  disarm();
  watched.push_back(std::move(w));
  core->watching.add(this);
  arm();
  return Status::Ok();
}

void EventSourceState::remove_subscriber(SubscriberCore* core) {
  auto it = std::find_if(watched.begin(), watched.end(), [&](auto& w) { return w.core == core; });
  if (it == watched.end()) return;
  disarm();
  core->watching.remove(this);
  watched.erase(it);
  arm();
}

void EventSourceState::forget(const WatchingSources* watching) {
  disarm();  // the thread no longer sleeps on the endpoint's alias, which goes with its entry
  std::erase_if(watched, [&](auto& w) { return &w.core->watching == watching; });
  std::erase_if(queues, [&](auto& q) { return &q.attachment->watching == watching; });
  arm();
}

void EventSourceState::leave_endpoints() {
  for (WatchedSubscriber& w : watched) w.core->watching.remove(this);
  for (WatchedQueue& q : queues) q.attachment->watching.remove(this);
}

void forget_watched(EventSourceState* source, const WatchingSources* watching) {
  source->forget(watching);
}

Status EventSourceState::add_queue(QueueAttachment* attachment, CallTable* calls) {
  if (attachment == nullptr) return {Errc::kInvalidArgument, "an empty (moved-from) endpoint"};
  if (std::any_of(queues.begin(), queues.end(), [&](auto& q) { return q.attachment == attachment; })) {
    return Status::Ok();
  }
  if (Status s = check_capacity(); !s.ok()) return s;
  // The header page only: everything the thread touches (WorkQueueHeader fits in kWorkQueueHeaderBytes).
  auto alias = MappingAlias::create(attachment->memory.data(), shm::kWorkQueueHeaderBytes,
                                    offsetof(shm::WorkQueueHeader, closed), 1);
  if (!alias) return alias.status();
  WatchedQueue q;
  q.attachment = attachment;
  q.calls = calls;
  q.alias = std::move(alias).value();
  q.header = reinterpret_cast<shm::WorkQueueHeader*>(q.alias.data());
  disarm();
  queues.push_back(std::move(q));
  attachment->watching.add(this);
  arm();
  return Status::Ok();
}

void EventSourceState::remove_queue(QueueAttachment* attachment) {
  auto it = std::find_if(queues.begin(), queues.end(), [&](auto& q) { return q.attachment == attachment; });
  if (it == queues.end()) return;
  disarm();  // the thread no longer sleeps on the alias, which goes with the entry
  attachment->watching.remove(this);
  queues.erase(it);
  arm();
}

void EventSourceState::set_queue_paused(QueueAttachment* attachment, bool paused) {
  auto it = std::find_if(queues.begin(), queues.end(), [&](auto& q) { return q.attachment == attachment; });
  if (it == queues.end() || it->paused == paused) return;
  it->paused = paused;
  // As for subscribers: the queue stayed in the thread's plan, so only entries made READY before count.
  if (!paused && it->ready()) make_readable(event_fd);
}

bool EventSourceState::arm() {
  if (watched.empty() && queues.empty()) return false;
  bool armed = false;
  {
    std::lock_guard lock(mutex);
    armed = state == WaiterState::kArmed;
  }
  if (armed) {
    // Still asleep since an earlier arm: its sleepers counts still make every commit wake it, so only the
    // level-triggered check is left, unless a topic was re-opened (before or by this check): then the plan
    // shows the old segment. (Queues are never re-opened: their plan cannot go stale.)
    const bool ready = any_ready();
    const bool stale =
        std::any_of(watched.begin(), watched.end(), [](auto& w) { return w.mapping_changed(); });
    if (!stale) {
      if (ready) make_readable(event_fd);
      return ready;
    }
    disarm();
  }
  // The thread is idle: the plan is ours to rebuild.
  collect_missed();
  bool ready = false;
  for (int attempt = 0;; ++attempt) {
    for (WatchedSubscriber& w : watched) {
      if (w.mapping_changed()) {
        if (Status s = alias_topic(w); !s.ok()) log().error("event source: {}", s.to_string());
      }
    }
    const std::size_t n = watched.size();
    targets.resize(n + 1 + queues.size());
    headers.resize(n);
    sleep_flags.resize(n);
    epochs.resize(n);
    closed.resize(n);
    publisher_slots.resize(n);
    publisher_counts.resize(n);
    heads_from.resize(n);
    cores.resize(n);
    missed.assign(n, 0);
    queue_headers.resize(queues.size());
    queue_closed.resize(queues.size());
    queue_epochs.resize(queues.size());
    for (std::size_t i = 0; i < n; ++i) {
      shm::TopicHeader* h = watched[i].header;
      headers[i] = h;
      sleep_flags[i] = watched[i].sleep_flag;
      // In the alias: the publisher slots lie before the subscriber slots (alias_topic).
      publisher_slots[i] = watched[i].publishers;
      publisher_counts[i] = watched[i].publisher_count;
      heads_from[i] = i == 0 ? 0 : heads_from[i - 1] + publisher_counts[i - 1];
      cores[i] = watched[i].core;
      // relaxed: hints to wake the owner, who re-reads them with acquire (SubscriberCore::check_epoch).
      epochs[i] = h->publishers_epoch.load(std::memory_order_relaxed);
      closed[i] = h->closed.load(std::memory_order_relaxed);
      // seq_cst (inside): Dekker with the writer's commit then load of sleepers and of the armed word, as in
      // Subscriber::take; a writer that commits after this sees the sleeper and changes the armed value.
      cores[i]->stop_counting_as_sleeper();  // a take() that slept counted it; the thread counts it now
      shm::enter_sleep(h, sleep_flags[i]);
      targets[i + 1] = {&h->wake_word, shm::arm_wake_word(h)};
    }
    for (std::size_t j = 0; j < queues.size(); ++j) {
      shm::WorkQueueHeader* h = queues[j].header;
      queue_headers[j] = h;
      // As WorkQueue::wait_ready: seq_cst increment of the sleepers, then seq_cst load of the word to sleep
      // on. Pairs with notify_ready's seq_cst bump of the word then seq_cst load of the sleepers: either that
      // waker sees our sleeper and wakes the word, or our load sees its bump (the futex wait returns at once,
      // and the ready() check below sees what it made READY, published by the bump).
      h->ready_sleepers.fetch_add(1, std::memory_order_seq_cst);
      targets[n + 1 + j] = {&h->ready_word, h->ready_word.load(std::memory_order_seq_cst)};
      queue_closed[j] = h->closed.load(std::memory_order_relaxed);        // relaxed: a change means "look"
      queue_epochs[j] = h->daemon_epoch.load(std::memory_order_relaxed);  // relaxed: as above
    }
    // Orders the sleepers increments before the checks for data below, as in Subscriber::take: a commit
    // either precedes them (has_data sees it) or follows them (its writer sees a sleeper and wakes). The
    // plan's first sleep goes without the membarrier, as take()'s does (shm/sleep_fence.h): this seq_cst
    // fence orders us against writers that commit seq_cst, and the queue protocol needs no more. A
    // registered writer may still miss us: the heads taken here, before the look, let the thread find its
    // commit after that short sleep (wait_armed).
    // Also after the loads of the epochs above: a ring the daemon reset (head back to 0, then an epoch bump)
    // and handed to a new publisher, whose head may grow back below what we note, shows as a changed epoch.
    std::atomic_thread_fence(std::memory_order_seq_cst);
    heads.resize(n == 0 ? 0 : heads_from[n - 1] + publisher_counts[n - 1]);  // no allocation once grown
    for (std::size_t i = 0; i < n; ++i) note_heads(i);
    ready = any_ready();
    // has_data() may have re-opened a topic (reshaped, or lost with its daemon): then the plan sleeps on the
    // old segment. Start over; if that keeps happening (or an alias cannot be made), let the owner look
    // again.
    if (!std::any_of(watched.begin(), watched.end(), [](auto& w) { return w.mapping_changed(); })) break;
    leave_sleep_all();
    if (attempt == 2) {
      make_readable(event_fd);
      return true;
    }
  }
  if (ready) {
    leave_sleep_all();
    make_readable(event_fd);
    return true;
  }
  plan_entered = true;
  {
    std::lock_guard lock(mutex);
    state = WaiterState::kArmed;
  }
  poke();
  return false;
}

void EventSourceState::run() {
  for (;;) {
    // acquire: pairs with poke(); read before the state so that a change made after this load makes the futex
    // wait below return at once (the word differs) instead of being missed.
    const uint32_t seen = control_word.load(std::memory_order_acquire);
    WaiterState now;
    {
      std::lock_guard lock(mutex);
      now = state;
      // Asked to disarm (or to stop) before it started to sleep: the owner entered sleep on our behalf when
      // it armed us, so leave, or the sleeper counts would stay raised.
      if ((now == WaiterState::kDisarming || now == WaiterState::kStopping) && plan_entered)
        leave_sleep_all();
      if (now == WaiterState::kDisarming) {
        state = WaiterState::kIdle;
        became_idle.notify_all();
        continue;
      }
    }
    if (now == WaiterState::kStopping) return;
    if (now == WaiterState::kIdle) {
      shm::futex_wait(&control_word, seen, kIdleSleep);
      continue;
    }
    const WaitEnd end = wait_armed(seen);
    // The owner entered sleep on our behalf when it armed us; we leave before anyone may change the plan.
    leave_sleep_all();
    bool asked = false;
    {
      std::lock_guard lock(mutex);
      asked = state != WaiterState::kArmed;
      if (state != WaiterState::kStopping) state = WaiterState::kIdle;
    }
    became_idle.notify_all();
    // Readable only after kIdle: an owner that reacts to the fd finds the thread ready for a new plan. When
    // the owner asked (disarm), it re-checks the subscribers itself.
    if (end == WaitEnd::kPublished && !asked) make_readable(event_fd);
  }
}

EventSourceState::WaitEnd EventSourceState::wait_armed(uint32_t seen) {
  const auto recheck_at = std::chrono::steady_clock::now() + kRecheckEvery;
  // The plan's first sleeps, for kFirstSleepCap, are unfenced (arm()); then fence_before_sleep() once, and
  // every commit sees our sleeper counts. Until then (or for good, if the membarrier fails) a commit may wake
  // nobody: the heads are looked at after every sleep, which lasts kUnfencedSleepCap at most once the first
  // window is over. A commit found so counts as a late wake-up (missed, collect_missed).
  const auto first_until = std::chrono::steady_clock::now() + shm::kFirstSleepCap;
  bool first = true;
  bool fenced = false;
  std::chrono::nanoseconds cap = shm::kFirstSleepCap;
  for (;;) {
    targets[0] = {&control_word, seen};
    const bool woken = shm::futex_wait_any(targets, cap);  // false: the whole cap ran
    const auto now = std::chrono::steady_clock::now();
    const bool recheck_closed = now >= recheck_at;
    for (std::size_t i = 0; i < headers.size(); ++i) {
      if (recheck_closed && closed[i] == shm::kTopicClosed) return WaitEnd::kPublished;
      // relaxed: any change means "look"; the owner's try_take loads the slots with acquire itself.
      if (targets[i + 1].word->load(std::memory_order_relaxed) != targets[i + 1].expected ||
          headers[i]->publishers_epoch.load(std::memory_order_relaxed) != epochs[i] ||
          headers[i]->closed.load(std::memory_order_relaxed) != closed[i]) {
        return WaitEnd::kPublished;
      }
    }
    for (std::size_t j = 0, k = headers.size() + 1; j < queue_headers.size(); ++j, ++k) {
      // relaxed: any change means "look" (a commit, a redelivery, the close); the owner's try_receive takes
      // the queue's mutex. The thread never reads the gauge: the owner decides readiness. closed too: an
      // alias replaced after a cut (shm/truncation_guard.h) reads it set, and its ready word may read as
      // armed.
      if (targets[k].word->load(std::memory_order_relaxed) != targets[k].expected ||
          queue_headers[j]->closed.load(std::memory_order_relaxed) != queue_closed[j] ||
          queue_headers[j]->daemon_epoch.load(std::memory_order_relaxed) != queue_epochs[j])
        return WaitEnd::kPublished;
    }
    // acquire: pairs with poke(), as in run().
    const uint32_t control = control_word.load(std::memory_order_acquire);
    if (control != seen) {
      std::lock_guard lock(mutex);
      if (state != WaiterState::kArmed) return WaitEnd::kAsked;
      seen = control;  // the poke that announced this very arming (run() read the word just before it)
    }
    // Fenced, a commit sees our sleeper counts and its wake-up changes a word looked at above; a sleep that
    // ran its whole cap still looks at the heads, as take() does after such a sleep (a wake-up lost anyway).
    if (fenced && woken) continue;
    // After the membarrier, every commit made before it is visible to the loads of the heads below.
    if (first && (!woken || now >= first_until)) {
      first = false;
      fenced = shm::fence_before_sleep();
    }
    bool moved = false;
    for (std::size_t i = 0; i < headers.size(); ++i) {
      if (heads_grew(i)) {
        moved = true;
        // relaxed, as above. A commit since arm() that changed no word: nobody woke us for it (unless its
        // writer is just about to: an upper bound, as late_wakeups is).
        if (targets[i + 1].word->load(std::memory_order_relaxed) == targets[i + 1].expected) missed[i] = 1;
      }
    }
    if (moved) return WaitEnd::kPublished;
    if (first) {
      cap = std::max<std::chrono::nanoseconds>(first_until - now, std::chrono::microseconds(100));
    } else {
      cap =
          fenced ? std::chrono::nanoseconds(kRecheckEvery) : std::chrono::nanoseconds(shm::kUnfencedSleepCap);
    }
  }
}

}  // namespace detail

EventSource::EventSource(std::unique_ptr<detail::EventSourceState> state) : state_(std::move(state)) {}
EventSource::EventSource(EventSource&&) noexcept = default;

EventSource& EventSource::operator=(EventSource&& other) noexcept {
  if (this != &other) {
    EventSource old(std::move(*this));  // stops our thread before taking the other's
    state_ = std::move(other.state_);
  }
  return *this;
}

EventSource::~EventSource() {
  if (!state_) return;  // moved from
  {
    std::lock_guard lock(state_->mutex);
    state_->state = detail::WaiterState::kStopping;
  }
  state_->poke();
  state_->thread.join();
  state_->leave_endpoints();
  close(state_->event_fd);
}

Result<EventSource> EventSource::create() {
  auto state = std::make_unique<detail::EventSourceState>();
  state->event_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (state->event_fd < 0) {
    return Status{Errc::kInternal, std::string("eventfd: ") + std::strerror(errno)};
  }
  try {
    state->thread = std::thread([s = state.get()] { s->run(); });
  } catch (const std::system_error& e) {
    close(state->event_fd);
    return Status{Errc::kInternal, std::string("cannot start the event source's thread: ") + e.what()};
  }
  return EventSource(std::move(state));
}

Status EventSource::add(Subscriber& subscriber) {
  return state_->add_subscriber(subscriber.core_.get());
}

void EventSource::remove(Subscriber& subscriber) {
  if (subscriber.core_) state_->remove_subscriber(subscriber.core_.get());
}

void EventSource::set_paused(Subscriber& subscriber, bool paused) {
  auto& watched = state_->watched;
  auto it = std::find_if(watched.begin(), watched.end(),
                         [&](auto& w) { return w.core == subscriber.core_.get() && w.core != nullptr; });
  if (it == watched.end() || it->paused == paused) return;
  it->paused = paused;
  // Un-paused: a paused subscriber stays in the thread's plan (its sleepers count makes any later commit wake
  // the thread), so only what was committed before needs this check.
  if (!paused && it->ready()) detail::make_readable(state_->event_fd);
}

Status EventSource::add(QueueConsumer& consumer) {
  return state_->add_queue(consumer.queue_.get(), nullptr);
}
Status EventSource::add(Server& server) {
  return state_->add_queue(server.requests_.get(), nullptr);
}
Status EventSource::add(Client& client) {
  return state_->add_queue(client.responses_.get(), client.calls_.get());
}
void EventSource::remove(QueueConsumer& consumer) {
  if (consumer.queue_) state_->remove_queue(consumer.queue_.get());
}
void EventSource::remove(Server& server) {
  if (server.requests_) state_->remove_queue(server.requests_.get());
}
void EventSource::remove(Client& client) {
  if (client.responses_) state_->remove_queue(client.responses_.get());
}
void EventSource::set_paused(QueueConsumer& consumer, bool paused) {
  if (consumer.queue_) state_->set_queue_paused(consumer.queue_.get(), paused);
}
void EventSource::set_paused(Server& server, bool paused) {
  if (server.requests_) state_->set_queue_paused(server.requests_.get(), paused);
}

int EventSource::fd() const {
  return state_->event_fd;
}

bool EventSource::rearm() {
  detail::clear_readable(state_->event_fd);
  return state_->arm();
}

std::size_t EventSource::size() const {
  return state_->size();
}

}  // namespace shmbus

#include "shmbus/event_source.h"

#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <condition_variable>
#include <cstring>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "bus/log.h"
#include "bus/mapping_alias.h"
#include "bus/subscriber_core.h"
#include "shm/futex.h"

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
// header (wake word, sleepers, epoch, closed) and the subscriber's slot (the `sleeping` flag the daemon uses
// to undo the sleepers count of a process killed while asleep). The alias survives the subscriber unmapping
// its topic to re-open it, so the thread never reads memory the owner thread may unmap.
struct WatchedSubscriber {
  Subscriber* subscriber = nullptr;
  SubscriberCore* core = nullptr;      // the subscriber's; read by the owner thread only
  std::byte* original_base = nullptr;  // the mapping the alias was made of; a re-opened topic has another
  uint32_t slot = 0;
  bool paused = false;  // owner thread only: not counted as ready (see EventSource::set_paused)
  MappingAlias alias;
  shm::TopicHeader* header = nullptr;         // in alias
  shm::SubscriberSlot* sleep_flag = nullptr;  // in alias

  // Owner thread: true once the subscriber re-opened its topic (a reshape, a daemon restart), i.e. the alias
  // shows the old segment. The creation time (immutable) tells segments apart even if a new mapping reuses an
  // old address.
  bool mapping_changed() const {
    return core->topic.base() != original_base || core->slot != slot ||
           core->topic.header()->created_unix_ns != header->created_unix_ns;
  }
  // Owner thread. Every subscriber is asked (a call may refresh its publishers), the paused ones do not
  // count.
  bool ready() const { return subscriber->has_data() && !paused; }
};

// kIdle: the thread waits for work on control_word. kArmed: it sleeps on the plan's words. kDisarming: the
// owner asked it to stop sleeping (to change the plan) and waits for kIdle. kStopping: it exits.
enum class WaiterState { kIdle, kArmed, kDisarming, kStopping };

struct EventSourceState {
  int event_fd = -1;
  std::vector<WatchedSubscriber> watched;  // owner thread only

  // The wait of an armed thread. Written by the owner only while the thread is kIdle, read by the thread only
  // while kArmed: the mutex around the state hands it over. targets[0] is control_word (the thread fills it
  // in), then one wake word per watched subscriber; headers, sleep_flags, epochs and closed run parallel.
  std::vector<shm::FutexWaitTarget> targets;
  std::vector<shm::TopicHeader*> headers;
  std::vector<shm::SubscriberSlot*> sleep_flags;
  std::vector<uint32_t> epochs;
  std::vector<uint32_t> closed;

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

  // Owner thread: returns once the thread no longer sleeps on the plan (it is kIdle).
  void disarm() {
    std::unique_lock lock(mutex);
    if (state != WaiterState::kArmed) return;
    state = WaiterState::kDisarming;
    poke();
    became_idle.wait(lock, [&] { return state == WaiterState::kIdle; });
  }

  void leave_sleep_all() {
    for (std::size_t i = 0; i < headers.size(); ++i) shm::leave_sleep(headers[i], sleep_flags[i]);
  }

  // Owner thread: makes the fd readable if a subscriber has a message, else has the thread sleep on all of
  // them. Returns whether a message is waiting.
  bool arm();
  // Owner thread: (re)maps `w`'s topic header and slot for the thread.
  static Status alias_topic(WatchedSubscriber& w);

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
  auto alias = MappingAlias::create(core.topic.base(), length);
  if (!alias) return alias.status();
  w.alias = std::move(alias).value();
  w.original_base = core.topic.base();
  w.slot = core.slot;
  w.header = shm::topic_header(w.alias.data());
  w.sleep_flag = shm::subscriber_slot(w.alias.data(), g, core.slot);
  return Status::Ok();
}

bool EventSourceState::arm() {
  if (watched.empty()) return false;
  bool armed = false;
  {
    std::lock_guard lock(mutex);
    armed = state == WaiterState::kArmed;
  }
  if (armed) {
    // Still asleep since an earlier arm: its sleepers counts still make every commit wake it, so only the
    // level-triggered check is left, unless a topic was re-opened (before or by this check): then the plan
    // shows the old segment.
    bool ready = false;
    for (WatchedSubscriber& w : watched) ready = w.ready() || ready;
    const bool stale =
        std::any_of(watched.begin(), watched.end(), [](auto& w) { return w.mapping_changed(); });
    if (!stale) {
      if (ready) make_readable(event_fd);
      return ready;
    }
    disarm();
  }
  // The thread is idle: the plan is ours to rebuild.
  bool ready = false;
  for (int attempt = 0;; ++attempt) {
    for (WatchedSubscriber& w : watched) {
      if (w.mapping_changed()) {
        if (Status s = alias_topic(w); !s.ok()) log().error("event source: {}", s.to_string());
      }
    }
    const std::size_t n = watched.size();
    targets.resize(n + 1);
    headers.resize(n);
    sleep_flags.resize(n);
    epochs.resize(n);
    closed.resize(n);
    for (std::size_t i = 0; i < n; ++i) {
      shm::TopicHeader* h = watched[i].header;
      headers[i] = h;
      sleep_flags[i] = watched[i].sleep_flag;
      // acquire: the value to sleep on, as in Subscriber::take; a writer that commits after our enter_sleep
      // below sees the sleeper and changes it.
      targets[i + 1] = {&h->wake_word, h->wake_word.load(std::memory_order_acquire)};
      // relaxed: hints to wake the owner, who re-reads them with acquire (SubscriberCore::check_epoch).
      epochs[i] = h->publishers_epoch.load(std::memory_order_relaxed);
      closed[i] = h->closed.load(std::memory_order_relaxed);
      // seq_cst (inside): Dekker with the writer's seq_cst commit then seq_cst load of sleepers.
      shm::enter_sleep(h, sleep_flags[i]);
    }
    // seq_cst: orders the sleepers increments before the checks for data below, as in Subscriber::take: a
    // commit either precedes them (has_data sees it) or follows them (its writer sees a sleeper and wakes).
    std::atomic_thread_fence(std::memory_order_seq_cst);
    ready = false;
    for (WatchedSubscriber& w : watched) ready = w.ready() || ready;
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
      if (now == WaiterState::kDisarming) {  // asked to disarm before it started to sleep
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
  for (;;) {
    targets[0] = {&control_word, seen};
    shm::futex_wait_any(targets, kRecheckEvery);
    const bool recheck_closed = std::chrono::steady_clock::now() >= recheck_at;
    for (std::size_t i = 0; i < headers.size(); ++i) {
      if (recheck_closed && closed[i] == shm::kTopicClosed) return WaitEnd::kPublished;
      // relaxed: any change means "look"; the owner's try_take loads the slots with acquire itself.
      if (targets[i + 1].word->load(std::memory_order_relaxed) != targets[i + 1].expected ||
          headers[i]->publishers_epoch.load(std::memory_order_relaxed) != epochs[i] ||
          headers[i]->closed.load(std::memory_order_relaxed) != closed[i]) {
        return WaitEnd::kPublished;
      }
    }
    // acquire: pairs with poke(), as in run().
    const uint32_t control = control_word.load(std::memory_order_acquire);
    if (control != seen) {
      std::lock_guard lock(mutex);
      if (state != WaiterState::kArmed) return WaitEnd::kAsked;
      seen = control;  // the poke that announced this very arming (run() read the word just before it)
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
  if (!subscriber.core_) return {Errc::kInvalidArgument, "an empty (moved-from) subscriber"};
  auto& watched = state_->watched;
  if (std::any_of(watched.begin(), watched.end(), [&](auto& w) { return w.subscriber == &subscriber; })) {
    return Status::Ok();
  }
  if (watched.size() >= kMaxSubscribers) {
    return {Errc::kExhausted, "an event source watches at most " + std::to_string(kMaxSubscribers) +
                                  " subscribers; use another one"};
  }
  detail::WatchedSubscriber w;
  w.subscriber = &subscriber;
  w.core = subscriber.core_.get();
  if (Status s = detail::EventSourceState::alias_topic(w); !s.ok()) return s;
  state_->disarm();
  watched.push_back(std::move(w));
  state_->arm();
  return Status::Ok();
}

void EventSource::remove(Subscriber& subscriber) {
  auto& watched = state_->watched;
  auto it =
      std::find_if(watched.begin(), watched.end(), [&](auto& w) { return w.subscriber == &subscriber; });
  if (it == watched.end()) return;
  state_->disarm();
  watched.erase(it);
  state_->arm();
}

void EventSource::set_paused(Subscriber& subscriber, bool paused) {
  auto& watched = state_->watched;
  auto it =
      std::find_if(watched.begin(), watched.end(), [&](auto& w) { return w.subscriber == &subscriber; });
  if (it == watched.end() || it->paused == paused) return;
  it->paused = paused;
  // Un-paused: a paused subscriber stays in the thread's plan (its sleepers count makes any later commit wake
  // the thread), so only what was committed before needs this check.
  if (!paused && it->ready()) detail::make_readable(state_->event_fd);
}

int EventSource::fd() const {
  return state_->event_fd;
}

bool EventSource::rearm() {
  detail::clear_readable(state_->event_fd);
  return state_->arm();
}

std::size_t EventSource::size() const {
  return state_->watched.size();
}

}  // namespace shmbus

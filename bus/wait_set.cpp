#include "shmbus/wait_set.h"

#include <algorithm>

#include "bus/subscriber_core.h"
#include "shm/deadline.h"
#include "shm/futex.h"
#include "shm/sleep_fence.h"

namespace shmbus {

void WaitSet::add(Subscriber& subscriber) {
  if (std::find(subscribers_.begin(), subscribers_.end(), &subscriber) == subscribers_.end()) {
    subscribers_.push_back(&subscriber);
  }
}

void WaitSet::remove(Subscriber& subscriber) {
  std::erase(subscribers_, &subscriber);
}

void WaitSet::notify() {
  // release: what the notifier did before (queued work) is visible to the waiter that sees the new count.
  notifications_.fetch_add(1, std::memory_order_release);
  shm::futex_wake(&notifications_);
}

bool WaitSet::notified() {
  // acquire: pairs with notify()'s release.
  const uint32_t n = notifications_.load(std::memory_order_acquire);
  if (n == seen_notifications_) return false;
  seen_notifications_ = n;
  return true;
}

std::vector<Subscriber*> WaitSet::wait(std::chrono::nanoseconds timeout) {
  std::vector<Subscriber*> ready;
  auto collect = [&] {
    for (Subscriber* s : subscribers_) {
      if (s->has_data()) ready.push_back(s);
    }
    return !ready.empty();
  };
  if (collect() || notified()) return ready;
  const auto start = std::chrono::steady_clock::now();
  const auto deadline = shm::deadline_after(start, timeout);
  const auto spin_until = shm::deadline_after(start, std::min<std::chrono::nanoseconds>(timeout, spin_));
  // Read the clock every few polls only: on a VM a clock read costs as much as a poll of a few rings.
  for (unsigned polls = 1; spin_.count() > 0; ++polls) {
    if (collect() || notified()) return ready;
    if (polls % 16 == 0 && std::chrono::steady_clock::now() >= spin_until) break;
  }
  // One futex_waitv takes kMaxWaitTargets words: notifications_ and the first topics. Topics beyond them are
  // polled every millisecond while we sleep (the cap below). Kept per thread: a wait that sleeps allocates
  // nothing once the set has been waited on at its size (the bridge's outbound thread waits per wake-up).
  const std::size_t slept_on = std::min(subscribers_.size(), shm::kMaxWaitTargets - 1);
  const bool polled_too = slept_on < subscribers_.size();
  thread_local std::vector<shm::FutexWaitTarget> targets;
  targets.resize(slept_on + 1);
  shm::SleepFence fence;
  for (;;) {
    // No time left (wait(0), say): one last look, without the sleep protocol and its membarrier.
    if (std::chrono::steady_clock::now() >= deadline) {
      collect();
      return ready;
    }
    for (std::size_t i = 0; i < slept_on; ++i) {
      shm::TopicHeader* h = subscribers_[i]->core_->topic.header();
      // The same sleep protocol as Subscriber::take, once per topic, but counted for this sleep only.
      subscribers_[i]->core_->stop_counting_as_sleeper();
      shm::enter_sleep(h, subscribers_[i]->core_->stats);
      targets[i] = {&h->wake_word, shm::arm_wake_word(h)};
      subscribers_[i]->core_->sleeping = true;  // the mapping must stay until leave_sleep
    }
    // A notify() from here on changes the word before or while we sleep on it: futex_waitv returns at once.
    targets.back() = {&notifications_, seen_notifications_};
    // See shm/sleep_fence.h. Topics beyond the futex_waitv limit are polled: then every sleep is short.
    std::chrono::nanoseconds cap = fence.before_sleep(std::chrono::milliseconds(200));
    if (polled_too) cap = std::min<std::chrono::nanoseconds>(cap, shm::kUnfencedSleepCap);
    const bool found = collect() || notified();
    const auto left = deadline - std::chrono::steady_clock::now();
    bool late = false;  // slept the whole time: what is ready now was not woken for (late_wakeups)
    if (!found && left > std::chrono::nanoseconds::zero()) {
      const auto sleep = std::min<std::chrono::nanoseconds>(left, cap);
      // Polled topics are never woken: finding them ready after a full sleep is no missed wake-up.
      late = !shm::futex_wait_any(targets, sleep) && !polled_too;
    }
    for (std::size_t i = 0; i < slept_on; ++i) {
      Subscriber* s = subscribers_[i];
      shm::leave_sleep(s->core_->topic.header(), s->core_->stats);
      s->core_->sleeping = false;
    }
    if (!found && collect()) {
      if (late) {
        for (Subscriber* s : ready) s->core_->count_late_wakeup();
      }
      return ready;
    }
    if (found || notified() || std::chrono::steady_clock::now() >= deadline) return ready;
  }
}

}  // namespace shmbus

#include "shmbus/wait_set.h"

#include <algorithm>

#include "bus/subscriber_core.h"
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

std::vector<Subscriber*> WaitSet::wait(std::chrono::nanoseconds timeout) {
  std::vector<Subscriber*> ready;
  auto collect = [&] {
    for (Subscriber* s : subscribers_) {
      if (s->has_data()) ready.push_back(s);
    }
    return !ready.empty();
  };
  if (collect() || subscribers_.empty()) return ready;
  const auto start = std::chrono::steady_clock::now();
  const auto deadline = start + timeout;
  const auto spin_until = start + std::min<std::chrono::nanoseconds>(timeout, spin_);
  // Read the clock every few polls only: on a VM a clock read costs as much as a poll of a few rings.
  for (unsigned polls = 1; spin_.count() > 0; ++polls) {
    if (collect()) return ready;
    if (polls % 16 == 0 && std::chrono::steady_clock::now() >= spin_until) break;
  }
  std::vector<shm::FutexWaitTarget> targets(subscribers_.size());
  for (;;) {
    // No time left (wait(0), say): one last look, without the sleep protocol and its membarrier.
    if (std::chrono::steady_clock::now() >= deadline) {
      collect();
      return ready;
    }
    for (std::size_t i = 0; i < subscribers_.size(); ++i) {
      shm::TopicHeader* h = subscribers_[i]->core_->topic.header();
      // The same sleep protocol as Subscriber::take, once per topic.
      shm::enter_sleep(h, subscribers_[i]->core_->stats);
      targets[i] = {&h->wake_word, shm::arm_wake_word(h)};
      subscribers_[i]->core_->sleeping = true;  // the mapping must stay until leave_sleep
    }
    const bool fenced = shm::fence_before_sleep();  // see shm/sleep_fence.h
    const bool found = collect();
    const auto left = deadline - std::chrono::steady_clock::now();
    if (!found && left > std::chrono::nanoseconds::zero()) {
      const std::chrono::nanoseconds cap =
          fenced ? std::chrono::nanoseconds(std::chrono::milliseconds(200)) : shm::kUnfencedSleepCap;
      shm::futex_wait_any(targets, std::min<std::chrono::nanoseconds>(left, cap));
    }
    for (Subscriber* s : subscribers_) {
      shm::leave_sleep(s->core_->topic.header(), s->core_->stats);
      s->core_->sleeping = false;
    }
    if (found || collect() || std::chrono::steady_clock::now() >= deadline) return ready;
  }
}

}  // namespace shmbus

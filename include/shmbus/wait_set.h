// Waits on several subscribers at once from one thread.
#pragma once

#include <atomic>
#include <chrono>
#include <vector>

#include "shmbus/bus.h"

namespace shmbus {

class WaitSet {
 public:
  // `spin`: how long wait() busy-polls before sleeping (as SubscriberOptions::spin): a message that comes
  // within it costs no futex wake-up on either side.
  explicit WaitSet(std::chrono::microseconds spin = std::chrono::microseconds(50)) : spin_(spin) {}

  // REQUIRES: `subscriber` outlives this WaitSet (or is removed first).
  void add(Subscriber& subscriber);
  void remove(Subscriber& subscriber);

  // Returns the subscribers that have a message, waiting up to `timeout` for at least one (empty on timeout).
  // Sleeps on all their topics' futex words at once (futex_waitv) after a short spin. Returns early, with
  // whatever is ready (possibly nothing), after a notify() made since the previous wait() returned. An empty
  // set waits for a notify() or the timeout. futex_waitv takes 127 topics: beyond them, a sleeping wait()
  // wakes every millisecond to poll the rest.
  std::vector<Subscriber*> wait(std::chrono::nanoseconds timeout);

  // From any thread: wakes the thread in wait(), or makes the next wait() return at once, so that it can
  // look at work of its own (a queue another thread fills). One system call.
  void notify();

 private:
  bool notified();  // a notify() since the previous wait() returned; marks it seen

  std::vector<Subscriber*> subscribers_;
  std::chrono::microseconds spin_;
  // Bumped by notify(); a futex word of its own, slept on beside the topics' wake words.
  std::atomic<uint32_t> notifications_{0};
  uint32_t seen_notifications_ = 0;  // the waiting thread's: the count when wait() last returned
};

}  // namespace shmbus

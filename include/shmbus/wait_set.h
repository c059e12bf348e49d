// Waits on several subscribers at once from one thread.
#pragma once

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
  // Sleeps on all their topics' futex words at once (futex_waitv) after a short spin.
  std::vector<Subscriber*> wait(std::chrono::nanoseconds timeout);

 private:
  std::vector<Subscriber*> subscribers_;
  std::chrono::microseconds spin_;
};

}  // namespace shmbus

// The bridge threads' idle_spin ([network] idle_spin_us): for that long after the last message, a thread
// polls instead of sleeping, and yields the CPU between polls so that the threads it feeds (ZeroMQ's I/O
// thread, the local subscribers) run at once on a busy machine. Zero: never spins.
//
// Thread safety: one per thread.
#pragma once

#include <sched.h>

#include <algorithm>
#include <chrono>

namespace shmbus::bridge {

class IdleSpin {
 public:
  using Clock = std::chrono::steady_clock;
  explicit IdleSpin(std::chrono::microseconds length) : length_(length) {}

  bool enabled() const { return length_.count() > 0; }
  // A message went through: spin until `length` from now.
  void extend() {
    if (enabled()) until_ = Clock::now() + length_;
  }
  // Within the spin now.
  bool active() const { return enabled() && Clock::now() < until_; }
  // The end of the spin, or `deadline` if sooner.
  Clock::time_point until(Clock::time_point deadline) const { return std::min(until_, deadline); }
  // Between two polls of the spin.
  static void yield() { sched_yield(); }

 private:
  std::chrono::microseconds length_;
  Clock::time_point until_{};
};

}  // namespace shmbus::bridge

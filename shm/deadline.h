// Deadlines that saturate: a "forever" timeout (nanoseconds::max()) gives the clock's last time point
// instead of a signed overflow into the past (which would turn a wait for ever into no wait at all).
#pragma once

#include <chrono>

namespace shmbus::shm {

// `timeout` after `start`; `start` if the timeout is zero or negative.
inline std::chrono::steady_clock::time_point deadline_after(std::chrono::steady_clock::time_point start,
                                                            std::chrono::nanoseconds timeout) {
  using TimePoint = std::chrono::steady_clock::time_point;
  if (timeout <= std::chrono::nanoseconds::zero()) return start;
  if (timeout >= TimePoint::max() - start) return TimePoint::max();
  return start + timeout;
}

// `timeout` from now.
inline std::chrono::steady_clock::time_point deadline_after(std::chrono::nanoseconds timeout) {
  return deadline_after(std::chrono::steady_clock::now(), timeout);
}

}  // namespace shmbus::shm

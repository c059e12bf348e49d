// At most one log line per interval for a condition that can recur on every message (no memory for a frame,
// say): the first occurrence is logged at once, later ones within the interval are only counted, and the next
// line says how many were held back. The counters the bridge publishes count every occurrence; this only
// keeps the log readable and cheap.
//
// Thread safety: one per thread.
#pragma once

#include <chrono>
#include <cstdint>

namespace shmbus::bridge {

class LogThrottle {
 public:
  using Clock = std::chrono::steady_clock;
  explicit LogThrottle(Clock::duration interval = std::chrono::seconds(1)) : interval_(interval) {}

  // True if a line may be written now; then *held_back is how many occurrences since the last line were not
  // logged. False: this occurrence is counted for the next line.
  bool allow(Clock::time_point now, uint64_t* held_back) {
    if (logged_ && now - last_ < interval_) {
      ++held_back_;
      return false;
    }
    logged_ = true;
    last_ = now;
    *held_back = held_back_;
    held_back_ = 0;
    return true;
  }

 private:
  Clock::duration interval_;
  Clock::time_point last_{};
  bool logged_ = false;
  uint64_t held_back_ = 0;
};

}  // namespace shmbus::bridge

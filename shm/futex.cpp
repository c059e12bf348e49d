#include "shm/futex.h"

#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <ctime>
#include <vector>

namespace shmbus::shm {
namespace {

timespec to_timespec(std::chrono::nanoseconds d) {
  timespec ts{};
  ts.tv_sec = static_cast<time_t>(d.count() / 1'000'000'000);
  ts.tv_nsec = static_cast<long>(d.count() % 1'000'000'000);
  return ts;
}

uint32_t* raw(std::atomic<uint32_t>* word) {
  return reinterpret_cast<uint32_t*>(word);
}

#ifndef SYS_futex_waitv
constexpr long SYS_futex_waitv = 449;
#endif
#ifndef FUTEX_32
constexpr unsigned FUTEX_32 = 2;
struct futex_waitv {
  uint64_t val;
  uint64_t uaddr;
  uint32_t flags;
  uint32_t __reserved;
};
#endif

}  // namespace

bool futex_wait(std::atomic<uint32_t>* word, uint32_t expected, std::chrono::nanoseconds timeout) {
  if (timeout.count() <= 0) return false;
  const timespec ts = to_timespec(timeout);
  const long rc = syscall(SYS_futex, raw(word), FUTEX_WAIT, expected, &ts, nullptr, 0);
  return !(rc == -1 && errno == ETIMEDOUT);
}

void futex_wake(std::atomic<uint32_t>* word, int count) {
  syscall(SYS_futex, raw(word), FUTEX_WAKE, count, nullptr, nullptr, 0);
}

bool futex_wait_any(std::span<const FutexWaitTarget> targets, std::chrono::nanoseconds timeout) {
  if (timeout.count() <= 0 || targets.empty()) return false;
  static std::atomic<bool> waitv_missing{false};  // relaxed: a cache of a kernel fact, any value is safe
  // A sleep cut short by a cap below ends as a wake-up would (true): the caller's whole timeout did not run.
  const std::chrono::nanoseconds asked = timeout;
  if (targets.size() > kMaxWaitTargets) {
    targets = targets.first(kMaxWaitTargets);
    timeout = std::min<std::chrono::nanoseconds>(timeout, std::chrono::milliseconds(1));
  }
  if (!waitv_missing.load(std::memory_order_relaxed)) {
    std::array<struct futex_waitv, kMaxWaitTargets> waiters;  // on the stack: no allocation per sleep
    for (size_t i = 0; i < targets.size(); ++i) {
      waiters[i] = {};
      waiters[i].val = targets[i].expected;
      waiters[i].uaddr = reinterpret_cast<uintptr_t>(raw(targets[i].word));
      waiters[i].flags = FUTEX_32;
    }
    // futex_waitv takes an absolute CLOCK_MONOTONIC deadline.
    timespec now{};
    clock_gettime(CLOCK_MONOTONIC, &now);
    const auto since_boot = std::chrono::seconds(now.tv_sec) + std::chrono::nanoseconds(now.tv_nsec);
    // Saturated: a "forever" timeout must not overflow into the past.
    const auto deadline = timeout < std::chrono::nanoseconds::max() - since_boot
                              ? since_boot + timeout
                              : std::chrono::nanoseconds::max();
    const timespec abs = to_timespec(deadline);
    const long rc = syscall(SYS_futex_waitv, waiters.data(), targets.size(), 0, &abs, CLOCK_MONOTONIC);
    if (rc >= 0) return true;
    if (errno == ETIMEDOUT) return timeout < asked;
    if (errno == EAGAIN || errno == EINTR) return true;  // a value changed, or a signal: the caller re-checks
    // ENOSYS (Linux < 5.16), or EPERM from a seccomp filter that does not know the call (Docker's default
    // profile before 23.0): sleep on the first word from now on, rather than return at once and spin. Any
    // other error (ENOMEM...) falls back for this sleep only.
    if (errno == ENOSYS || errno == EPERM) waitv_missing.store(true, std::memory_order_relaxed);
  }
  const auto capped = std::min<std::chrono::nanoseconds>(timeout, std::chrono::milliseconds(1));
  return futex_wait(targets[0].word, targets[0].expected, capped) || capped < asked;
}

}  // namespace shmbus::shm

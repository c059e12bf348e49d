#include "shm/owner_lock.h"

#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <string>
#include <string_view>

#include "shm/deadline.h"
#include "shm/futex.h"

namespace shmbus::shm {
namespace {

using Clock = std::chrono::steady_clock;

// How long a waiter sleeps before it checks that the owner still exists: the delay a crashed owner adds.
constexpr std::chrono::milliseconds kOwnerCheckEvery{10};
// Linux pids and thread ids stay below this (PID_MAX_LIMIT): anything above names no thread.
constexpr uint32_t kMaxThreadId = 1u << 22;

// gettid() is a system call: cached per thread. A forked child's only thread has a new id: the fork handler
// (run in the child by the thread that forked, the one whose copy is inherited) forgets it.
thread_local uint32_t cached_tid = 0;
const bool fork_handler_installed = [] {
  return pthread_atfork(nullptr, nullptr, [] { cached_tid = 0; }) == 0;
}();

uint32_t my_tid() {
  if (cached_tid == 0) cached_tid = static_cast<uint32_t>(gettid());
  return cached_tid;
}

// Whether thread `tid` has exited but is not reaped yet (a zombie: kill() still finds it).
bool zombie(uint32_t tid) {
  const std::string path = "/proc/" + std::to_string(tid) + "/stat";
  const int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return false;
  char text[512];
  const ssize_t n = read(fd, text, sizeof text - 1);
  close(fd);
  if (n <= 0) return false;
  const std::string_view stat(text, static_cast<std::size_t>(n));
  const auto end_of_name = stat.rfind(')');  // the name may hold spaces and parentheses; the state follows
  return end_of_name != std::string_view::npos && end_of_name + 2 < stat.size() &&
         (stat[end_of_name + 2] == 'Z' || stat[end_of_name + 2] == 'X');
}

// Whether the word names a thread that runs, other than the caller (which is not in the lock's critical
// section: it is trying to enter it).
bool owner_alive(uint32_t word, uint32_t me) {
  const uint32_t tid = word & OwnerLock::kOwnerMask;
  if (tid == 0 || tid >= kMaxThreadId || tid == me) return false;
  if (kill(static_cast<pid_t>(tid), 0) != 0 && errno != EPERM) return false;
  return !zombie(tid);
}

}  // namespace

LockResult OwnerLock::lock(std::atomic<uint32_t>* word, std::chrono::nanoseconds timeout) {
  (void)fork_handler_installed;
  const uint32_t me = my_tid();
  uint32_t v = 0;
  // acquire (every successful CAS below too): what the previous owner wrote in its critical section
  // happens-before ours (pairs with unlock's release exchange).
  if (word->compare_exchange_strong(v, me, std::memory_order_acquire, std::memory_order_relaxed)) {
    return LockResult::kLocked;
  }
  const auto deadline = deadline_after(timeout);
  auto next_check =
      Clock::now() + kOwnerCheckEvery;  // by the clock: a word that keeps changing wakes us early
  bool woken = false;                   // a futex wake may have been meant for us
  for (;;) {
    // relaxed: only a value to compare and swap against; the CAS that takes the lock orders the rest.
    v = word->load(std::memory_order_relaxed);
    if (v == 0) {
      // Taken with the waiters bit: others may sleep behind us, and our unlock must wake the next one.
      if (word->compare_exchange_strong(v, me | kWaitersBit, std::memory_order_acquire,
                                        std::memory_order_relaxed)) {
        return LockResult::kLocked;
      }
      continue;
    }
    const auto now = Clock::now();
    if (now < deadline && now < next_check) {
      // relaxed: the bit only asks the owner to wake us; nothing is published through it.
      if ((v & kWaitersBit) == 0 &&
          !word->compare_exchange_strong(v, v | kWaitersBit, std::memory_order_relaxed,
                                         std::memory_order_relaxed)) {
        continue;  // the word changed: look again
      }
      v |= kWaitersBit;
      const auto left = std::min(deadline, next_check) - now;
      woken |= futex_wait(word, v, std::chrono::duration_cast<std::chrono::nanoseconds>(left));
      continue;  // woken, the word changed, or the slice ran out: look again
    }
    // kOwnerCheckEvery (or the deadline) passed: take over if the owner is gone. Only from the word judged:
    // a CAS, so that a live owner's release in between is not overwritten.
    next_check = now + kOwnerCheckEvery;
    if (!owner_alive(v, me) && word->compare_exchange_strong(v, me | kWaitersBit, std::memory_order_acquire,
                                                             std::memory_order_relaxed)) {
      return LockResult::kOwnerDied;
    }
    if (now >= deadline) {
      // An unlock that woke us woke no one else: pass that wake-up on, or the other sleepers lose a slice.
      if (woken) futex_wake(word, 1);
      return LockResult::kTimeout;
    }
  }
}

void OwnerLock::unlock(std::atomic<uint32_t>* word) {
  // release: our critical section's writes happen-before the next owner's (its acquire CAS).
  if (word->exchange(0, std::memory_order_release) & kWaitersBit) futex_wake(word, 1);
}

}  // namespace shmbus::shm

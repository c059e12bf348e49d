// Futex wait/wake on 32-bit words that live in shared memory.
//
// The words are shared between processes, so FUTEX_PRIVATE_FLAG must never be used here. Callers keep a
// "sleepers" or "waiting" flag beside each word so that the waking side skips the syscall when nobody sleeps.
#pragma once

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <span>

namespace shmbus::shm {

static_assert(sizeof(std::atomic<uint32_t>) == sizeof(uint32_t), "futex words must be plain 32-bit words");
static_assert(std::atomic<uint32_t>::is_always_lock_free, "futex words must be lock-free");

// Sleeps while *word == expected, at most `timeout` (negative or zero: do not sleep).
// Returns false when the whole `timeout` ran out (the kernel's timeout), true on wake-up, value mismatch or
// signal (callers re-check their condition).
bool futex_wait(std::atomic<uint32_t>* word, uint32_t expected, std::chrono::nanoseconds timeout);

// Wakes up to `count` sleepers on `word`.
void futex_wake(std::atomic<uint32_t>* word, int count = INT32_MAX);

// One word of a multi-word wait.
struct FutexWaitTarget {
  std::atomic<uint32_t>* word;
  uint32_t expected;
};

// The most words one futex_waitv call takes (the kernel's FUTEX_WAITV_MAX).
inline constexpr std::size_t kMaxWaitTargets = 128;

// Sleeps until any of `targets` changes or is woken (futex_waitv, Linux >= 5.16), at most `timeout`.
// Returns false only when the whole `timeout` ran out, as futex_wait does: callers count that as a wake-up
// nobody made. On kernels without futex_waitv it sleeps on the first word with a 1 ms cap and returns true
// when that cap ended a longer sleep, so callers loop and re-check.
// REQUIRES: 0 < targets.size() <= kMaxWaitTargets (more: only the first ones are waited on, with a 1 ms
// cap; none: it returns false at once).
bool futex_wait_any(std::span<const FutexWaitTarget> targets, std::chrono::nanoseconds timeout);

}  // namespace shmbus::shm

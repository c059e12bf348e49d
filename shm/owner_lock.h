// A lock shared by processes, in one 32-bit futex word that holds its owner's thread id and nothing else.
//
// Why not a robust pthread mutex: glibc keeps a robust mutex on a per-thread list whose links live inside
// the mutex, and unlocking writes through them. In shared memory any participant can overwrite those links,
// and the next unlock writes wherever they point: one hostile process could crash the daemon. This word is
// only ever compared and swapped, so the worst a scribbler does is make others wait (up to their deadline)
// or make them take the lock over (then they repair what the "dead" owner left, as after a crash).
//
// Word: 0 free; otherwise the owner's thread id (bits 0..29) and kWaitersBit when someone may sleep on it.
// A waiter whose sleep slice ends checks that the owner still exists (kill(tid, 0)); a word naming no live
// thread (a crashed owner, or garbage) or the caller itself (the lock is not recursive: garbage too) is taken
// over and reported as kOwnerDied. Thread ids are compared as this process sees them: every process locking
// one word must share a pid namespace (as queue ownership already requires).
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>

namespace shmbus::shm {

enum class LockResult {
  kLocked,
  kOwnerDied,  // locked, taken over from an owner that died (or a garbage word): repair what it guarded
  kTimeout,    // still held by a live process after the deadline
};

class OwnerLock {
 public:
  static constexpr uint32_t kWaitersBit = 1u << 31;
  static constexpr uint32_t kOwnerMask = (1u << 30) - 1;

  // Takes the lock at `word`, waiting at most `timeout`.
  static LockResult lock(std::atomic<uint32_t>* word, std::chrono::nanoseconds timeout);
  // Releases it; wakes one waiter if any may sleep. REQUIRES: lock() returned kLocked or kOwnerDied.
  static void unlock(std::atomic<uint32_t>* word);
};

}  // namespace shmbus::shm

#include "shm/sleep_fence.h"

#include <linux/membarrier.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>

namespace shmbus::shm {

bool register_cheap_commits() {
  return syscall(SYS_membarrier, MEMBARRIER_CMD_REGISTER_GLOBAL_EXPEDITED, 0, 0) == 0;
}

namespace {
// Whether this kernel has the expedited global barrier at all. Without it no process can have registered,
// every writer commits with a seq_cst store, and the fence below is all the ordering a sleeper needs.
bool kernel_has_global_expedited() {
  static const bool has = [] {
    const long commands = syscall(SYS_membarrier, MEMBARRIER_CMD_QUERY, 0, 0);
    return commands > 0 && (commands & MEMBARRIER_CMD_GLOBAL_EXPEDITED) != 0;
  }();
  return has;
}
}  // namespace

bool fence_before_sleep() {
  // seq_cst: orders this thread's sleeper increments before its re-check, against writers that still use
  // seq_cst commits (unregistered processes).
  std::atomic_thread_fence(std::memory_order_seq_cst);
  if (!kernel_has_global_expedited()) return true;
  // The kernel has it but may refuse this process (a seccomp filter): then a registered writer elsewhere
  // could be missed, and the caller caps its sleep.
  return syscall(SYS_membarrier, MEMBARRIER_CMD_GLOBAL_EXPEDITED, 0, 0) == 0;
}

std::chrono::nanoseconds SleepFence::before_sleep(std::chrono::nanoseconds fenced_cap) {
  if (first_) {
    first_ = false;
    // seq_cst: still orders the sleeper increments before the re-check against writers that commit with
    // seq_cst stores (unregistered processes); only registered writers can be missed, for at most the cap.
    std::atomic_thread_fence(std::memory_order_seq_cst);
    return kFirstSleepCap;
  }
  return fence_before_sleep() ? fenced_cap : std::chrono::nanoseconds(kUnfencedSleepCap);
}

}  // namespace shmbus::shm

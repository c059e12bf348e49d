#include "shm/sleep_fence.h"

#include <linux/membarrier.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>

namespace shmbus::shm {

bool register_cheap_commits() {
  return syscall(SYS_membarrier, MEMBARRIER_CMD_REGISTER_GLOBAL_EXPEDITED, 0, 0) == 0;
}

namespace {
// Whether no process can have registered for cheap commits: the kernel lacks the expedited global barrier
// (ENOSYS, or a QUERY that does not list it). Then every writer commits with a seq_cst store, and the fence
// below is all the ordering a sleeper needs. A QUERY refused otherwise (EPERM from a seccomp filter on this
// process only) says nothing of the writers elsewhere: not "absent".
bool kernel_lacks_global_expedited() {
  static const bool lacks = [] {
    const long commands = syscall(SYS_membarrier, MEMBARRIER_CMD_QUERY, 0, 0);
    if (commands < 0) return errno == ENOSYS;
    return (commands & MEMBARRIER_CMD_GLOBAL_EXPEDITED) == 0;
  }();
  return lacks;
}
}  // namespace

bool fence_before_sleep() {
  // seq_cst: orders this thread's sleeper increments before its re-check, against writers that still use
  // seq_cst commits (unregistered processes).
  std::atomic_thread_fence(std::memory_order_seq_cst);
  if (kernel_lacks_global_expedited()) return true;
  // The kernel may have it but refuse this process (a seccomp filter): then a registered writer elsewhere
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

#include "shm/sleep_fence.h"

#include <linux/membarrier.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>

namespace shmbus::shm {

bool register_cheap_commits() {
  return syscall(SYS_membarrier, MEMBARRIER_CMD_REGISTER_GLOBAL_EXPEDITED, 0, 0) == 0;
}

bool fence_before_sleep() {
  // seq_cst: orders this thread's sleeper increments before its re-check, against writers that still use
  // seq_cst commits (unregistered processes).
  std::atomic_thread_fence(std::memory_order_seq_cst);
  return syscall(SYS_membarrier, MEMBARRIER_CMD_GLOBAL_EXPEDITED, 0, 0) == 0;
}

}  // namespace shmbus::shm

#pragma once
// Pinning a process to one CPU.

#include <sched.h>

#include <cerrno>
#include <stdexcept>
#include <string>
#include <system_error>

namespace bench {

// Pins the calling thread, and every thread it starts afterwards, to `cpu`; a negative cpu
// leaves scheduling alone. sched_setaffinity(0, ...) affects only the calling thread, so call
// this right after fork, before a library starts its own threads (ZeroMQ I/O thread, iceoryx
// keep-alive), which then inherit the mask.
inline void pin_to_cpu(int cpu) {
  if (cpu < 0) return;
  if (cpu >= CPU_SETSIZE) throw std::invalid_argument("cpu " + std::to_string(cpu) + " out of range");
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cpu, &set);
  if (sched_setaffinity(0, sizeof(set), &set) != 0)
    throw std::system_error(errno, std::generic_category(),
                            "sched_setaffinity(cpu " + std::to_string(cpu) + ")");
}

}  // namespace bench

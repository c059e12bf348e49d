#pragma once
// Names a bench run created outside its own memory (ipc socket files, POSIX shm objects),
// unlinked when the run ends, however it ends.

#include <signal.h>
#include <unistd.h>

#include <cstring>
#include <stdexcept>
#include <string>

namespace bench {

// Fixed storage, because unlink_registered_paths() also runs inside signal handlers, where
// only async-signal-safe calls (unlink, no allocation) are allowed.
inline constexpr int kMaxCleanupPaths = 8;
inline constexpr size_t kMaxCleanupPathLength = 256;
inline char g_cleanup_paths[kMaxCleanupPaths][kMaxCleanupPathLength];
inline volatile sig_atomic_t g_cleanup_path_count = 0;

// Registers a file system path (for POSIX shm: "/dev/shm/" + name) to unlink at the end.
inline void register_cleanup_path(const std::string& path) {
  if (g_cleanup_path_count >= kMaxCleanupPaths || path.size() >= kMaxCleanupPathLength)
    throw std::length_error("cleanup registry full or path too long: " + path);
  std::memcpy(g_cleanup_paths[g_cleanup_path_count], path.c_str(), path.size() + 1);
  g_cleanup_path_count = g_cleanup_path_count + 1;
}

// Async-signal-safe. Paths already gone are fine.
inline void unlink_registered_paths() {
  for (int i = 0; i < g_cleanup_path_count; ++i) unlink(g_cleanup_paths[i]);
}

// Called in the child after fork: the parent alone owns the names, so that the child's exit
// cannot remove them while the parent still uses them.
inline void forget_cleanup_paths() {
  g_cleanup_path_count = 0;
}

}  // namespace bench

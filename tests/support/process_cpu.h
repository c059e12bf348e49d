// The CPU time a process has used, and whether its threads are runnable, for tests that check a process is
// idle (or busy) without timing it.
#pragma once

#include <sys/types.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <iterator>
#include <sstream>
#include <string>

namespace shmbus::test {

// User + system CPU seconds process `pid` has used so far, from /proc/<pid>/stat; -1 if it is gone.
inline double cpu_seconds(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const auto end_of_name = text.rfind(')');  // the command name may hold spaces and parentheses
  if (end_of_name == std::string::npos || end_of_name + 2 > text.size()) return -1;
  std::istringstream fields(text.substr(end_of_name + 2));
  std::string field;
  // Fields after the name start at 3 (state); utime and stime are fields 14 and 15, in clock ticks.
  for (int i = 3; i < 14; ++i) fields >> field;
  unsigned long long user = 0, system = 0;
  fields >> user >> system;
  return static_cast<double>(user + system) / static_cast<double>(sysconf(_SC_CLK_TCK));
}

// Whether some thread of process `pid` is running or waiting for a CPU (state R in /proc/<pid>/task/*/stat)
// rather than asleep. A thread that spins (and yields) is always so, however loaded the machine: a check of
// "it spins" that, unlike its CPU time, more load cannot defeat.
inline bool has_runnable_thread(pid_t pid) {
  std::error_code error;
  for (const auto& task :
       std::filesystem::directory_iterator("/proc/" + std::to_string(pid) + "/task", error)) {
    std::ifstream in(task.path() / "stat");
    const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    const auto end_of_name = text.rfind(')');
    if (end_of_name != std::string::npos && end_of_name + 2 < text.size() && text[end_of_name + 2] == 'R')
      return true;
  }
  return false;
}

}  // namespace shmbus::test

// What /proc/<pid>/stat says of a process or thread: its CPU time and its state, for tests that check a
// process is idle, busy, asleep or stopped without timing it.
#pragma once

#include <sys/types.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <iterator>
#include <sstream>
#include <string>

namespace shmbus::test {

// The text of a /proc stat file after the command name (which may hold spaces and parentheses): it starts
// with field 3, the state. Empty if the process or thread is gone.
inline std::string stat_fields(const std::filesystem::path& stat_file) {
  std::ifstream in(stat_file);
  const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const auto end_of_name = text.rfind(')');
  if (end_of_name == std::string::npos || end_of_name + 2 >= text.size()) return {};
  return text.substr(end_of_name + 2);
}

// The state letter of process `pid` (R running or runnable, S asleep, T stopped...), or 0 if it is gone.
inline char process_state(pid_t pid) {
  const std::string fields = stat_fields("/proc/" + std::to_string(pid) + "/stat");
  return fields.empty() ? 0 : fields[0];
}

// The same for thread `tid` of this process.
inline char thread_state(pid_t tid) {
  const std::string fields = stat_fields("/proc/self/task/" + std::to_string(tid) + "/stat");
  return fields.empty() ? 0 : fields[0];
}

// User + system CPU seconds process `pid` has used so far, from /proc/<pid>/stat; -1 if it is gone.
inline double cpu_seconds(pid_t pid) {
  const std::string text = stat_fields("/proc/" + std::to_string(pid) + "/stat");
  if (text.empty()) return -1;
  std::istringstream fields(text);
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
    if (stat_fields(task.path() / "stat").starts_with('R')) return true;
  }
  return false;
}

}  // namespace shmbus::test

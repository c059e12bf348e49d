// Programs the daemon starts from its configuration ([[process]], e.g. shmbus-bridge) and restarts when they
// die, with a growing back-off so that a program that cannot start does not spin.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <string>
#include <vector>

#include "daemon/toml_table_fwd.h"

namespace shmbus::daemon {

struct ProcessSpec {
  std::string name;                  // shown by `shmbus list` and `shmbus stats`
  std::vector<std::string> command;  // argv; command[0] is an absolute path or found in PATH
  bool restart = true;               // restart when it exits (any status)
};

class ProcessSupervisor {
 public:
  // `environment` is added to each child's environment (the instance and runtime directory, so that a
  // supervised bus client finds this daemon).
  ProcessSupervisor(std::vector<ProcessSpec> specs, std::vector<std::string> environment);
  ~ProcessSupervisor();  // SIGTERM to every child, SIGKILL after 2 s

  // Starts what is due and reaps what exited. Called from the daemon's loop.
  void tick();
  // Adds [[process]] entries (name, pid, state, restarts, last exit status) to `doc`.
  void report(toml::table* doc) const;

 private:
  struct Child {
    ProcessSpec spec;
    pid_t pid = -1;
    int restarts = 0;
    int last_status = -1;
    std::chrono::steady_clock::time_point next_start{};
    std::chrono::steady_clock::time_point started{};
    std::chrono::milliseconds backoff{100};
  };
  void start(Child& c);

  std::vector<Child> children_;
  std::vector<std::string> environment_;
};

}  // namespace shmbus::daemon

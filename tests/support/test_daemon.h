// A real shmbusd for one test: unique instance name and runtime directory, started on construction, stopped
// (and every leftover of its instance removed) on destruction, pass or fail. It exports SHMBUS_INSTANCE and
// SHMBUS_RUNTIME_DIR so that child processes the test starts find it.
#pragma once

#include <sys/types.h>

#include <string>
#include <vector>

#include <toml++/toml.h>

#include "shmbus/bus.h"

namespace shmbus::test {

class TestDaemon {
 public:
  // `config_toml`: written to a config file and passed with --config when non-empty. `launcher`: a command
  // (searched in PATH) that runs the rest of its arguments in its own place, put before shmbusd's command
  // line, e.g. {"prlimit", "--nofile=32:32", "--"}; the daemon's pid stays the launcher's (it must exec).
  explicit TestDaemon(const std::string& config_toml = "", std::vector<std::string> launcher = {});
  ~TestDaemon();
  TestDaemon(const TestDaemon&) = delete;
  TestDaemon& operator=(const TestDaemon&) = delete;

  // Starts shmbusd (again); returns false if it did not come up within 10 s.
  bool start();
  // Sends `signal` and waits; returns the exit status (or 128 + signal number).
  int stop(int signal = 15);
  pid_t pid() const { return pid_; }

  const std::string& instance() const { return instance_; }
  const std::string& runtime_dir() const { return runtime_dir_; }
  std::string socket_path() const { return runtime_dir_ + "/" + instance_ + ".sock"; }
  // /dev/shm entries of this instance.
  std::vector<std::string> segments() const;

  Bus connect(const std::string& name = "test") const;
  // The daemon's statistics as JSON-free key lookups: run `shmbus stats --json` style queries through toml.
  std::string statistics() const;
  // The statistics of the queue `name` (a table of the daemon's `queue` array), empty if it has none.
  toml::table queue_statistics(const std::string& name) const;

 private:
  std::string instance_;
  std::string runtime_dir_;
  std::string config_path_;
  std::vector<std::string> launcher_;
  pid_t pid_ = -1;
};

// Runs a program with arguments; returns its exit status and captures stdout (stderr goes to the test log).
struct ProcessResult {
  int status = -1;
  std::string out;
};
ProcessResult run_process(const std::vector<std::string>& argv, double timeout_s = 60,
                          const std::string& stdin_text = "");

// Starts a program in the background with its stdout on a pipe; read_line() reads one line (timeout in s).
class ChildProcess {
 public:
  explicit ChildProcess(const std::vector<std::string>& argv);
  ~ChildProcess();  // kills it (SIGKILL) if it still runs
  std::string read_line(double timeout_s = 30);
  std::string read_all(double timeout_s = 60);
  int wait(double timeout_s = 60);  // exit status, or 128 + signal; -1 on timeout (then killed)
  void kill(int signal);
  pid_t pid() const { return pid_; }

 private:
  pid_t pid_ = -1;
  int out_fd_ = -1;
  std::string buffer_;
};

}  // namespace shmbus::test

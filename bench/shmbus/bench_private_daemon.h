// A shmbusd of its own for one bench run: a unique instance in a scratch runtime directory, started before
// the fork and stopped (SIGTERM: it removes its segments and socket) when the run ends.
#pragma once

#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <stdexcept>
#include <string>
#include <thread>

#include "shmbus/bus.h"

namespace bench {

class PrivateDaemon {
 public:
  PrivateDaemon() {
    instance_ = "bench" + std::to_string(getpid());
    runtime_dir_ = "/tmp/shmbus-" + instance_;
    std::filesystem::create_directories(runtime_dir_);
    setenv("SHMBUS_INSTANCE", instance_.c_str(), 1);
    setenv("SHMBUS_RUNTIME_DIR", runtime_dir_.c_str(), 1);
    pid_ = fork();
    if (pid_ == 0) {
      // Stopped with the bench even if it dies without its destructor (an abort, a signal): the daemon then
      // removes its socket and segments itself. getppid(): the bench may have died before prctl.
      prctl(PR_SET_PDEATHSIG, SIGTERM);
      if (getppid() != owner_) _exit(1);
      execl(SHMBUSD_PATH, SHMBUSD_PATH, "--log-level", "warn", static_cast<char*>(nullptr));
      _exit(127);
    }
    for (int i = 0; i < 2000; ++i) {
      if (shmbus::Bus::connect().ok()) return;
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    stop();
    throw std::runtime_error("shmbusd did not start (" SHMBUSD_PATH ")");
  }
  ~PrivateDaemon() { stop(); }
  PrivateDaemon(const PrivateDaemon&) = delete;
  PrivateDaemon& operator=(const PrivateDaemon&) = delete;

 private:
  void stop() {
    if (pid_ <= 0 || getpid() != owner_) return;
    kill(pid_, SIGTERM);
    waitpid(pid_, nullptr, 0);
    pid_ = -1;
    std::error_code ec;
    std::filesystem::remove_all(runtime_dir_, ec);
  }
  std::string instance_;
  std::string runtime_dir_;
  pid_t pid_ = -1;
  pid_t owner_ = getpid();  // only the process that started it stops it (not the forked side B)
};

}  // namespace bench

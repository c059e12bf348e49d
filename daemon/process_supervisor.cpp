#include "daemon/process_supervisor.h"

#include <signal.h>
#include <spdlog/spdlog.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <toml++/toml.h>
#include <unistd.h>

#include <thread>

namespace shmbus::daemon {

using Clock = std::chrono::steady_clock;

ProcessSupervisor::ProcessSupervisor(std::vector<ProcessSpec> specs, std::vector<std::string> environment)
    : environment_(std::move(environment)) {
  for (auto& s : specs) children_.push_back(Child{std::move(s)});
}

ProcessSupervisor::~ProcessSupervisor() {
  for (Child& c : children_) {
    if (c.pid > 0) kill(c.pid, SIGTERM);
  }
  const auto deadline = Clock::now() + std::chrono::seconds(2);
  for (Child& c : children_) {
    while (c.pid > 0) {
      if (waitpid(c.pid, nullptr, WNOHANG) == c.pid) break;
      if (Clock::now() > deadline) {
        kill(c.pid, SIGKILL);
        waitpid(c.pid, nullptr, 0);
        break;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    c.pid = -1;
  }
}

void ProcessSupervisor::start(Child& c) {
  std::vector<char*> argv;
  for (auto& a : c.spec.command) argv.push_back(a.data());
  argv.push_back(nullptr);
  const pid_t parent = getpid();
  const pid_t pid = fork();
  if (pid == 0) {
    prctl(PR_SET_PDEATHSIG, SIGTERM);  // a daemon killed with -9 does not leave its children running
    if (getppid() != parent) _exit(1);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, nullptr);  // the daemon blocks SIGTERM for its signalfd
    for (const auto& e : environment_) putenv(const_cast<char*>(e.c_str()));
    execvp(argv[0], argv.data());
    _exit(127);
  }
  if (pid < 0) {
    spdlog::error("cannot start {}: fork failed", c.spec.name);
    return;
  }
  c.pid = pid;
  c.started = Clock::now();
  spdlog::info("started {} (pid {})", c.spec.name, pid);
}

void ProcessSupervisor::tick() {
  const auto now = Clock::now();
  for (Child& c : children_) {
    if (c.pid > 0) {
      int status = 0;
      if (waitpid(c.pid, &status, WNOHANG) != c.pid) continue;
      c.last_status = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
      spdlog::warn("{} (pid {}) exited with status {}{}", c.spec.name, c.pid, c.last_status,
                   c.spec.restart ? "; restarting" : "");
      c.pid = -1;
      if (!c.spec.restart) {
        c.next_start = Clock::time_point::max();
        continue;
      }
      ++c.restarts;
      if (now - c.started > std::chrono::seconds(10))
        c.backoff = std::chrono::milliseconds(100);  // it had run well
      c.next_start = now + c.backoff;
      c.backoff = std::min<std::chrono::milliseconds>(c.backoff * 2, std::chrono::seconds(10));
      continue;
    }
    if (now >= c.next_start) start(c);
  }
}

void ProcessSupervisor::report(toml::table* doc) const {
  toml::array list;
  for (const Child& c : children_) {
    list.push_back(toml::table{{"name", c.spec.name},
                               {"pid", static_cast<int64_t>(c.pid)},
                               {"state", c.pid > 0 ? "running" : "stopped"},
                               {"restarts", c.restarts},
                               {"last_status", c.last_status}});
  }
  doc->insert("process", std::move(list));
}

}  // namespace shmbus::daemon

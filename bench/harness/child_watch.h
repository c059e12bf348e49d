#pragma once
// Makes a failure on either side of a bench end the whole run, promptly and cleaned up.
// A peer blocked in a receive would otherwise wait forever for a process that is gone.

#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "cleanup_registry.h"

namespace bench {

inline volatile pid_t g_watched_child = 0;
inline const char* g_program_name = "bench";

inline void write_stderr(const char* a, const char* b = "", const char* c = "") {
  // write(2) only: these run inside signal handlers.
  for (const char* part : {a, b, c}) {
    ssize_t ignored = write(STDERR_FILENO, part, std::strlen(part));
    (void)ignored;
  }
}

inline void abandon_run(int exit_code) {
  if (g_watched_child > 0) {
    kill(g_watched_child, SIGKILL);
    waitpid(g_watched_child, nullptr, 0);  // reap it: no zombie for whoever inherits it
  }
  unlink_registered_paths();
  _exit(exit_code);
}

// SIGCHLD: B ended. A clean exit is reaped later by the main path (WNOWAIT leaves it there);
// anything else means A would wait forever, so give up now.
inline void on_child_event(int) {
  const int saved_errno = errno;
  siginfo_t info;
  std::memset(&info, 0, sizeof(info));
  if (g_watched_child > 0 &&
      waitid(P_PID, static_cast<id_t>(g_watched_child), &info, WEXITED | WNOHANG | WNOWAIT) == 0 &&
      info.si_pid != 0 && !(info.si_code == CLD_EXITED && info.si_status == 0)) {
    write_stderr(g_program_name, ": the other process (side B) failed; stopping\n");
    abandon_run(1);
  }
  errno = saved_errno;
}

inline void on_timeout(int) {
  write_stderr(g_program_name, ": timed out (see --timeout); stopping\n");
  abandon_run(3);
}

inline void on_termination_request(int signal_number) {
  write_stderr(g_program_name, ": interrupted; stopping\n");
  abandon_run(128 + signal_number);
}

// In the parent, right after fork: watch `child`, and start the watchdog.
inline void watch_child(pid_t child, unsigned timeout_s) {
  g_watched_child = child;
  struct sigaction action;
  std::memset(&action, 0, sizeof(action));
  sigemptyset(&action.sa_mask);
  action.sa_flags = SA_RESTART | SA_NOCLDSTOP;
  action.sa_handler = on_child_event;
  sigaction(SIGCHLD, &action, nullptr);
  action.sa_handler = on_timeout;
  sigaction(SIGALRM, &action, nullptr);
  action.sa_handler = on_termination_request;
  sigaction(SIGINT, &action, nullptr);
  sigaction(SIGTERM, &action, nullptr);
  alarm(timeout_s);
}

// In the parent, once B has been reaped or must be killed by the caller itself.
inline void stop_watching_child() {
  signal(SIGCHLD, SIG_DFL);
  alarm(0);
  g_watched_child = 0;
}

// In the child, right after fork: die with the parent, whose watchdog covers both.
inline void follow_parent(pid_t parent) {
  forget_cleanup_paths();
  prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (getppid() != parent) _exit(1);  // the parent died before prctl took effect
}

}  // namespace bench

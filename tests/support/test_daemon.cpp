#include "test_daemon.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <stdexcept>
#include <thread>

#include "scratch_dir.h"

namespace shmbus::test {
namespace {

using Clock = std::chrono::steady_clock;

std::string unique_name() {
  return "test" + unique_suffix();
}

pid_t spawn(const std::vector<std::string>& argv, int stdout_fd, int stdin_fd) {
  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  const pid_t pid = fork();
  if (pid == 0) {
    if (stdout_fd >= 0) dup2(stdout_fd, 1);
    if (stdin_fd >= 0) dup2(stdin_fd, 0);
    execvp(args[0], args.data());
    _exit(127);
  }
  return pid;
}

int wait_for(pid_t pid, double timeout_s) {
  const auto deadline = Clock::now() + std::chrono::duration<double>(timeout_s);
  for (;;) {
    int status = 0;
    const pid_t r = waitpid(pid, &status, WNOHANG);
    if (r == pid) return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    if (r < 0) return -1;
    if (Clock::now() > deadline) return -1;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
}

}  // namespace

TestDaemon::TestDaemon(const std::string& config_toml, std::vector<std::string> launcher)
    : instance_(unique_name()), launcher_(std::move(launcher)) {
  runtime_dir_ = "/tmp/shmbus-" + instance_;
  std::filesystem::create_directories(runtime_dir_);
  if (!config_toml.empty()) {
    config_path_ = runtime_dir_ + "/shmbusd.toml";
    std::ofstream(config_path_) << config_toml;
  }
  setenv("SHMBUS_INSTANCE", instance_.c_str(), 1);
  setenv("SHMBUS_RUNTIME_DIR", runtime_dir_.c_str(), 1);
  if (!start()) {
    std::error_code ec;
    std::filesystem::remove_all(runtime_dir_, ec);  // the destructor will not run
    throw std::runtime_error("shmbusd did not start for instance " + instance_);
  }
}

bool TestDaemon::start() {
  std::vector<std::string> argv = {SHMBUSD_PATH, "--instance",  instance_, "--runtime-dir",
                                   runtime_dir_, "--log-level", "warn"};
  if (!config_path_.empty()) argv.insert(argv.end(), {"--config", config_path_});
  argv.insert(argv.begin(), launcher_.begin(), launcher_.end());
  pid_ = spawn(argv, -1, -1);
  const auto deadline = Clock::now() + std::chrono::seconds(10);
  while (Clock::now() < deadline) {
    if (Bus::connect().ok()) return true;
    int status = 0;
    if (waitpid(pid_, &status, WNOHANG) == pid_) {
      pid_ = -1;
      return false;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return false;
}

int TestDaemon::stop(int signal) {
  if (pid_ <= 0) return -1;
  ::kill(pid_, signal);
  int status = wait_for(pid_, 20);
  if (status == -1) {
    ::kill(pid_, SIGKILL);
    status = wait_for(pid_, 5);
  }
  pid_ = -1;
  return status;
}

TestDaemon::~TestDaemon() {
  const bool was_running = pid_ > 0;
  const int status = stop(SIGTERM);
  if (was_running) {
    // A clean stop must leave nothing behind: no segment, no socket.
    EXPECT_EQ(status, 0) << "shmbusd exited with " << status << " on SIGTERM";
    EXPECT_TRUE(segments().empty()) << "shared-memory segments left after a clean daemon stop";
    EXPECT_FALSE(std::filesystem::exists(socket_path())) << "socket left after a clean daemon stop";
  }
  for (const auto& s : segments()) std::filesystem::remove("/dev/shm" + s);
  std::error_code ec;
  std::filesystem::remove_all(runtime_dir_, ec);
}

std::vector<std::string> TestDaemon::segments() const {
  std::vector<std::string> names;
  const std::string prefix = "shmbus." + instance_ + ".";
  for (const auto& e : std::filesystem::directory_iterator("/dev/shm")) {
    const std::string f = e.path().filename().string();
    if (f.rfind(prefix, 0) == 0) names.push_back("/" + f);
  }
  return names;
}

Bus TestDaemon::connect(const std::string& name) const {
  BusOptions o;
  o.name = name;
  auto bus = Bus::connect(o);
  if (!bus) throw std::runtime_error(bus.status().to_string());
  return std::move(bus).value();
}

std::string TestDaemon::statistics() const {
  auto bus = connect("stats");
  auto doc = bus.daemon_statistics();
  if (!doc) throw std::runtime_error(doc.status().to_string());
  return doc.value();
}

toml::table TestDaemon::queue_statistics(const std::string& name) const {
  toml::table doc = toml::parse(statistics());
  if (const toml::array* queues = doc["queue"].as_array()) {
    for (const toml::node& n : *queues) {
      if ((*n.as_table())["name"].value_or(std::string()) == name) return *n.as_table();
    }
  }
  return {};
}

ProcessResult run_process(const std::vector<std::string>& argv, double timeout_s,
                          const std::string& stdin_text) {
  int out[2], in[2];
  if (pipe2(out, O_CLOEXEC) != 0 || pipe2(in, O_CLOEXEC) != 0) return {};
  const pid_t pid = spawn(argv, out[1], in[0]);
  close(out[1]);
  close(in[0]);
  if (!stdin_text.empty()) {
    [[maybe_unused]] ssize_t n = write(in[1], stdin_text.data(), stdin_text.size());
  }
  close(in[1]);
  ProcessResult r;
  const auto deadline = Clock::now() + std::chrono::duration<double>(timeout_s);
  char buf[4096];
  for (;;) {
    pollfd p{out[0], POLLIN, 0};
    const int left = static_cast<int>(
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count());
    if (left <= 0 || poll(&p, 1, left) <= 0) break;
    const ssize_t n = read(out[0], buf, sizeof buf);
    if (n <= 0) break;
    r.out.append(buf, static_cast<size_t>(n));
  }
  close(out[0]);
  r.status = wait_for(pid, std::max(0.1, std::chrono::duration<double>(deadline - Clock::now()).count()));
  if (r.status == -1) {
    ::kill(pid, SIGKILL);
    wait_for(pid, 5);
  }
  return r;
}

ChildProcess::ChildProcess(const std::vector<std::string>& argv) {
  int out[2];
  if (pipe2(out, O_CLOEXEC) != 0) throw std::runtime_error("pipe");
  pid_ = spawn(argv, out[1], -1);
  close(out[1]);
  out_fd_ = out[0];
}

ChildProcess::~ChildProcess() {
  if (pid_ > 0) {
    ::kill(pid_, SIGKILL);
    wait_for(pid_, 5);
  }
  if (out_fd_ >= 0) close(out_fd_);
}

std::string ChildProcess::read_line(double timeout_s) {
  const auto deadline = Clock::now() + std::chrono::duration<double>(timeout_s);
  for (;;) {
    if (auto nl = buffer_.find('\n'); nl != std::string::npos) {
      std::string line = buffer_.substr(0, nl);
      buffer_.erase(0, nl + 1);
      return line;
    }
    pollfd p{out_fd_, POLLIN, 0};
    const int left = static_cast<int>(
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count());
    if (left <= 0 || poll(&p, 1, left) <= 0) return {};
    char buf[4096];
    const ssize_t n = read(out_fd_, buf, sizeof buf);
    if (n <= 0) return {};
    buffer_.append(buf, static_cast<size_t>(n));
  }
}

std::string ChildProcess::read_all(double timeout_s) {
  std::string all;
  for (std::string line; !(line = read_line(timeout_s)).empty();) all += line + "\n";
  return all;
}

int ChildProcess::wait(double timeout_s) {
  if (pid_ <= 0) return -1;
  const int status = wait_for(pid_, timeout_s);
  if (status == -1) {
    ::kill(pid_, SIGKILL);
    wait_for(pid_, 5);
  }
  pid_ = -1;
  return status;
}

void ChildProcess::kill(int signal) {
  if (pid_ > 0) ::kill(pid_, signal);
}

}  // namespace shmbus::test

#include "daemon/instance_lock.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>
#include <utility>

namespace shmbus::daemon {

Result<InstanceLock> InstanceLock::acquire(const std::string& path) {
  // A stopping daemon unlinks the lock file before it closes it. A file we opened just before that unlink and
  // locked just after the close is no longer the one at `path`, where a third daemon may lock a new file: so
  // the lock counts only while `path` still names the file we hold; else we try again on the new one.
  for (int attempt = 0;; ++attempt) {
    const int fd = open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) return Status{Errc::kInternal, "cannot open " + path + ": " + std::strerror(errno)};
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
      char pid[32] = {};
      const ssize_t n = pread(fd, pid, sizeof pid - 1, 0);
      close(fd);
      return Status{Errc::kInvalidArgument, "another shmbusd (pid " +
                                                std::string(pid, n > 0 ? static_cast<size_t>(n) : 0) +
                                                ") already serves this instance (lock " + path + ")"};
    }
    struct stat held {
    }, named{};
    const bool current = fstat(fd, &held) == 0 && stat(path.c_str(), &named) == 0 &&
                         held.st_dev == named.st_dev && held.st_ino == named.st_ino;
    if (!current) {
      close(fd);
      if (attempt < 10) continue;
      return Status{Errc::kInternal, "the lock file " + path + " keeps being replaced"};
    }
    const std::string text = std::to_string(getpid());
    if (ftruncate(fd, 0) != 0 || pwrite(fd, text.data(), text.size(), 0) < 0) {
      // Only informational; the lock itself is what counts.
    }
    return InstanceLock(path, fd);
  }
}

InstanceLock::InstanceLock(InstanceLock&& other) noexcept
    : path_(std::move(other.path_)), fd_(std::exchange(other.fd_, -1)) {}

InstanceLock::~InstanceLock() {
  if (fd_ < 0) return;
  unlink(path_.c_str());
  close(fd_);
}

}  // namespace shmbus::daemon

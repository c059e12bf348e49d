// One daemon per instance: an exclusive flock on <runtime_dir>/<instance>.lock, held for the daemon's life.
// The kernel drops the lock when the holder dies, so a kill -9 never blocks the next start.
#pragma once

#include <string>

#include "shmbus/status.h"

namespace shmbus::daemon {

class InstanceLock {
 public:
  // kInvalidArgument with the holder's pid when another daemon serves the instance.
  static Result<InstanceLock> acquire(const std::string& path);
  InstanceLock(InstanceLock&& other) noexcept;
  InstanceLock& operator=(InstanceLock&&) = delete;
  ~InstanceLock();  // removes the file, then releases the lock

 private:
  InstanceLock(std::string path, int fd) : path_(std::move(path)), fd_(fd) {}
  std::string path_;
  int fd_ = -1;
};

}  // namespace shmbus::daemon

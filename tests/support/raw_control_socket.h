// A control connection to a test daemon opened by hand, for tests that speak the control protocol
// themselves (a client that never says hello, a request sent twice, a full listen backlog).
#pragma once

#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstring>
#include <string>

namespace shmbus::test {

// Connects to the daemon's socket at `socket_path`; `extra_flags` are added to the socket type
// (SOCK_NONBLOCK, say). Returns the descriptor, or -1 if the socket or the connect failed (a full backlog
// refuses a non-blocking connect).
inline int connect_raw_control(const std::string& socket_path, int extra_flags = 0) {
  const int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | extra_flags, 0);
  if (fd < 0) return -1;
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, socket_path.c_str(), sizeof addr.sun_path - 1);
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    close(fd);
    return -1;
  }
  return fd;
}

}  // namespace shmbus::test

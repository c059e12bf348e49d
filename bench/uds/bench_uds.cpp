// bench-uds: a Unix domain stream socket with blocking reads and writes. Each message is an
// 8-byte length followed by the payload; SOCK_STREAM rather than SOCK_SEQPACKET because a
// datagram cannot exceed the socket buffer, and sizes here go up to 4 MiB.
//
// The socket pair is made before fork, which is the same kernel path as a named socket once
// connected, and leaves no file in /tmp.

#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <cerrno>
#include <stdexcept>
#include <string>
#include <system_error>

#include "harness/message_buffer.h"
#include "harness/two_process_bench.h"

namespace {

// Moves the iovecs past `done` bytes that a short read or write already handled.
void advance(iovec*& vectors, int& count, size_t done) {
  while (count > 0 && done >= vectors->iov_len) {
    done -= vectors->iov_len;
    ++vectors;
    --count;
  }
  if (count > 0) {
    vectors->iov_base = static_cast<std::byte*>(vectors->iov_base) + done;
    vectors->iov_len -= done;
  }
}

// One writev when the socket buffer has room: the common case costs one syscall.
void write_all(int fd, iovec* vectors, int count) {
  while (count > 0) {
    const ssize_t written = writev(fd, vectors, count);
    if (written < 0) {
      if (errno == EINTR) continue;
      throw std::system_error(errno, std::generic_category(), "writev");
    }
    advance(vectors, count, static_cast<size_t>(written));
  }
}

void read_all(int fd, iovec* vectors, int count) {
  while (count > 0) {
    const ssize_t got = readv(fd, vectors, count);
    if (got < 0) {
      if (errno == EINTR) continue;
      throw std::system_error(errno, std::generic_category(), "readv");
    }
    if (got == 0) throw std::runtime_error("the other side closed the socket");
    advance(vectors, count, static_cast<size_t>(got));
  }
}

class UdsTransport {
 public:
  UdsTransport(int fd, size_t message_bytes) : fd_(fd), out_(message_bytes), in_(message_bytes) {}
  ~UdsTransport() {
    if (fd_ >= 0) close(fd_);
  }
  UdsTransport(UdsTransport&& other) noexcept
      : fd_(other.fd_), out_(std::move(other.out_)), in_(std::move(other.in_)) {
    other.fd_ = -1;
  }

  void send(uint64_t seq) {
    out_.put_sequence(seq);
    uint64_t length = out_.size();
    iovec vectors[2] = {{&length, sizeof(length)}, {out_.data(), out_.size()}};
    write_all(fd_, vectors, 2);
  }

  // Reads the length and the payload with one readv: the size is fixed, so the length is only
  // checked, not needed to know how much to read.
  uint64_t receive() {
    uint64_t length = 0;
    iovec vectors[2] = {{&length, sizeof(length)}, {in_.data(), in_.size()}};
    read_all(fd_, vectors, 2);
    if (length != in_.size())
      throw std::runtime_error("framing error: message of " + std::to_string(length) + " bytes, expected " +
                               std::to_string(in_.size()));
    return in_.sequence();
  }

 private:
  int fd_;
  bench::MessageBuffer out_;
  bench::MessageBuffer in_;
};

class UdsPeer {
 public:
  static constexpr const char* kName = "uds";
  static constexpr bool kSupportsStream = true;

  explicit UdsPeer(const bench::BenchOptions& options) : message_bytes_(options.size) {
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds_) != 0)
      throw std::system_error(errno, std::generic_category(), "socketpair");
  }
  ~UdsPeer() {
    for (int fd : fds_)
      if (fd >= 0) close(fd);
  }

  // Each side keeps its own end and closes the other, so that a dead peer reads as EOF.
  UdsTransport open(bench::Side side) {
    const int mine = side == bench::Side::a ? 0 : 1;
    close(fds_[1 - mine]);
    fds_[1 - mine] = -1;
    const int fd = fds_[mine];
    fds_[mine] = -1;  // now owned by the transport
    return UdsTransport(fd, message_bytes_);
  }

 private:
  size_t message_bytes_;
  int fds_[2] = {-1, -1};
};

}  // namespace

int main(int argc, char** argv) {
  return bench::run_two_process_bench<UdsPeer>(argc, argv);
}

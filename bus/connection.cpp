#include "bus/connection.h"

#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "bus/record_socket.h"

namespace shmbus::detail {

Result<std::shared_ptr<Connection>> Connection::open(const std::string& socket_path, const std::string& name,
                                                     std::chrono::milliseconds timeout) {
  sockaddr_un addr{};
  if (socket_path.size() >= sizeof(addr.sun_path)) {
    return Status{Errc::kInvalidArgument, "socket path too long: " + socket_path};
  }
  const int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
  if (fd < 0) return Status{Errc::kInternal, std::string("socket: ") + std::strerror(errno)};
  addr.sun_family = AF_UNIX;
  std::memcpy(addr.sun_path, socket_path.c_str(), socket_path.size() + 1);
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    const int err = errno;
    close(fd);
    return Status{Errc::kDaemonUnavailable,
                  "no shmbusd at " + socket_path + " (" + std::strerror(err) + "); is the daemon running?"};
  }
  std::shared_ptr<Connection> c(new Connection(fd, timeout));
  HelloRequest hello{};
  hello.header = make_header(RecordType::kHello, sizeof hello, 0);
  copy_string(name, hello.name, sizeof hello.name);
  Reply reply{};
  if (Status s = c->call(&hello, sizeof hello, &reply); !s.ok()) return s;
  c->participant_id_ = reply.participant_id;
  return c;
}

Connection::~Connection() { close(fd_); }

Status Connection::send_locked(void* request, std::size_t size) {
  auto* header = static_cast<RecordHeader*>(request);
  header->request_id = next_request_id_++;
  if (!send_record(fd_, request, size)) {
    return {Errc::kDaemonUnavailable, std::string("lost the daemon: ") + std::strerror(errno)};
  }
  return Status::Ok();
}

Status Connection::call(void* request, std::size_t size, Reply* reply, int* fd) {
  std::lock_guard lock(mutex_);
  if (Status s = send_locked(request, size); !s.ok()) return s;
  const uint32_t id = static_cast<const RecordHeader*>(request)->request_id;
  const ssize_t n = receive_record(fd_, reply, sizeof *reply, timeout_, fd);
  if (n < 0 && errno == ETIMEDOUT) return {Errc::kTimeout, "the daemon did not answer in time"};
  if (n <= 0) return {Errc::kDaemonUnavailable, "the daemon closed the connection"};
  RecordType type{};
  Status s = check_record(reply, static_cast<std::size_t>(n), &type);
  if (s.ok() && (type != RecordType::kReply || reply->header.request_id != id)) {
    s = {Errc::kProtocolError, "unexpected record from the daemon"};
  }
  if (!s.ok()) {
    if (fd && *fd >= 0) close(*fd), *fd = -1;
    return s;
  }
  const auto message = read_string(reply->message, sizeof reply->message).value_or("");
  if (reply->code != 0) {
    if (fd && *fd >= 0) close(*fd), *fd = -1;
    const int code = reply->code;
    if (code < 0 || code > static_cast<int>(Errc::kInternal)) return {Errc::kProtocolError, "bad reply code"};
    return {static_cast<Errc>(code), message};
  }
  return Status::Ok();
}

Result<std::string> Connection::stats() {
  std::lock_guard lock(mutex_);
  StatsRequest request{};
  request.header = make_header(RecordType::kStats, sizeof request, 0);
  if (Status s = send_locked(&request, sizeof request); !s.ok()) return s;
  std::string document;
  for (;;) {
    StatsChunk chunk{};
    const ssize_t n = receive_record(fd_, &chunk, sizeof chunk, timeout_);
    if (n < 0 && errno == ETIMEDOUT) return Status{Errc::kTimeout, "the daemon did not answer in time"};
    if (n <= 0) return Status{Errc::kDaemonUnavailable, "the daemon closed the connection"};
    RecordType type{};
    if (Status s = check_record(&chunk, static_cast<std::size_t>(n), &type); !s.ok()) return s;
    if (type != RecordType::kStatsChunk || chunk.size > sizeof chunk.data) {
      return Status{Errc::kProtocolError, "unexpected record from the daemon"};
    }
    document.append(chunk.data, chunk.size);
    if (chunk.last) return document;
  }
}

}  // namespace shmbus::detail

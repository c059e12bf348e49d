#include "bus/connection.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstddef>
#include <cstring>
#include <thread>

#include "bus/log.h"
#include "bus/record_socket.h"

namespace shmbus::detail {

Result<int> Connection::connect_and_greet(const std::string& socket_path, const std::string& name,
                                          std::chrono::milliseconds timeout, uint64_t* participant_id) {
  sockaddr_un addr{};
  if (socket_path.size() >= sizeof(addr.sun_path)) {
    return Status{Errc::kInvalidArgument, "socket path too long: " + socket_path};
  }
  // Non-blocking while connecting: when a hung daemon's listen backlog is full, a Unix socket's connect()
  // blocks for ever, or, non-blocking, fails at once with EAGAIN (there is no asynchronous connect for Unix
  // sockets): retried until `timeout`, then the socket blocks again for the protocol.
  const int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) return Status{Errc::kInternal, std::string("socket: ") + std::strerror(errno)};
  addr.sun_family = AF_UNIX;
  std::memcpy(addr.sun_path, socket_path.c_str(), socket_path.size() + 1);
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  int rc;
  while ((rc = connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr)) != 0 &&
         (errno == EAGAIN || errno == EINTR) && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  if (rc != 0) {
    const int err = errno;
    close(fd);
    if (err == EAGAIN) {
      return Status{Errc::kTimeout, "shmbusd at " + socket_path + " accepted no connection within " +
                                        std::to_string(timeout.count()) + " ms (its backlog is full: hung?)"};
    }
    return Status{Errc::kDaemonUnavailable,
                  "no shmbusd at " + socket_path + " (" + std::strerror(err) + "); is the daemon running?"};
  }
  fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
  Connection probe(fd, timeout);
  HelloRequest hello{};
  hello.header = make_header(RecordType::kHello, sizeof hello, 0);
  copy_string(name, hello.name, sizeof hello.name);
  Reply reply{};
  Status s = probe.call_locked(&hello, sizeof hello, &reply, nullptr);
  probe.fd_ = -1;  // the descriptor is handed to the caller
  if (!s.ok()) {
    close(fd);
    // The daemon answers the hello of a connection it cannot take (max_participants reached, out of
    // descriptors) with kExhausted and the reason, then closes it.
    if (s.code() == Errc::kExhausted) {
      return Status{Errc::kExhausted,
                    "shmbusd at " + socket_path + " refused the connection: " + s.message()};
    }
    return s;
  }
  *participant_id = reply.participant_id;
  return fd;
}

Result<std::shared_ptr<Connection>> Connection::open(const std::string& socket_path, const std::string& name,
                                                     std::chrono::milliseconds timeout) {
  uint64_t id = 0;
  auto fd = connect_and_greet(socket_path, name, timeout, &id);
  if (!fd) return fd.status();
  std::shared_ptr<Connection> c(new Connection(fd.value(), timeout));
  c->participant_id_ = id;
  c->socket_path_ = socket_path;
  c->name_ = name;
  return c;
}

void Connection::add_endpoint(const ReclaimRequest& endpoint, std::atomic<bool>* lost) {
  std::lock_guard lock(mutex_);
  endpoints_.push_back({endpoint, lost});
}

void Connection::remove_endpoint(uint32_t topic_id, uint32_t role, uint32_t slot) {
  std::lock_guard lock(mutex_);
  std::erase_if(endpoints_, [&](const OwnedEndpoint& e) {
    return e.request.topic_id == topic_id && e.request.role == role && e.request.slot == slot;
  });
}

void Connection::add_queue_role(uint32_t queue_id, uint32_t role, const std::string& name) {
  std::lock_guard lock(mutex_);
  queue_roles_.push_back({queue_id, role, name});
}

void Connection::remove_queue_role(uint32_t queue_id, uint32_t role) {
  std::lock_guard lock(mutex_);
  auto it = std::find_if(queue_roles_.begin(), queue_roles_.end(),
                         [&](const QueueRole& q) { return q.queue_id == queue_id && q.role == role; });
  if (it != queue_roles_.end()) queue_roles_.erase(it);
}

Status Connection::follow_daemon_restart() {
  std::lock_guard lock(mutex_);
  // The daemon never writes unasked, so a live socket polls empty (or holds a late answer: POLLIN alone).
  // A dead daemon's end reads as hung up.
  pollfd p{.fd = fd_, .events = POLLRDHUP, .revents = 0};
  const bool hung_up =
      fd_ < 0 || (poll(&p, 1, 0) > 0 && (p.revents & (POLLRDHUP | POLLHUP | POLLERR | POLLNVAL)));
  if (hung_up) {
    if (Status s = reconnect_locked(); !s.ok()) return s;
  } else {
    reclaim_queue_roles_locked();  // those an earlier attempt could not
  }
  const auto pending =
      std::count_if(queue_roles_.begin(), queue_roles_.end(), [](const QueueRole& q) { return !q.claimed; });
  if (pending == 0) return Status::Ok();
  return {Errc::kTimeout,
          std::to_string(pending) + " queue role(s) not re-claimed from the restarted daemon yet"};
}

void Connection::reclaim_queue_roles_locked() {
  for (std::size_t i = 0; i < queue_roles_.size();) {
    if (queue_roles_[i].claimed) {
      ++i;
      continue;
    }
    // One request for all the handles of this role on this queue (with their count).
    const QueueRole role = queue_roles_[i];
    auto same = [&](const QueueRole& q) { return q.queue_id == role.queue_id && q.role == role.role; };
    ReclaimQueueRequest r{};
    r.header = make_header(RecordType::kReclaimQueue, sizeof r, 0);
    copy_string(role.name, r.name, sizeof r.name);
    r.queue_id = role.queue_id;
    r.role = role.role;
    r.count = static_cast<uint32_t>(std::count_if(queue_roles_.begin(), queue_roles_.end(), same));
    Reply reply{};
    const Status s = call_locked(&r, sizeof r, &reply, nullptr);
    if (s.ok()) {
      for (QueueRole& q : queue_roles_) q.claimed = q.claimed || same(q);
    } else if (s.code() == Errc::kInvalidArgument || s.code() == Errc::kPermissionDenied) {
      // The daemon answered no: it lost the queue (a clean stop removed it), or refuses the role. The queue
      // reads closed then, or is still mapped but unknown to the daemon, as had it never been adopted.
      log().info("queue {} (role {}) is gone with the previous daemon ({})", r.queue_id, r.role, s.message());
      std::erase_if(queue_roles_, same);
    } else if (s.code() == Errc::kProtocolError) {
      // A daemon older than kReclaimQueue: it re-claims no queue role (and may close the connection).
      log().warn("shmbusd re-claims no queue roles (an older version): {}", s.message());
      queue_roles_.clear();
      return;
    } else {
      log().warn("could not reclaim role {} on queue {}: {}", r.role, r.queue_id, s.to_string());
      return;  // kept, for the next follow_daemon_restart()
    }
  }
}

Status Connection::reconnect_locked() {
  uint64_t id = 0;
  auto fd = connect_and_greet(socket_path_, name_, timeout_, &id);
  if (!fd) return fd.status();
  if (fd_ >= 0) close(fd_);
  fd_ = fd.value();
  participant_id_ = id;
  // Late answers would come on the old socket, from a daemon that is gone with what it opened.
  abandoned_.clear();
  late_opens_.clear();
  std::size_t reclaimed = 0, lost = 0;
  for (auto it = endpoints_.begin(); it != endpoints_.end();) {
    ReclaimRequest& e = it->request;
    e.header = make_header(RecordType::kReclaim, sizeof e, 0);
    Reply reply{};
    const Status s = call_locked(&e, sizeof e, &reply, nullptr);
    if (s.ok()) {
      ++reclaimed, ++it;
    } else if (s.code() == Errc::kInvalidArgument || s.code() == Errc::kPermissionDenied) {
      // The daemon answered no: it lost the topic (a SIGTERM removed it), or the endpoint is not an orphan of
      // ours. Its owner re-opens the topic at its next use.
      log().info("endpoint {} on topic {} is gone with the previous daemon ({}); its owner re-opens it",
                 e.endpoint_id, e.topic_id, s.message());
      it->lost->store(true, std::memory_order_relaxed);  // the owner reads nothing else through it
      it = endpoints_.erase(it);
      ++lost;
    } else {
      // No answer (the daemon went away again, or timed out): keep it, to reclaim at the next reconnect.
      log().warn("could not reclaim endpoint {} on topic {}: {}", e.endpoint_id, e.topic_id, s.to_string());
      ++it;
    }
  }
  for (QueueRole& q : queue_roles_) q.claimed = false;  // a new daemon: it knows none of them
  reclaim_queue_roles_locked();
  const auto roles =
      std::count_if(queue_roles_.begin(), queue_roles_.end(), [](const QueueRole& q) { return q.claimed; });
  log().info(
      "reconnected to a restarted shmbusd; reclaimed {} topic endpoint(s) ({} to re-open) and {} of {} "
      "queue role(s)",
      reclaimed, lost, roles, queue_roles_.size());
  return Status::Ok();
}

Connection::~Connection() {
  if (fd_ >= 0) close(fd_);
}

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
  Status s = call_locked(request, size, reply, fd);
  if (s.code() != Errc::kDaemonUnavailable || socket_path_.empty()) return s;
  // The daemon died or restarted: reconnect once, then retry the request.
  if (Status r = reconnect_locked(); !r.ok()) return s;
  return call_locked(request, size, reply, fd);
}

Status Connection::call_locked(void* request, std::size_t size, Reply* reply, int* fd) {
  close_late_opens_locked();
  Status s = exchange_locked(request, size, reply, fd);
  close_late_opens_locked();  // late answers skipped while waiting for this one: their endpoints go at once
  return s;
}

Status Connection::exchange_locked(void* request, std::size_t size, Reply* reply, int* fd) {
  if (fd) *fd = -1;
  if (Status s = send_locked(request, size); !s.ok()) return s;
  const auto* sent = static_cast<const RecordHeader*>(request);
  const uint32_t id = sent->request_id;
  const ssize_t n = receive_locked(reply, sizeof *reply, fd);
  if (n < 0 && errno == ETIMEDOUT) {
    abandon(request);
    return {Errc::kTimeout, "the daemon did not answer in time"};
  }
  if (n == 0 || (n < 0 && errno != EMSGSIZE))
    return {Errc::kDaemonUnavailable, "the daemon closed the connection"};
  RecordType type{};
  Status s = n < 0 ? Status{Errc::kProtocolError, "an oversized record from the daemon"}
                   : check_record(reply, static_cast<std::size_t>(n), &type);
  if (s.ok() && (type != RecordType::kReply || reply->header.request_id != id)) {
    s = {Errc::kProtocolError, "unexpected record from the daemon"};
  }
  if (!s.ok()) {
    if (fd && *fd >= 0) close(*fd), *fd = -1;
    abandon(request);  // our answer may still come: it must not be taken for the next call's
    return s;
  }
  const auto message = read_string(reply->message, sizeof reply->message).value_or("");
  if (reply->code != 0) {
    if (fd && *fd >= 0) close(*fd), *fd = -1;
    const int code = reply->code;
    if (code < 0 || code > static_cast<int>(Errc::kClosed)) return {Errc::kProtocolError, "bad reply code"};
    return {static_cast<Errc>(code), message};
  }
  return Status::Ok();
}

void Connection::abandon(const void* request) {
  RecordHeader h;
  std::memcpy(&h, request, sizeof h);
  uint32_t queue_role = 0;
  if (h.type == static_cast<uint16_t>(RecordType::kOpenQueue)) {
    std::memcpy(&queue_role, static_cast<const std::byte*>(request) + offsetof(OpenQueueRequest, role),
                sizeof queue_role);
  }
  // Bounded: a daemon that never answers again must not grow this for ever (it is then reconnected to, or
  // gone, and the oldest ids will not come back).
  if (abandoned_.size() >= 64) abandoned_.erase(abandoned_.begin());
  abandoned_.push_back({h.request_id, static_cast<RecordType>(h.type), queue_role});
}

ssize_t Connection::receive_locked(void* buffer, std::size_t capacity, int* fd) {
  const auto deadline = std::chrono::steady_clock::now() + timeout_;
  // Every record whole, whatever the caller expects: a late answer may be larger (a statistics chunk).
  alignas(8) std::byte record[kMaxRecordBytes];
  for (;;) {
    const auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    const ssize_t n =
        receive_record(fd_, record, sizeof record, std::max(left, std::chrono::milliseconds(0)), fd);
    if (n <= 0) return n;
    if (late_reply(record, static_cast<std::size_t>(n), fd)) continue;
    if (static_cast<std::size_t>(n) > capacity) {
      if (fd && *fd >= 0) close(*fd), *fd = -1;
      errno = EMSGSIZE;
      return -1;
    }
    std::memcpy(buffer, record, static_cast<std::size_t>(n));
    return n;
  }
}

bool Connection::late_reply(const void* record, std::size_t size, int* fd) {
  if (abandoned_.empty() || size < sizeof(RecordHeader)) return false;
  RecordHeader h;
  std::memcpy(&h, record, sizeof h);
  const auto it = std::find_if(abandoned_.begin(), abandoned_.end(),
                               [&](const Abandoned& a) { return a.request_id == h.request_id; });
  if (it == abandoned_.end()) return false;
  if (fd && *fd >= 0) close(*fd), *fd = -1;
  RecordType type{};
  if (h.type == static_cast<uint16_t>(RecordType::kStatsChunk)) {
    StatsChunk chunk;
    if (size == sizeof chunk && check_record(record, size, &type).ok()) {
      std::memcpy(&chunk, record, sizeof chunk);
      if (chunk.last == 0) return true;  // more chunks to come
    }
  } else if (h.type == static_cast<uint16_t>(RecordType::kReply) && size == sizeof(Reply) &&
             check_record(record, size, &type).ok()) {
    Reply reply;
    std::memcpy(&reply, record, sizeof reply);
    const bool opened = it->type == RecordType::kOpenPublisher || it->type == RecordType::kOpenSubscriber ||
                        it->type == RecordType::kOpenQueue;
    if (opened && reply.code == 0) {
      late_opens_.push_back({it->type, reply.topic_id, it->queue_role, reply.slot, reply.generation});
    }
  }
  log().warn("a late answer to request {} (given up after {} ms) was skipped", h.request_id,
             timeout_.count());
  abandoned_.erase(it);
  return true;
}

void Connection::close_late_opens_locked() {
  if (late_opens_.empty()) return;
  std::vector<LateOpen> pending;
  pending.swap(late_opens_);  // call_locked below comes back here: nothing to do then
  for (const LateOpen& o : pending) {
    Reply reply{};
    Status s;
    if (o.opened == RecordType::kOpenQueue) {
      CloseQueueRequest c{};
      c.header = make_header(RecordType::kCloseQueue, sizeof c, 0);
      c.queue_id = o.id;
      c.role = o.role;
      s = call_locked(&c, sizeof c, &reply, nullptr);
    } else {
      CloseRequest c{};
      c.header = make_header(RecordType::kClose, sizeof c, 0);
      c.topic_id = o.id;
      c.role = o.opened == RecordType::kOpenPublisher ? kRolePublisher : kRoleSubscriber;
      c.slot = o.slot;
      c.generation = o.generation;
      s = call_locked(&c, sizeof c, &reply, nullptr);
    }
    log().info("closed the endpoint (topic or queue {}) that a timed-out open created: {}", o.id,
               s.to_string());
  }
}

Result<std::string> Connection::stats() {
  std::lock_guard lock(mutex_);
  StatsRequest request{};
  request.header = make_header(RecordType::kStats, sizeof request, 0);
  if (Status s = send_locked(&request, sizeof request); !s.ok()) {
    if (Status r = reconnect_locked(); !r.ok()) return s;
    if (Status again = send_locked(&request, sizeof request); !again.ok()) return again;
  }
  const uint32_t id = request.header.request_id;
  std::string document;
  for (;;) {
    StatsChunk chunk{};
    const ssize_t n = receive_locked(&chunk, sizeof chunk, nullptr);
    if (n < 0 && errno == ETIMEDOUT) {
      abandon(&request);  // its remaining chunks are skipped when they come
      return Status{Errc::kTimeout, "the daemon did not answer in time"};
    }
    if (n == 0 || (n < 0 && errno != EMSGSIZE)) {
      return Status{Errc::kDaemonUnavailable, "the daemon closed the connection"};
    }
    RecordType type{};
    Status s = n < 0 ? Status{Errc::kProtocolError, "an oversized record from the daemon"}
                     : check_record(&chunk, static_cast<std::size_t>(n), &type);
    if (s.ok() && (type != RecordType::kStatsChunk || chunk.size > sizeof chunk.data ||
                   chunk.header.request_id != id)) {
      s = {Errc::kProtocolError, "unexpected record from the daemon"};
    }
    if (!s.ok()) {
      abandon(&request);  // chunks of ours still to come are skipped
      return s;
    }
    document.append(chunk.data, chunk.size);
    if (chunk.last) return document;
  }
}

}  // namespace shmbus::detail

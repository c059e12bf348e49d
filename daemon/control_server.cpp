#include "daemon/control_server.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <spdlog/spdlog.h>
#include <toml++/toml.h>
#include <cerrno>
#include <cstring>
#include <sstream>

#include "bus/control_protocol.h"
#include "bus/record_socket.h"
#include "bus/runtime_paths.h"
#include "daemon/access_policy.h"
#include "shm/segment.h"
#include "shmbus/topic_name.h"

namespace shmbus::daemon {

using namespace shmbus::detail;

namespace {

// How long the listening socket is left alone after accept4 failed for want of descriptors or memory.
constexpr std::chrono::milliseconds kAcceptBackoff{100};
// How long an admitted connection may take to send its hello before it is closed.
constexpr std::chrono::seconds kHelloTimeout{10};
// How long a refused connection may take to send its hello before it is closed unanswered.
constexpr std::chrono::seconds kRefusalTimeout{1};
// Refused connections answered at a time; beyond that they are closed at once (without a reason).
constexpr std::size_t kMaxRefusals = 32;

int open_spare_fd() {
  return open("/dev/null", O_RDONLY | O_CLOEXEC);
}

}  // namespace

Result<std::unique_ptr<ControlServer>> ControlServer::start(const std::string& instance,
                                                            const std::string& runtime_dir,
                                                            const DaemonConfig& config) {
  if (Status s = validate_instance_name(instance); !s.ok()) return s;
  if (mkdir(runtime_dir.c_str(), 0755) != 0 && errno != EEXIST) {
    return Status{Errc::kInternal,
                  "cannot create runtime directory " + runtime_dir + ": " + std::strerror(errno)};
  }
  auto lock = InstanceLock::acquire(lock_path(runtime_dir, instance));
  if (!lock) return lock.status();
  const std::string path = socket_path(runtime_dir, instance);
  unlink(path.c_str());
  std::unique_ptr<ControlServer> server(new ControlServer(std::move(lock).value(), instance, path, config));
  // We hold the lock, so whatever carries this instance's names belongs to a predecessor that died. Topics
  // still in use keep working: adopt them; the rest is removed (and unused topics go at the first tick).
  // Queue segments ("...q<id>") are the queue registry's to adopt.
  const auto stale = shm::Segment::list(segment_prefix(instance) + "t");
  if (!stale.empty()) spdlog::warn("found {} segment(s) of a crashed daemon: adopting", stale.size());
  server->registry_.adopt(stale);
  server->queues_.adopt();
  server->supervisor_ = std::make_unique<ProcessSupervisor>(
      config.processes,
      std::vector<std::string>{"SHMBUS_INSTANCE=" + instance, "SHMBUS_RUNTIME_DIR=" + runtime_dir});
  sockaddr_un addr{};
  if (path.size() >= sizeof addr.sun_path)
    return Status{Errc::kInvalidArgument, "socket path too long: " + path};
  addr.sun_family = AF_UNIX;
  std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  server->listen_fd_ = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (server->listen_fd_ < 0 ||
      bind(server->listen_fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
      chmod(path.c_str(), 0666) != 0 || listen(server->listen_fd_, 128) != 0) {
    return Status{Errc::kInternal, "cannot listen on " + path + ": " + std::strerror(errno)};
  }
  server->queues_.announce();  // only now: the users of adopted queues reconnect at once

  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  sigprocmask(SIG_BLOCK, &signals, nullptr);
  signal(SIGPIPE, SIG_IGN);
  server->signal_fd_ = signalfd(-1, &signals, SFD_CLOEXEC | SFD_NONBLOCK);
  server->spare_fd_ = open_spare_fd();
  spdlog::info("shmbusd serving instance '{}' on {}", instance, path);
  return server;
}

ControlServer::~ControlServer() {
  supervisor_.reset();  // supervised clients go first, while their topics still exist
  for (auto& [fd, p] : participants_) close(fd);
  for (auto& [fd, r] : refusals_) close(fd);
  if (spare_fd_ >= 0) close(spare_fd_);
  registry_.shutdown();
  queues_.shutdown();
  if (listen_fd_ >= 0) {
    close(listen_fd_);
    unlink(socket_path_.c_str());
  }
  if (signal_fd_ >= 0) close(signal_fd_);
}

int ControlServer::run() {
  std::vector<pollfd> fds;
  for (;;) {
    fds.clear();
    fds.push_back({signal_fd_, POLLIN, 0});
    // A negative descriptor is skipped by poll: the listening socket rests while accepting fails.
    fds.push_back({Clock::now() < accept_paused_until_ ? -1 : listen_fd_, POLLIN, 0});
    for (const auto& [fd, p] : participants_) fds.push_back({fd, POLLIN, 0});
    for (const auto& [fd, r] : refusals_) fds.push_back({fd, POLLIN, 0});
    const int n = poll(fds.data(), fds.size(), 100);
    if (n < 0 && errno != EINTR) {
      spdlog::error("poll: {}", std::strerror(errno));
      return 1;
    }
    if (fds[0].revents & POLLIN) {
      signalfd_siginfo info{};
      if (read(signal_fd_, &info, sizeof info) > 0) {
        spdlog::info("signal {} received: shutting down", info.ssi_signo);
        return 0;
      }
    }
    if (fds[1].revents & POLLIN) accept_participants();
    for (std::size_t i = 2; i < fds.size(); ++i) {
      if (fds[i].revents == 0) continue;
      if (refusals_.contains(fds[i].fd)) {
        finish_refusal(fds[i].fd);
        continue;
      }
      if ((fds[i].revents & POLLIN) ? !serve(fds[i].fd) : true) disconnect(fds[i].fd);
    }
    bool spare_lent = false;
    for (auto it = refusals_.begin(); it != refusals_.end();) {
      auto next = std::next(it);
      if (Clock::now() >= it->second.deadline) {
        close_refusal(it);
      } else {
        spare_lent = spare_lent || it->second.holds_spare;
      }
      it = next;
    }
    for (auto it = participants_.begin(); it != participants_.end();) {
      const auto next = std::next(it);
      if (!it->second.greeted && Clock::now() >= it->second.hello_deadline) {
        spdlog::warn("pid {} uid {} connected but said no hello within {} s: disconnected",
                     it->second.peer.pid, it->second.peer.uid, kHelloTimeout.count());
        disconnect(it->first);
      }
      it = next;
    }
    // Reopening the spare fails while the daemon is at its limit; it is tried again until it succeeds.
    if (spare_fd_ < 0 && !spare_lent) spare_fd_ = open_spare_fd();
    registry_.tick();
    queues_.tick();
    if (supervisor_) supervisor_->tick();
    for (uint64_t peer : registry_.take_fenced()) {
      for (const auto& [fd, p] : participants_) {
        if (p.peer.id == peer) {
          disconnect(fd);
          break;
        }
      }
    }
  }
}

void ControlServer::accept_participants() {
  for (;;) {
    const int fd = accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno == EINTR || errno == ECONNABORTED) continue;
      if (errno != EAGAIN && errno != EWOULDBLOCK) accept_failed(errno);
      return;
    }
    if (accept_failing_) {
      spdlog::warn("accepting participants again ({} connected)", participants_.size());
      accept_failing_ = false;
    }
    ucred cred{};
    socklen_t len = sizeof cred;
    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0) {
      close(fd);
      continue;
    }
    if (participants_.size() >= config_.max_participants) {
      spdlog::warn("refusing pid {} uid {}: max_participants ({}) reached", cred.pid, cred.uid,
                   config_.max_participants);
      refuse(fd,
             {Errc::kExhausted, fmt::format("max_participants ({0}) reached: the daemon serves at most {0} "
                                            "participants at a time",
                                            config_.max_participants)},
             /*holds_spare=*/false);
      continue;
    }
    // A participant that stops reading must not stall the daemon: replies time out after a second.
    timeval tv{1, 0};
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    Participant p;
    p.peer.id = next_peer_id_++;
    p.peer.pid = cred.pid;
    p.peer.uid = cred.uid;
    p.peer.gid = cred.gid;
    p.peer.groups = peer_groups(fd);
    p.hello_deadline = Clock::now() + kHelloTimeout;
    participants_[fd] = std::move(p);
  }
}

void ControlServer::accept_failed(int err) {
  accept_paused_until_ = Clock::now() + kAcceptBackoff;
  rlimit limit{};
  getrlimit(RLIMIT_NOFILE, &limit);
  const std::string why = std::string(std::strerror(err)) + "; RLIMIT_NOFILE " +
                          std::to_string(limit.rlim_cur) + ", " + std::to_string(participants_.size()) +
                          " participants";
  if (!accept_failing_) {
    spdlog::error("cannot accept participants ({}); refusing new connections until descriptors free up", why);
    accept_failing_ = true;
  }
  if ((err != EMFILE && err != ENFILE) || spare_fd_ < 0) return;
  // The spare descriptor trick: give up the reserved descriptor to accept one waiting connection and tell it
  // why, instead of leaving it to time out.
  close(spare_fd_);
  spare_fd_ = -1;
  const int fd = accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
  if (fd < 0) {
    spare_fd_ = open_spare_fd();
    return;
  }
  refuse(fd, {Errc::kExhausted, "shmbusd is out of file descriptors (" + why + "); try again later"},
         /*holds_spare=*/true);
}

void ControlServer::refuse(int fd, Status reason, bool holds_spare) {
  if (refusals_.size() >= kMaxRefusals && !holds_spare) {
    close(fd);
    return;
  }
  refusals_[fd] = Refusal{std::move(reason), Clock::now() + kRefusalTimeout, holds_spare};
}

void ControlServer::finish_refusal(int fd) {
  auto it = refusals_.find(fd);
  alignas(8) unsigned char buffer[kMaxRecordBytes];
  int stray_fd = -1;
  const ssize_t n = receive_record(fd, buffer, sizeof buffer, std::chrono::milliseconds(0), &stray_fd);
  if (stray_fd >= 0) close(stray_fd);
  RecordType type{};
  if (n > 0 && check_record(buffer, static_cast<std::size_t>(n), &type).ok() && type == RecordType::kHello) {
    RecordHeader header;
    std::memcpy(&header, buffer, sizeof header);
    Reply reply{};
    reply.header = make_header(RecordType::kReply, sizeof reply, header.request_id);
    reply.code = static_cast<int32_t>(it->second.reason.code());
    copy_string(it->second.reason.message(), reply.message, sizeof reply.message);
    // A fresh socket's buffer is empty: this does not block. The client reads the reply before the EOF.
    send_record(fd, &reply, sizeof reply);
  }
  close_refusal(it);
}

void ControlServer::close_refusal(std::map<int, Refusal>::iterator it) {
  close(it->first);
  if (it->second.holds_spare) spare_fd_ = open_spare_fd();
  refusals_.erase(it);
}

bool ControlServer::serve(int fd) {
  Participant& participant = participants_.at(fd);
  alignas(8) unsigned char buffer[kMaxRecordBytes];
  int stray_fd = -1;
  const ssize_t n = receive_record(fd, buffer, sizeof buffer, std::chrono::milliseconds(0), &stray_fd);
  if (stray_fd >= 0) close(stray_fd);
  if (n <= 0) return false;
  Reply reply{};
  auto answer = [&](const Status& s, int pass_fd = -1) {
    reply.header = make_header(RecordType::kReply, sizeof reply, reply.header.request_id);
    reply.code = static_cast<int32_t>(s.code());
    copy_string(s.message(), reply.message, sizeof reply.message);
    const bool sent = send_record(fd, &reply, sizeof reply, pass_fd);
    if (pass_fd >= 0) close(pass_fd);
    return sent;
  };
  RecordType type{};
  Status valid = check_record(buffer, static_cast<std::size_t>(n), &type);
  if (!valid.ok()) {
    spdlog::warn("malformed record from pid {} uid {}: {}; disconnecting", participant.peer.pid,
                 participant.peer.uid, valid.message());
    answer(valid);
    return false;
  }
  RecordHeader header;
  std::memcpy(&header, buffer, sizeof header);
  reply.header.request_id = header.request_id;
  switch (type) {
    case RecordType::kHello: {
      HelloRequest r;
      std::memcpy(&r, buffer, sizeof r);
      participant.peer.name = read_string(r.name, sizeof r.name).value_or("?");
      participant.greeted = true;
      reply.participant_id = participant.peer.id;
      spdlog::info("participant {} connected: pid {} uid {} ({})", participant.peer.id, participant.peer.pid,
                   participant.peer.uid, participant.peer.name);
      return answer(Status::Ok());
    }
    case RecordType::kOpenPublisher:
    case RecordType::kOpenSubscriber: {
      OpenRequest r;
      std::memcpy(&r, buffer, sizeof r);
      const auto topic = read_string(r.topic, sizeof r.topic);
      if (!topic) return answer({Errc::kProtocolError, "topic field is not terminated"});
      if (Status s = validate_topic_name(*topic); !s.ok()) return answer(s);
      const TopicSettings requested = from_wire(r.settings);
      auto attached = type == RecordType::kOpenPublisher
                          ? registry_.attach_publisher(*topic, requested, participant.peer)
                          : registry_.attach_subscriber(*topic, requested, r.history, participant.peer);
      if (!attached) {
        spdlog::info("refused {} on {} for pid {}: {}",
                     type == RecordType::kOpenPublisher ? "publisher" : "subscriber", *topic,
                     participant.peer.pid, attached.status().message());
        return answer(attached.status());
      }
      const Attached& a = attached.value();
      if (a.fd < 0) {  // duplicating the segment's descriptor failed: at RLIMIT_NOFILE, in practice
        const std::string why = std::strerror(errno);
        registry_.detach(a.endpoint, participant.peer.id);
        return answer({Errc::kExhausted, "topic " + *topic + ": shmbusd cannot pass its shared memory (" +
                                             why + "); out of file descriptors?"});
      }
      participant.endpoints.push_back(a.endpoint);
      reply.topic_id = a.endpoint.topic_id;
      reply.slot = a.endpoint.slot;
      reply.generation = a.endpoint.generation;
      reply.participant_id = a.endpoint.id;
      reply.settings = to_wire(a.settings);
      return answer(Status::Ok(), a.fd);
    }
    case RecordType::kClose: {
      CloseRequest r;
      std::memcpy(&r, buffer, sizeof r);
      auto& eps = participant.endpoints;
      for (auto it = eps.begin(); it != eps.end(); ++it) {
        if (it->topic_id == r.topic_id && it->role == r.role && it->slot == r.slot) {
          registry_.detach(*it, participant.peer.id);
          eps.erase(it);
          break;
        }
      }
      return answer(Status::Ok());
    }
    case RecordType::kReclaim: {
      ReclaimRequest r;
      std::memcpy(&r, buffer, sizeof r);
      const Endpoint e{r.topic_id, r.role, r.slot, 0, r.endpoint_id};
      Status s = registry_.reclaim(e, participant.peer);
      if (s.ok()) {
        participant.endpoints.push_back(e);
        spdlog::info("participant {} (pid {}) reclaimed endpoint {}", participant.peer.id,
                     participant.peer.pid, e.id);
      }
      return answer(s);
    }
    case RecordType::kOpenQueue: {
      OpenQueueRequest r;
      std::memcpy(&r, buffer, sizeof r);
      const auto name = read_string(r.name, sizeof r.name);
      if (!name) return answer({Errc::kProtocolError, "queue name field is not terminated"});
      if (r.role != kReplyOwner && r.role != kReplyWriter) {
        if (Status s = validate_topic_name(*name); !s.ok()) return answer(s);
      }
      auto opened = queues_.open(*name, from_wire(r.settings), r.role, r.queue_id, participant.peer);
      if (!opened) {
        spdlog::info("refused queue {} (role {}) for pid {}: {}", *name, r.role, participant.peer.pid,
                     opened.status().message());
        return answer(opened.status());
      }
      reply.topic_id = opened->queue_id;
      reply.participant_id = participant.peer.id;
      return answer(Status::Ok(), opened->fd);
    }
    case RecordType::kCloseQueue: {
      CloseQueueRequest r;
      std::memcpy(&r, buffer, sizeof r);
      queues_.close(r.queue_id, r.role, participant.peer);
      return answer(Status::Ok());
    }
    case RecordType::kReclaimQueue: {
      ReclaimQueueRequest r;
      std::memcpy(&r, buffer, sizeof r);
      const auto name = read_string(r.name, sizeof r.name);
      if (!name) return answer({Errc::kProtocolError, "queue name field is not terminated"});
      return answer(queues_.reclaim(r.queue_id, *name, r.role, r.count, participant.peer));
    }
    case RecordType::kStats:
      // A client that does not read its statistics is disconnected: each send may block this loop for the
      // send timeout, and a full socket would block every later one.
      return send_stats(fd, header.request_id);
    default:
      return answer({Errc::kProtocolError, "unexpected record type"});
  }
}

void ControlServer::disconnect(int fd) {
  auto it = participants_.find(fd);
  if (it == participants_.end()) return;
  const Participant& p = it->second;
  if (!p.endpoints.empty()) {
    spdlog::info("participant {} (pid {}) gone: reclaiming {} endpoint(s)", p.peer.id, p.peer.pid,
                 p.endpoints.size());
  }
  for (const Endpoint& e : p.endpoints) registry_.detach(e, p.peer.id);
  registry_.forget_peer(p.peer.id);
  queues_.peer_gone(p.peer);
  close(fd);
  participants_.erase(it);
}

bool ControlServer::send_stats(int fd, uint32_t request_id) {
  toml::table doc;
  doc.insert("daemon",
             toml::table{{"instance", instance_},
                         {"pid", static_cast<int64_t>(getpid())},
                         {"uptime_s",
                          std::chrono::duration<double>(std::chrono::steady_clock::now() - started_).count()},
                         {"topics", static_cast<int64_t>(registry_.topic_count())},
                         {"participants", static_cast<int64_t>(participants_.size())}});
  registry_.report(&doc);
  queues_.report(&doc);
  toml::array people;
  for (const auto& [pfd, p] : participants_) {
    people.push_back(toml::table{{"id", static_cast<int64_t>(p.peer.id)},
                                 {"pid", static_cast<int64_t>(p.peer.pid)},
                                 {"uid", static_cast<int64_t>(p.peer.uid)},
                                 {"gid", static_cast<int64_t>(p.peer.gid)},
                                 {"name", p.peer.name},
                                 {"endpoints", static_cast<int64_t>(p.endpoints.size())}});
  }
  doc.insert("participant", std::move(people));
  if (supervisor_) supervisor_->report(&doc);
  std::ostringstream out;
  out << doc;
  const std::string text = out.str();
  std::size_t offset = 0;
  do {
    StatsChunk chunk{};
    chunk.header = make_header(RecordType::kStatsChunk, sizeof chunk, request_id);
    chunk.size = static_cast<uint32_t>(std::min(sizeof chunk.data, text.size() - offset));
    std::memcpy(chunk.data, text.data() + offset, chunk.size);
    offset += chunk.size;
    chunk.last = offset >= text.size();
    if (!send_record(fd, &chunk, sizeof chunk)) {
      spdlog::warn("a participant does not read its statistics ({}); disconnecting", std::strerror(errno));
      return false;
    }
  } while (offset < text.size());
  return true;
}

}  // namespace shmbus::daemon

// A participant's control connection to shmbusd: one socket per Bus, requests answered in order.
// The daemon identifies the participant from the socket (SO_PEERCRED) and reclaims all it held when the
// socket closes, which the kernel does when the process dies.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "bus/control_protocol.h"
#include "shmbus/status.h"

namespace shmbus::detail {

// How often a publisher or subscriber whose daemon went away tries to re-open its topic while that fails.
inline constexpr std::chrono::milliseconds kReopenRetry{100};

class Connection {
 public:
  // Connects and says hello. kDaemonUnavailable names the socket path when nobody listens.
  static Result<std::shared_ptr<Connection>> open(const std::string& socket_path, const std::string& name,
                                                  std::chrono::milliseconds timeout);
  ~Connection();
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  // Sends `request` (a complete record) and waits for the Reply. A descriptor passed with the reply goes to
  // `*fd` (the caller closes it). The reply's code is turned into the returned Status.
  Status call(void* request, std::size_t size, Reply* reply, int* fd = nullptr);

  // Endpoints this connection owns, re-claimed from a restarted daemon after a reconnect. An endpoint the
  // restarted daemon refuses (it lost the topic, or the endpoint is not an orphan of ours) is forgotten and
  // `*lost` is set: its owner must open a new endpoint (and must not close the old one: that daemon is gone,
  // and a close would reach its successor). `lost` outlives the registration (remove_endpoint).
  void add_endpoint(const ReclaimRequest& endpoint, std::atomic<bool>* lost);
  void remove_endpoint(uint32_t topic_id, uint32_t role, uint32_t slot);
  // Queue roles this connection holds (one registration per QueueAttachment), re-claimed likewise. A role
  // the restarted daemon refuses is forgotten: its queue reads closed (a clean stop removed it) or it is
  // still mapped but unknown to the daemon, as it would be had it never been adopted.
  void add_queue_role(uint32_t queue_id, uint32_t role, const std::string& name);
  void remove_queue_role(uint32_t queue_id, uint32_t role);
  // Reconnects (and re-claims) if the daemon closed our socket, i.e. it died, without a round trip when it
  // did not; then re-claims the queue roles an earlier attempt could not. What a queue's user calls once the
  // queue shows another daemon epoch: a client that only moves data through shared memory would otherwise
  // never tell the new daemon what it holds. Ok once every queue role is re-claimed (or refused for good).
  Status follow_daemon_restart();

  // Asks for the daemon's statistics document (TOML text).
  Result<std::string> stats();

  const std::string& instance() const { return instance_; }
  uint64_t participant_id() const { return participant_id_; }
  void set_instance(std::string instance) { instance_ = std::move(instance); }

 private:
  Connection(int fd, std::chrono::milliseconds timeout) : fd_(fd), timeout_(timeout) {}
  static Result<int> connect_and_greet(const std::string& socket_path, const std::string& name,
                                       std::chrono::milliseconds timeout, uint64_t* participant_id);
  Status send_locked(void* request, std::size_t size);
  // exchange_locked, with the endpoints late answers created closed before and after.
  Status call_locked(void* request, std::size_t size, Reply* reply, int* fd);
  // Sends `request` and receives its answer, skipping late answers to abandoned requests.
  Status exchange_locked(void* request, std::size_t size, Reply* reply, int* fd);
  // Remembers a request whose caller stopped waiting for its answer (`request`: the record sent).
  void abandon(const void* request);
  // Receives the next record into `buffer`, skipping those that answer abandoned requests (late_reply).
  // Returns its size, or -1 with errno (ETIMEDOUT after `timeout`), or 0 when the daemon closed the socket.
  ssize_t receive_locked(void* buffer, std::size_t capacity, int* fd);
  // A record answering an abandoned request: true if it was one (consumed; fds closed; a late successful open
  // of a topic or queue queued for closing once the current exchange ends).
  bool late_reply(const void* record, std::size_t size, int* fd);
  // Closes the endpoints that abandoned opens created after all (their owners gave up on them).
  void close_late_opens_locked();
  // The daemon went away (crash or restart): connect to its successor and re-claim our endpoints, which it
  // adopted from shared memory. Our data path never stopped.
  Status reconnect_locked();

  std::mutex mutex_;  // one request in flight at a time
  int fd_;
  std::chrono::milliseconds timeout_;
  uint32_t next_request_id_ = 1;
  uint64_t participant_id_ = 0;
  std::string instance_;
  std::string socket_path_;
  std::string name_;
  struct OwnedEndpoint {
    ReclaimRequest request;
    std::atomic<bool>* lost;
  };
  std::vector<OwnedEndpoint> endpoints_;
  struct QueueRole {
    uint32_t queue_id;
    uint32_t role;
    std::string name;     // as opened ("" for a response queue)
    bool claimed = true;  // known to the current daemon (opened with it, or re-claimed)
  };
  std::vector<QueueRole> queue_roles_;
  // Re-claims the queue roles the current daemon does not know yet; stops at the first that gets no answer.
  void reclaim_queue_roles_locked();
  // Requests whose caller stopped waiting (a timeout). Their replies may still come, ahead of the next
  // call's: they are recognised by id and skipped, or the connection would stay one reply behind for good.
  struct Abandoned {
    uint32_t request_id;
    RecordType type;
    uint32_t queue_role;  // kOpenQueue: the role asked for
  };
  std::vector<Abandoned> abandoned_;
  // Endpoints an abandoned open created after all, closed as soon as the call that met their answer ends.
  struct LateOpen {
    RecordType opened;  // kOpenPublisher, kOpenSubscriber or kOpenQueue
    uint32_t id;        // topic or queue id
    uint32_t role;      // kOpenQueue: the queue role
    uint32_t slot;
    uint32_t generation;
  };
  std::vector<LateOpen> late_opens_;
};

}  // namespace shmbus::detail

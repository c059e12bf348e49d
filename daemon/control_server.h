// shmbusd's control plane: a SOCK_SEQPACKET Unix socket, one connection per participant, identity from
// SO_PEERCRED, one thread running a poll loop. A participant's endpoints are reclaimed as soon as its
// connection closes, which the kernel does the moment the process dies (kill -9 included).
#pragma once

#include <chrono>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "daemon/daemon_config.h"
#include "daemon/instance_lock.h"
#include "daemon/process_supervisor.h"
#include "daemon/queue_registry.h"
#include "daemon/topic_registry.h"

namespace shmbus::daemon {

class ControlServer {
 public:
  // Takes the instance lock, removes a crashed predecessor's leftovers, binds the socket.
  static Result<std::unique_ptr<ControlServer>> start(const std::string& instance,
                                                      const std::string& runtime_dir,
                                                      const DaemonConfig& config);
  ~ControlServer();

  // Serves until SIGTERM or SIGINT, then shuts down cleanly (no segment, no socket left). Returns an exit
  // code.
  int run();

 private:
  struct Participant {
    Peer peer;
    std::vector<Endpoint> endpoints;
    // A connection must say hello first, within kHelloTimeout, or it is closed: silent connections would
    // otherwise hold participant places (max_participants) for ever.
    bool greeted = false;
    std::chrono::steady_clock::time_point hello_deadline;
  };

  ControlServer(InstanceLock lock, std::string instance, std::string socket_path, const DaemonConfig& config)
      : lock_(std::move(lock)),
        instance_(std::move(instance)),
        socket_path_(std::move(socket_path)),
        config_(config),
        registry_(instance_, config),
        queues_(instance_, config) {}

  using Clock = std::chrono::steady_clock;

  // A connection accepted only to be refused with a clear reason (max_participants reached, or no descriptor
  // left): its hello is answered with a Reply carrying `reason`, then it is closed.
  struct Refusal {
    Status reason;
    Clock::time_point deadline;  // closed unanswered if no hello arrived by then
    bool holds_spare = false;    // accepted on the descriptor spare_fd_ kept free; reopen it when closed
  };

  void accept_participants();
  // accept4 failed with `err` (descriptors or memory exhausted): stop polling the listening socket for a
  // while (it stays readable, so polling it would spin), and refuse one waiting connection on the spare.
  void accept_failed(int err);
  void refuse(int fd, Status reason, bool holds_spare);
  // Answers the refused connection's hello if it arrived, then closes it.
  void finish_refusal(int fd);
  void close_refusal(std::map<int, Refusal>::iterator it);
  // Handles one record from `fd`; false when the participant must be disconnected.
  bool serve(int fd);
  void disconnect(int fd);
  // Sends the statistics document in chunks answering `request_id`; false if the client did not take them.
  bool send_stats(int fd, uint32_t request_id);

  InstanceLock lock_;
  std::string instance_;
  std::string socket_path_;
  DaemonConfig config_;
  TopicRegistry registry_;
  QueueRegistry queues_;
  std::unique_ptr<ProcessSupervisor> supervisor_;
  int listen_fd_ = -1;
  int signal_fd_ = -1;
  uint64_t next_peer_id_ = 1;
  std::map<int, Participant> participants_;
  std::map<int, Refusal> refusals_;
  // /dev/null held open so that at RLIMIT_NOFILE one waiting connection can still be accepted and told why.
  int spare_fd_ = -1;
  Clock::time_point accept_paused_until_{};  // the listening socket is not polled before then
  bool accept_failing_ = false;              // logged once per episode, until an accept succeeds again
  std::chrono::steady_clock::time_point started_ = std::chrono::steady_clock::now();
};

}  // namespace shmbus::daemon

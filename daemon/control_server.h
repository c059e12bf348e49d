// shmbusd's control plane: a SOCK_SEQPACKET Unix socket, one connection per participant, identity from
// SO_PEERCRED, one thread running a poll loop. A participant's endpoints are reclaimed as soon as its
// connection closes, which the kernel does the moment the process dies (kill -9 included).
#pragma once

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
  };

  ControlServer(InstanceLock lock, std::string instance, std::string socket_path, const DaemonConfig& config)
      : lock_(std::move(lock)),
        instance_(std::move(instance)),
        socket_path_(std::move(socket_path)),
        config_(config),
        registry_(instance_, config),
        queues_(instance_, config) {}

  void accept_participants();
  // Handles one record from `fd`; false when the participant must be disconnected.
  bool serve(int fd);
  void disconnect(int fd);
  void send_stats(int fd);

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
  std::chrono::steady_clock::time_point started_ = std::chrono::steady_clock::now();
};

}  // namespace shmbus::daemon

// The daemon's work queues and services: creates each queue's memory (shared memory, or a file in data_dir
// for durable queues), hands it to producers and consumers, and does what no client can do for itself: take
// back the deliveries of consumers that died or timed out, fail the calls a dead server held, sync durable
// queues on their interval, recover them after crashes and reboots, and measure them (queueing metrics).
// Like topics, the daemon is not on the data path: send, receive and ack work on the shared memory directly.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "daemon/daemon_config.h"
#include "daemon/topic_registry.h"
#include "shm/mapped_file.h"
#include "shm/segment.h"
#include "shm/work_queue.h"

namespace shmbus::daemon {

struct QueueAttached {
  uint32_t queue_id = 0;
  int fd = -1;  // a duplicate descriptor of the queue's memory for the client; the caller closes it
};

class QueueRegistry {
 public:
  QueueRegistry(std::string instance, const DaemonConfig& config);
  ~QueueRegistry();  // shutdown()

  // Opens `name` for `role` (kQueueProducer ... kReplyWriter, control_protocol.h), creating the queue from
  // the rules, the request and the defaults. kReplyWriter opens the response queue `queue_id`.
  Result<QueueAttached> open(const std::string& name, const QueueSettings& requested, uint32_t role,
                             uint32_t queue_id, const Peer& peer);
  void close(uint32_t queue_id, uint32_t role, const Peer& peer);
  // After a crash of the previous daemon: `peer` held `role` `count` times on the adopted queue `queue_id`
  // named `name` and says so again (its connection reconnected); the count is set, so a repeat is harmless.
  // Checked as an open would be; a response queue (whose name the client does not know) goes back only to the
  // process that created it.
  Status reclaim(uint32_t queue_id, const std::string& name, uint32_t role, uint32_t count, const Peer& peer);
  // A participant disconnected: its endpoints go, its deliveries are taken back (or, on services, its
  // calls failed), its response queues removed.
  void peer_gone(const Peer& peer);

  // Re-opens what a crashed predecessor left (shared-memory queues) and every durable queue file.
  void adopt();
  // Once the daemon listens: tells the users of adopted queues that it changed (their daemon epoch), so
  // that they reconnect and re-claim their roles.
  void announce();
  // Periodic work: visibility timeouts, dead holders, interval syncs, metrics samples, unused queues.
  void tick();
  // Closes every queue (sleepers return), syncs durable files, removes shared-memory queues.
  void shutdown();

  void report(toml::table* doc) const;
  std::size_t queue_count() const { return queues_.size(); }

 private:
  struct Queue;
  Result<Queue*> find_or_create(const std::string& key, const std::string& name, uint32_t kind,
                                const QueueSettings& requested);
  Status authorize(const std::string& name, uint32_t role, const Peer& peer) const;
  const QueueRule* rule_for(const std::string& name) const;
  Status create_memory(Queue& q, const QueueSettings& s);
  void fail_calls(const std::vector<shm::DeliveredEntry>& calls, const std::string& why);
  void release_dead_holders(Queue& q, pid_t pid, bool only_if_dead);
  void remove(uint32_t queue_id);
  // A participant cut `q`'s memory short (ftruncate): grows it back, closes it in that memory and says so.
  // True if so; the caller then removes it.
  bool retire_if_cut_short(Queue& q);
  std::string durable_dir() const;

  std::string instance_;
  DaemonConfig config_;
  std::string boot_id_;
  uint32_t next_id_ = 1;
  uint64_t next_reply_ = 1;
  unsigned ticks_ = 0;
  bool adopting_ = false;  // in adopt(): durable queues keep the ids their files record
  std::map<uint32_t, std::unique_ptr<Queue>> queues_;
  std::map<std::string, uint32_t> by_key_;  // "queue:<name>" or "service:<name>"
  uint64_t cut_short_ = 0;                  // queues retired by retire_if_cut_short
};

}  // namespace shmbus::daemon

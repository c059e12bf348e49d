// The daemon's topics: creates each topic's segment from its settings, hands publisher rings and subscriber
// slots to participants, and takes them back when participants leave or die. The daemon is never on the data
// path: it writes shared memory only when an endpoint attaches or detaches.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "daemon/daemon_config.h"
#include "daemon/toml_table_fwd.h"
#include "shm/segment.h"
#include "shm/topic_segment_layout.h"
#include "shmbus/status.h"

namespace shmbus::daemon {

struct Peer {
  uint64_t id = 0;
  pid_t pid = 0;
  uid_t uid = 0;
  gid_t gid = 0;
  std::vector<gid_t> groups;  // supplementary groups, from the kernel at connect time (SO_PEERGROUPS)
  std::string name;
};

struct Endpoint {
  uint32_t topic_id = 0;
  uint32_t role = 0;  // kRolePublisher or kRoleSubscriber
  uint32_t slot = 0;
  uint32_t generation = 0;
  uint64_t id = 0;
};

struct Attached {
  Endpoint endpoint;
  TopicSettings settings;  // effective, all fields set
  int fd = -1;             // a duplicate of the segment descriptor for the client; the caller closes it
};

class TopicRegistry {
 public:
  TopicRegistry(std::string instance, const DaemonConfig& config);
  ~TopicRegistry();  // shutdown()

  Result<Attached> attach_publisher(const std::string& topic, const TopicSettings& requested,
                                    const Peer& peer);
  Result<Attached> attach_subscriber(const std::string& topic, const TopicSettings& requested,
                                     uint32_t history, const Peer& peer);
  // Detaches an endpoint (close request or the peer's death). Unknown or foreign endpoints are ignored.
  void detach(const Endpoint& endpoint, uint64_t peer_id);

  // Re-adopts the segments a crashed predecessor left (names from Segment::list): their topics keep working
  // for the processes that still use them. Endpoints become orphans, watched by pid until their process
  // reclaims them or dies. Segments that fail validation are removed.
  void adopt(const std::vector<std::string>& segment_names);
  // Hands an adopted endpoint to the peer whose process created it (same pid, same endpoint id).
  Status reclaim(const Endpoint& endpoint, const Peer& peer);

  // Releases what a departed peer had reserved but not yet claimed (subscriber slots of reshaped topics).
  void forget_peer(uint64_t peer_id);

  // Peers caught corrupting shared memory since the last call (a cursor beyond the writer's head, a head that
  // runs backwards); the caller disconnects them, which detaches their endpoints.
  std::vector<uint64_t> take_fenced();

  // Periodic work: reclaim drained dead rings, drop unused topics, update rates, sample queueing metrics.
  void tick();
  // Marks every topic closed, wakes every sleeper, removes every segment.
  void shutdown();

  // Adds [[topic]] to `doc`: statistics per topic and endpoint, and queueing metrics per subscriber over a
  // sliding window ([topic.metrics], [topic.subscriber.metrics]).
  void report(toml::table* doc) const;
  std::size_t topic_count() const { return by_name_.size(); }

 private:
  struct Topic;
  Status authorize(const std::string& name, uint32_t role, const Peer& peer) const;
  Result<Topic*> find_or_create(const std::string& name, const TopicSettings& requested, bool for_publisher);
  // What a new topic `name` opened with `requested` would be (rules, defaults and limits applied), or why it
  // cannot be; changes nothing.
  struct PlannedTopic {
    TopicSettings settings;  // effective
    TopicSettings fixed;     // by the configuration's rule
    shm::TopicGeometry geometry;
  };
  Result<PlannedTopic> plan_topic(const std::string& name, const TopicSettings& requested) const;
  // Creates the planned topic's segment and registers it under `name`.
  Result<Topic*> create_topic(const std::string& name, const PlannedTopic& plan);
  void free_ring(Topic& t, uint32_t ring);
  void reap_orphans(Topic& t);
  void find_corruption(Topic& t);
  void fence(uint64_t peer_id, const std::string& why);
  Result<uint32_t> add_subscriber(Topic& t, uint64_t owner, pid_t pid, uid_t uid, uint32_t history);
  void remove_if_unused(uint32_t topic_id);
  // A participant cut `t`'s segment short (ftruncate): grows it back, closes the topic in it (its users
  // re-open it, on a new segment) and forgets its name. True if so; the caller then drops `t`.
  bool retire_if_cut_short(Topic& t);
  // Takes a queueing-metrics sample of every subscriber of `t` if the last one is kMetricsSampleNs old.
  void sample_metrics(Topic& t, uint64_t now_ns);

  std::string instance_;
  DaemonConfig config_;
  uint32_t next_topic_id_ = 1;
  uint64_t next_endpoint_id_ = 1;
  bool in_tick_ = false;
  std::vector<uint64_t> fenced_;
  uint64_t cut_short_ = 0;  // topics retired by retire_if_cut_short
  std::map<uint32_t, std::unique_ptr<Topic>> topics_;
  std::map<std::string, uint32_t> by_name_;
};

}  // namespace shmbus::daemon

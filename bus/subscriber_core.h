// What a Subscriber owns: its topic mapping, a reader per live publisher ring, and its daemon registration.
#pragma once

#include <array>
#include <memory>
#include <vector>

#include "bus/connection.h"
#include "bus/topic_attachment.h"
#include "shm/ring_reader.h"
#include "shmbus/options.h"

namespace shmbus::detail {

struct RingFollower {
  bool present = false;
  bool publisher_gone = false;  // the ring's publisher is dead or closed: drain, then stop following
  uint64_t publisher_id = 0;
  shm::RingReader reader;
};

struct SubscriberCore {
  std::shared_ptr<Connection> connection;
  TopicAttachment topic;
  SubscriberOptions options;
  uint32_t slot = 0;
  uint64_t id = 0;
  bool attached = false;
  shm::SubscriberSlot* stats = nullptr;
  std::vector<RingFollower> rings;    // indexed by ring (publisher slot)
  std::vector<RingFollower*> active;  // the present ones, polled in turn
  std::size_t next = 0;               // round-robin start
  uint32_t seen_publishers_epoch = ~0u;
  uint64_t taken = 0;
  uint64_t dropped = 0;
  uint32_t held = 0;

  ~SubscriberCore();

  // Opens (or re-opens) this subscriber's endpoint on `topic_name` with the daemon and maps the topic.
  Status attach(const std::string& topic_name);
  // Gives the endpoint back to the daemon.
  void detach();

  // Re-reads the publisher table after the daemon changed it (publishers_epoch moved).
  void refresh(uint32_t epoch);
  // The follower with a ready slot, or nullptr.
  RingFollower* find_ready(shm::SlotHeader** slot);
  static void log_reattach_failure(const Status& s);
  void release(uint32_t ring, uint32_t generation, uint64_t position);
  bool check_epoch() {
    // acquire: pairs with the daemon's release bump after it changed a publisher slot.
    const uint32_t epoch = topic.header()->publishers_epoch.load(std::memory_order_acquire);
    if (epoch == seen_publishers_epoch) return false;
    // relaxed: the epoch's acquire above already ordered it.
    if (topic.header()->closed.load(std::memory_order_relaxed) == shm::kTopicReshaped && held == 0) {
      const std::string name = topic.topic;
      detach();
      if (Status s = attach(name); !s.ok()) log_reattach_failure(s);
      return true;
    }
    refresh(epoch);
    return true;
  }
};

}  // namespace shmbus::detail

// What a Publisher owns: its topic mapping, its ring's writer and its registration with the daemon.
#pragma once

#include <atomic>
#include <chrono>
#include <memory>
#include <string>

#include "bus/connection.h"
#include "bus/stamp_clock.h"
#include "bus/topic_attachment.h"
#include "shm/ring_writer.h"
#include "shmbus/options.h"

namespace shmbus::detail {

struct PublisherCore {
  std::shared_ptr<Connection> connection;
  TopicAttachment topic;
  shm::RingWriter writer;
  PublisherOptions options;
  std::chrono::nanoseconds full_timeout{};  // options.full_timeout, converted once
  uint32_t slot = 0;
  uint32_t generation = 0;
  uint64_t id = 0;
  bool loan_outstanding = false;
  bool attached = false;
  // Set by the connection when a restarted daemon refused to hand this endpoint back (it lost the topic).
  std::atomic<bool> lost{false};
  std::chrono::steady_clock::time_point next_reopen{};
  Status reopen_status;

  ~PublisherCore();  // tells the daemon (best effort; a dead process is detected anyway)

  // Opens a publisher endpoint on `topic_name` with the daemon, maps the topic and sets up the writer.
  Status attach(const std::string& topic_name);
  // True when the endpoint went away with its daemon: the topic was closed by a daemon shutdown, or a
  // restarted daemon no longer knew it. One relaxed load of a flag and of a header word that stays
  // cached-clean: cheap enough for every loan.
  bool must_reopen() const {
    // relaxed: flags; nothing is read through them.
    return !attached || lost.load(std::memory_order_relaxed) ||
           topic.header()->closed.load(std::memory_order_relaxed) == shm::kTopicClosed;
  }
  // Opens the topic again (at most every kReopenRetry while that fails): the data path resumes on the
  // daemon's new segment. REQUIRES: no loan outstanding.
  Status reopen();
  // Gives the endpoint back to the daemon, unless it already went away with its daemon.
  void detach();
  // The publish stamp of a message committed now: 0 (no time) unless options.stamp_publish_time.
  uint64_t stamp() const { return options.stamp_publish_time ? stamp_now_ns() : 0; }
};

}  // namespace shmbus::detail

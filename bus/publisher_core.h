// What a Publisher owns: its topic mapping, its ring's writer and its registration with the daemon.
#pragma once

#include <memory>

#include "bus/connection.h"
#include "bus/topic_attachment.h"
#include "shm/ring_writer.h"
#include "shmbus/options.h"

namespace shmbus::detail {

struct PublisherCore {
  std::shared_ptr<Connection> connection;
  TopicAttachment topic;
  shm::RingWriter writer;
  PublisherOptions options;
  uint32_t slot = 0;
  uint32_t generation = 0;
  uint64_t id = 0;
  bool loan_outstanding = false;

  ~PublisherCore();  // tells the daemon (best effort; a dead process is detected anyway)
};

}  // namespace shmbus::detail

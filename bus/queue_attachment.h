// A client's mapping of one work queue (or a service's request queue, or a response queue), validated before
// use, and its registration with the daemon, given back when it is destroyed.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <chrono>
#include <memory>
#include <optional>
#include <string>

#include "bus/connection.h"
#include "bus/watching_sources.h"
#include "shm/segment.h"
#include "shm/work_queue.h"
#include "shmbus/options.h"
#include "shmbus/status.h"

namespace shmbus::detail {

struct QueueAttachment {
  std::shared_ptr<Connection> connection;
  shm::Segment memory;  // the queue's shared memory or durable file, mapped from the daemon's descriptor
  std::optional<shm::WorkQueue> queue;
  std::string name;
  uint32_t id = 0;
  uint32_t role = 0;
  pid_t pid = 0;
  std::atomic<uint32_t> loans_out{0};  // QueueLoans of this queue not yet committed or given back
  // The queue's daemon epoch when last seen, and when follow_daemon() may next try to reconnect after a
  // failure (steady ns). Atomics: a queue handle may be used from several threads.
  std::atomic<uint32_t> daemon_epoch{0};
  std::atomic<uint64_t> next_follow_ns{0};
  bool registered = false;   // with the connection, for re-claiming after a daemon restart
  WatchingSources watching;  // the EventSources watching this queue's endpoint

  ~QueueAttachment();

  // Asks the daemon for `name` in `role` and maps what it sends.
  static Result<std::unique_ptr<QueueAttachment>> open(std::shared_ptr<Connection> connection,
                                                       std::string_view name, const QueueSettings& settings,
                                                       uint32_t role, uint32_t queue_id = 0);

  // Reserves a free entry, waiting up to `timeout` while the queue is full.
  Result<shm::ClaimedEntry> reserve(std::chrono::nanoseconds timeout);
  // Commits a reserved entry (and syncs it when the queue's policy says "always").
  Status commit(const shm::ClaimedEntry& claimed, const shm::CommitInfo& info);
  // Pops the next entry, waiting up to `timeout`: kTimeout, kClosed or Ok.
  Result<shm::DeliveredEntry> pop(std::chrono::nanoseconds visibility, std::chrono::nanoseconds timeout);
  Status ack(uint32_t index, uint64_t tag);
  // One relaxed load while the daemon stays the same. When a restarted daemon adopted the queue (its epoch
  // moved), reconnects so that the new daemon counts this process's roles again (Connection::
  // follow_daemon_restart), retrying every 100 ms while it cannot.
  void follow_daemon();
};

// A QueueOp that is not kOk, as a Status naming the queue.
Status queue_status(shm::QueueOp op, const std::string& name);

}  // namespace shmbus::detail

#include "bus/queue_attachment.h"

#include <unistd.h>

#include <cstddef>

#include <algorithm>

#include "bus/control_protocol.h"
#include "bus/log.h"
#include "shm/deadline.h"

namespace shmbus::detail {

Status queue_status(shm::QueueOp op, const std::string& name) {
  switch (op) {
    case shm::QueueOp::kOk:
      return Status::Ok();
    case shm::QueueOp::kEmpty:
      return {Errc::kTimeout, "queue " + name + " is empty"};
    case shm::QueueOp::kFull:
      return {Errc::kTimeout, "queue " + name + " is full: its consumers did not keep up"};
    case shm::QueueOp::kStale:
      return {Errc::kInvalidArgument,
              "the entry of queue " + name + " is no longer yours (taken back after a timeout or a restart)"};
    case shm::QueueOp::kLockTimeout:
      return {Errc::kTimeout,
              "queue " + name + " stayed locked for 2 s by a live process (a stuck or hostile one)"};
    case shm::QueueOp::kClosed:
      return {Errc::kClosed, "queue " + name + " was closed by the daemon; the message was not sent"};
    case shm::QueueOp::kCorrupt:
      return {Errc::kInvalidArgument, "queue " + name + ": impossible entry metadata"};
  }
  return {Errc::kInternal, "unknown queue result"};
}

Result<std::unique_ptr<QueueAttachment>> QueueAttachment::open(std::shared_ptr<Connection> connection,
                                                               std::string_view name,
                                                               const QueueSettings& settings, uint32_t role,
                                                               uint32_t queue_id) {
  OpenQueueRequest request{};
  request.header = make_header(RecordType::kOpenQueue, sizeof request, 0);
  copy_string(name, request.name, sizeof request.name);
  request.settings = to_wire(settings);
  request.role = role;
  request.queue_id = queue_id;
  Reply reply{};
  int fd = -1;
  if (Status s = connection->call(&request, sizeof request, &reply, &fd); !s.ok()) return s;
  if (fd < 0) return Status{Errc::kProtocolError, "the daemon sent no queue descriptor"};
  auto q = std::make_unique<QueueAttachment>();
  q->connection = std::move(connection);
  q->name = std::string(name);
  q->id = reply.topic_id;
  q->role = role;
  q->pid = getpid();
  try {
    q->memory = shm::Segment::map_fd(fd, "queue " + q->name);
  } catch (const std::exception& e) {
    close(fd);
    return Status{Errc::kInternal, e.what()};
  }
  close(fd);
  std::string why;
  q->queue = shm::WorkQueue::attach(q->memory.data(), q->memory.size(), &why);
  if (!q->queue) return Status{Errc::kProtocolError, "queue " + q->name + " does not validate: " + why};
  // Cut short by a participant, the queue reads as closed here (calls fail with kClosed) instead of this
  // process dying of SIGBUS.
  q->memory.set_truncation_word(offsetof(shm::WorkQueueHeader, closed), 1);
  // relaxed: compared with later loads of the same word only; nothing is read through it.
  q->daemon_epoch.store(q->queue->header()->daemon_epoch.load(std::memory_order_relaxed),
                        std::memory_order_relaxed);
  // A server's response-queue writers are not re-claimed: the restarted daemon checks afresh, at the next
  // open, that it serves that client (Server::response_queue re-opens what it cannot use).
  if (role != kReplyWriter) {
    q->connection->add_queue_role(q->id, role, q->name);
    q->registered = true;
  }
  return q;
}

void QueueAttachment::follow_daemon() {
  // relaxed: a hint to reconnect; the queue's own state is read under its lock.
  const uint32_t now_epoch = queue->header()->daemon_epoch.load(std::memory_order_relaxed);
  if (now_epoch == daemon_epoch.load(std::memory_order_relaxed)) [[likely]]
    return;
  const uint64_t now = shm::steady_now_ns();
  // relaxed: a rate limit; two threads that both pass it only reconnect twice (the connection's mutex
  // serialises them).
  if (now < next_follow_ns.load(std::memory_order_relaxed)) return;
  next_follow_ns.store(now + 100'000'000, std::memory_order_relaxed);
  if (Status s = connection->follow_daemon_restart(); !s.ok()) {
    log().debug("queue {}: its daemon restarted and cannot be reached yet: {}", name, s.to_string());
    return;
  }
  daemon_epoch.store(now_epoch, std::memory_order_relaxed);  // relaxed: as the load above
}

QueueAttachment::~QueueAttachment() {
  watching.forget_all();  // first, while the queue is still mapped
  if (!connection || id == 0) return;
  if (registered) connection->remove_queue_role(id, role);
  CloseQueueRequest request{};
  request.header = make_header(RecordType::kCloseQueue, sizeof request, 0);
  request.queue_id = id;
  request.role = role;
  Reply reply{};
  (void)connection->call(&request, sizeof request, &reply);
}

Result<shm::ClaimedEntry> QueueAttachment::reserve(std::chrono::nanoseconds timeout) {
  const auto deadline = shm::deadline_after(timeout);
  for (;;) {
    follow_daemon();
    // Closed first: a closed queue's memory may still take an entry (the daemon stopped, or it was cut short
    // and grown back empty), which nobody would ever deliver.
    if (queue->closed()) return Status{Errc::kClosed, "queue " + name + " was closed by the daemon"};
    shm::ClaimedEntry claimed;
    const shm::QueueOp op = queue->reserve(pid, &claimed);
    if (op == shm::QueueOp::kOk) return claimed;
    if (op != shm::QueueOp::kFull) return queue_status(op, name);
    const auto left = deadline - std::chrono::steady_clock::now();
    if (left <= std::chrono::nanoseconds::zero()) return queue_status(op, name);
    queue->wait_space(std::min<std::chrono::nanoseconds>(left, std::chrono::milliseconds(100)));
  }
}

Status QueueAttachment::commit(const shm::ClaimedEntry& claimed, const shm::CommitInfo& info) {
  const shm::QueueOp op = queue->commit(claimed, pid, info);
  if (op != shm::QueueOp::kOk) return queue_status(op, name);
  if (queue->header()->sync_policy == static_cast<uint32_t>(SyncPolicy::kAlways))
    queue->persist(claimed.index);
  return Status::Ok();
}

Result<shm::DeliveredEntry> QueueAttachment::pop(std::chrono::nanoseconds visibility,
                                                 std::chrono::nanoseconds timeout) {
  const auto deadline = shm::deadline_after(timeout);
  for (;;) {
    follow_daemon();
    shm::DeliveredEntry d;
    // Read before the pop: closed and then empty means drained. (Read after, a commit made just before the
    // close could sit unread behind a kClosed.)
    const bool was_closed = queue->closed();
    const shm::QueueOp op = queue->pop(pid, visibility, &d);
    if (op == shm::QueueOp::kOk) return d;
    if (op == shm::QueueOp::kCorrupt) {
      log().warn("queue {}: dropped an entry with impossible metadata", name);
      continue;
    }
    if (op != shm::QueueOp::kEmpty) return queue_status(op, name);
    // Closed once empty: what a closed queue still holds can be drained (a response already there, say).
    if (was_closed) return Status{Errc::kClosed, "queue " + name + " was closed by the daemon"};
    const auto left = deadline - std::chrono::steady_clock::now();
    if (left <= std::chrono::nanoseconds::zero()) {
      return Status{Errc::kTimeout, "nothing arrived on queue " + name + " in time"};
    }
    queue->wait_ready(std::min<std::chrono::nanoseconds>(left, std::chrono::milliseconds(100)));
  }
}

Status QueueAttachment::ack(uint32_t index, uint64_t tag) {
  const shm::QueueOp op = queue->ack(index, tag);
  if (op != shm::QueueOp::kOk) return queue_status(op, name);
  if (queue->header()->sync_policy == static_cast<uint32_t>(SyncPolicy::kAlways)) queue->persist(index);
  return Status::Ok();
}

}  // namespace shmbus::detail

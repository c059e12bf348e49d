// Work queues: point-to-point messaging with competing consumers over shared memory. Each message goes to
// exactly one consumer, which acknowledges it (done) or rejects it (failed). A message that is rejected,
// whose consumer dies, or that stays unacknowledged past the consumer's visibility timeout is delivered
// again, with its delivery count; after the queue's max_deliveries it becomes a dead letter, kept for
// inspection and replay (at-least-once delivery). Higher priorities (0..9) are delivered first, FIFO within a
// priority. A queue declared durable lives in a file and survives daemon crashes, restarts and reboots.
//
//   auto producer = bus.queue_producer("jobs/resize").value();
//   producer.send(std::as_bytes(std::span(job)), /*priority=*/5);
//   auto consumer = bus.queue_consumer("jobs/resize").value();
//   if (auto d = consumer.receive(1s)) { work(d->bytes()); d->ack(); }
//
// Ordering: strict priority. A steady stream of high-priority messages starves lower ones; within a priority,
// a redelivered message keeps its place at the front. Thread safety: as for topics, each object is used by
// one thread at a time; a Delivery or QueueLoan must go before the endpoint that made it.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "shmbus/options.h"
#include "shmbus/status.h"

namespace shmbus {

namespace detail {
struct QueueAttachment;
}

inline constexpr uint32_t kMaxPriority = 9;

// A free entry of a queue lent for writing in place (zero-copy). Dropping it sends nothing.
class QueueLoan {
 public:
  QueueLoan() = default;
  QueueLoan(QueueLoan&& other) noexcept;
  QueueLoan& operator=(QueueLoan&& other) noexcept;
  ~QueueLoan();

  explicit operator bool() const { return data_ != nullptr; }
  std::span<std::byte> buffer() const { return {data_, capacity_}; }
  std::byte* data() const { return data_; }
  void set_size(std::size_t size) { size_ = size; }  // REQUIRES: size <= buffer().size()
  std::size_t size() const { return size_; }

 private:
  friend class QueueProducer;
  friend class Client;
  friend class Request;
  // Lends the entry `index` of `owner`'s queue (reserved by the caller).
  QueueLoan(detail::QueueAttachment* owner, uint32_t index, std::byte* data, std::size_t capacity);
  void release();
  // Ends the loan without giving the entry back (it is being committed); returns the queue it came from.
  detail::QueueAttachment* settle();
  detail::QueueAttachment* owner_ = nullptr;
  uint32_t index_ = 0;
  std::byte* data_ = nullptr;
  std::size_t capacity_ = 0;
  std::size_t size_ = 0;
};

// One delivery of a message, read in place. ack() or reject() it; one dropped without either is rejected
// (requeue), so a consumer that throws does not lose the message.
class Delivery {
 public:
  Delivery() = default;
  Delivery(Delivery&& other) noexcept;
  Delivery& operator=(Delivery&& other) noexcept;
  ~Delivery();

  explicit operator bool() const { return data_ != nullptr || owner_ != nullptr; }
  std::span<const std::byte> bytes() const { return {data_, size_}; }
  uint32_t priority() const { return priority_; }
  uint32_t delivery_count() const { return deliveries_; }  // 1 on the first delivery
  uint64_t sequence() const { return sequence_; }          // commit order within the queue
  std::chrono::steady_clock::time_point enqueue_time() const {
    return std::chrono::steady_clock::time_point(std::chrono::nanoseconds(enqueue_ns_));
  }

  // Done: the message leaves the queue. kTimeout-like failures: kInvalidArgument if this delivery was
  // taken back meanwhile (visibility timeout) and belongs to someone else now.
  Status ack();
  // Failed: requeue (delivered again, until max_deliveries) or straight to the dead letters.
  Status reject(bool requeue = true);

 private:
  friend class QueueConsumer;
  friend class Server;
  friend class Client;
  friend class Request;
  detail::QueueAttachment* owner_ = nullptr;
  const std::byte* data_ = nullptr;
  std::size_t size_ = 0;
  uint32_t index_ = 0;
  uint64_t tag_ = 0;
  uint32_t priority_ = 0;
  uint32_t deliveries_ = 0;
  uint64_t sequence_ = 0;
  uint64_t enqueue_ns_ = 0;
};

class QueueProducer {
 public:
  QueueProducer();
  QueueProducer(QueueProducer&&) noexcept;
  QueueProducer& operator=(QueueProducer&&) noexcept;
  ~QueueProducer();

  // Lends a free entry, waiting up to full_timeout while the queue is full (kTimeout).
  Result<QueueLoan> loan();
  // Sends a loan of this producer with `priority` (0..kMaxPriority).
  Status send(QueueLoan&& loan, uint32_t priority = 0);
  // Copies `bytes` into an entry and sends it: kMessageTooLarge, kTimeout (full), kInvalidArgument or Ok.
  Status send(std::span<const std::byte> bytes, uint32_t priority = 0);
  std::size_t max_message_size() const;

 private:
  friend class Bus;
  QueueProducer(std::unique_ptr<detail::QueueAttachment> queue, QueueProducerOptions options);
  std::unique_ptr<detail::QueueAttachment> queue_;
  QueueProducerOptions options_;
};

class QueueConsumer {
 public:
  QueueConsumer();
  QueueConsumer(QueueConsumer&&) noexcept;
  QueueConsumer& operator=(QueueConsumer&&) noexcept;
  ~QueueConsumer();

  // The next message (highest priority, oldest first), waiting up to `timeout`: kTimeout when none came,
  // kClosed when the daemon shut the queue down.
  Result<Delivery> receive(std::chrono::nanoseconds timeout);
  // receive() without waiting: kTimeout when no message is ready. For event loops (shmbus/event_source.h).
  Result<Delivery> try_receive();

 private:
  friend class Bus;
  friend class EventSource;
  QueueConsumer(std::unique_ptr<detail::QueueAttachment> queue, QueueConsumerOptions options);
  std::unique_ptr<detail::QueueAttachment> queue_;
  QueueConsumerOptions options_;
};

struct QueueInfo {
  uint32_t capacity = 0;
  uint32_t ready = 0;         // waiting for a consumer
  uint32_t in_flight = 0;     // delivered, not yet acknowledged
  uint32_t dead_letters = 0;  // gave up after max_deliveries (or rejected without requeue)
  uint32_t consumers = 0;
  uint64_t enqueued = 0, acked = 0, redelivered = 0, dead_lettered = 0, corrupt = 0;
};

struct DeadLetterInfo {
  uint64_t sequence = 0;
  uint32_t priority = 0;
  uint32_t deliveries = 0;
  std::vector<std::byte> payload;  // a copy
};

// Looks into a queue (needs the right to receive from it): depth, dead letters, replay.
class QueueInspector {
 public:
  QueueInspector();
  QueueInspector(QueueInspector&&) noexcept;
  QueueInspector& operator=(QueueInspector&&) noexcept;
  ~QueueInspector();

  QueueInfo info() const;
  std::vector<DeadLetterInfo> dead_letters(std::size_t max = 100) const;
  // Moves every dead letter back to the queue with its delivery count reset. Returns how many.
  uint32_t replay_dead_letters();
  uint32_t purge_dead_letters();

 private:
  friend class Bus;
  explicit QueueInspector(std::unique_ptr<detail::QueueAttachment> queue);
  std::unique_ptr<detail::QueueAttachment> queue_;
};

}  // namespace shmbus

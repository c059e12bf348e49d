#include "shmbus/work_queue.h"

#include <cstring>
#include <utility>

#include "bus/queue_attachment.h"
#include "shmbus/bus.h"
#include "shmbus/topic_name.h"

namespace shmbus {

// --- QueueLoan ---

QueueLoan::QueueLoan(detail::QueueAttachment* owner, uint32_t index, std::byte* data, std::size_t capacity)
    : owner_(owner), index_(index), data_(data), capacity_(capacity), size_(capacity) {
  // relaxed: a count for the owner's cache (Server::response_queue), read on the same thread.
  if (owner_) owner_->loans_out.fetch_add(1, std::memory_order_relaxed);
}

detail::QueueAttachment* QueueLoan::settle() {
  detail::QueueAttachment* q = owner_;
  if (q && data_) q->loans_out.fetch_sub(1, std::memory_order_relaxed);  // relaxed: as above
  owner_ = nullptr;
  data_ = nullptr;
  return q;
}

QueueLoan::QueueLoan(QueueLoan&& other) noexcept
    : owner_(std::exchange(other.owner_, nullptr)),
      index_(other.index_),
      data_(std::exchange(other.data_, nullptr)),
      capacity_(other.capacity_),
      size_(other.size_) {}

QueueLoan& QueueLoan::operator=(QueueLoan&& other) noexcept {
  if (this != &other) {
    release();
    owner_ = std::exchange(other.owner_, nullptr);
    index_ = other.index_;
    data_ = std::exchange(other.data_, nullptr);
    capacity_ = other.capacity_;
    size_ = other.size_;
  }
  return *this;
}

QueueLoan::~QueueLoan() {
  release();
}

void QueueLoan::release() {
  if (owner_ && data_) owner_->queue->abandon({index_, data_, static_cast<uint32_t>(capacity_)}, owner_->pid);
  (void)settle();
}

// --- Delivery ---

Delivery::Delivery(Delivery&& other) noexcept
    : owner_(std::exchange(other.owner_, nullptr)),
      data_(std::exchange(other.data_, nullptr)),
      size_(other.size_),
      index_(other.index_),
      tag_(other.tag_),
      priority_(other.priority_),
      deliveries_(other.deliveries_),
      sequence_(other.sequence_),
      enqueue_ns_(other.enqueue_ns_) {}

Delivery& Delivery::operator=(Delivery&& other) noexcept {
  if (this != &other) {
    if (owner_) (void)reject(true);
    owner_ = std::exchange(other.owner_, nullptr);
    data_ = std::exchange(other.data_, nullptr);
    size_ = other.size_;
    index_ = other.index_;
    tag_ = other.tag_;
    priority_ = other.priority_;
    deliveries_ = other.deliveries_;
    sequence_ = other.sequence_;
    enqueue_ns_ = other.enqueue_ns_;
  }
  return *this;
}

Delivery::~Delivery() {
  if (owner_) (void)reject(true);
}

Status Delivery::ack() {
  if (!owner_) return {Errc::kInvalidArgument, "this delivery was already acknowledged or rejected"};
  detail::QueueAttachment* q = std::exchange(owner_, nullptr);
  data_ = nullptr;
  return q->ack(index_, tag_);
}

Status Delivery::reject(bool requeue) {
  if (!owner_) return {Errc::kInvalidArgument, "this delivery was already acknowledged or rejected"};
  detail::QueueAttachment* q = std::exchange(owner_, nullptr);
  data_ = nullptr;
  return detail::queue_status(q->queue->reject(index_, tag_, requeue), q->name);
}

// --- QueueProducer ---

QueueProducer::QueueProducer() = default;
QueueProducer::QueueProducer(std::unique_ptr<detail::QueueAttachment> queue, QueueProducerOptions options)
    : queue_(std::move(queue)), options_(options) {}
QueueProducer::QueueProducer(QueueProducer&&) noexcept = default;
QueueProducer& QueueProducer::operator=(QueueProducer&&) noexcept = default;
QueueProducer::~QueueProducer() = default;

std::size_t QueueProducer::max_message_size() const {
  return queue_->queue->max_message_size();
}

Result<QueueLoan> QueueProducer::loan() {
  auto claimed = queue_->reserve(options_.full_timeout);
  if (!claimed) return claimed.status();
  return QueueLoan(queue_.get(), claimed->index, claimed->payload, claimed->capacity);
}

Status QueueProducer::send(QueueLoan&& loan, uint32_t priority) {
  if (loan.owner_ != queue_.get() || !loan.data_) {
    return {Errc::kInvalidArgument, "the loan is empty or belongs to another producer"};
  }
  if (priority > kMaxPriority) return {Errc::kInvalidArgument, "priority must be 0..9"};
  if (loan.size_ > loan.capacity_) {
    return {Errc::kMessageTooLarge, "loan size " + std::to_string(loan.size_) + " exceeds its buffer"};
  }
  const shm::ClaimedEntry claimed{loan.index_, loan.data_, static_cast<uint32_t>(loan.capacity_)};
  const auto size = static_cast<uint32_t>(loan.size_);
  (void)loan.settle();
  return queue_->commit(claimed, {.size = size, .priority = priority});
}

Status QueueProducer::send(std::span<const std::byte> bytes, uint32_t priority) {
  if (bytes.size() > max_message_size()) {
    return {Errc::kMessageTooLarge, std::to_string(bytes.size()) + " bytes exceed queue " + queue_->name +
                                        "'s max_message_size " + std::to_string(max_message_size())};
  }
  if (priority > kMaxPriority) return {Errc::kInvalidArgument, "priority must be 0..9"};
  auto l = loan();
  if (!l) return l.status();
  std::memcpy(l->data(), bytes.data(), bytes.size());
  l->set_size(bytes.size());
  return send(std::move(l).value(), priority);
}

// --- QueueConsumer ---

QueueConsumer::QueueConsumer() = default;
QueueConsumer::QueueConsumer(std::unique_ptr<detail::QueueAttachment> queue, QueueConsumerOptions options)
    : queue_(std::move(queue)), options_(options) {}
QueueConsumer::QueueConsumer(QueueConsumer&&) noexcept = default;
QueueConsumer& QueueConsumer::operator=(QueueConsumer&&) noexcept = default;
QueueConsumer::~QueueConsumer() = default;

Result<Delivery> QueueConsumer::receive(std::chrono::nanoseconds timeout) {
  auto d = queue_->pop(options_.visibility_timeout, timeout);
  if (!d) return d.status();
  Delivery delivery;
  delivery.owner_ = queue_.get();
  delivery.data_ = d->payload;
  delivery.size_ = d->size;
  delivery.index_ = d->index;
  delivery.tag_ = d->tag;
  delivery.priority_ = d->priority;
  delivery.deliveries_ = d->deliveries;
  delivery.sequence_ = d->seq;
  delivery.enqueue_ns_ = d->enqueue_ns;
  return delivery;
}

Result<Delivery> QueueConsumer::try_receive() {
  return receive(std::chrono::nanoseconds::zero());
}

// --- QueueInspector ---

QueueInspector::QueueInspector() = default;
QueueInspector::QueueInspector(std::unique_ptr<detail::QueueAttachment> queue) : queue_(std::move(queue)) {}
QueueInspector::QueueInspector(QueueInspector&&) noexcept = default;
QueueInspector& QueueInspector::operator=(QueueInspector&&) noexcept = default;
QueueInspector::~QueueInspector() = default;

QueueInfo QueueInspector::info() const {
  const shm::QueueSnapshot s = queue_->queue->snapshot();
  return {s.capacity, s.ready, s.in_flight,   s.dead,          s.consumers,
          s.enqueued, s.acked, s.redelivered, s.dead_lettered, s.corrupt};
}

std::vector<DeadLetterInfo> QueueInspector::dead_letters(std::size_t max) const {
  std::vector<DeadLetterInfo> out;
  for (auto& d : queue_->queue->dead_letters(max)) {
    out.push_back({d.seq, d.priority, d.deliveries, std::move(d.payload)});
  }
  return out;
}

uint32_t QueueInspector::replay_dead_letters() {
  return queue_->queue->replay_dead();
}

uint32_t QueueInspector::purge_dead_letters() {
  return queue_->queue->purge_dead();
}

// --- Bus ---

Result<QueueProducer> Bus::queue_producer(std::string_view queue, QueueProducerOptions options) {
  if (Status s = validate_topic_name(queue); !s.ok()) return s;
  auto q = detail::QueueAttachment::open(connection_, queue, options.queue, detail::kQueueProducer);
  if (!q) return q.status();
  return QueueProducer(std::move(q).value(), options);
}

Result<QueueConsumer> Bus::queue_consumer(std::string_view queue, QueueConsumerOptions options) {
  if (Status s = validate_topic_name(queue); !s.ok()) return s;
  auto q = detail::QueueAttachment::open(connection_, queue, options.queue, detail::kQueueConsumer);
  if (!q) return q.status();
  return QueueConsumer(std::move(q).value(), options);
}

Result<QueueInspector> Bus::queue_inspector(std::string_view queue) {
  if (Status s = validate_topic_name(queue); !s.ok()) return s;
  auto q = detail::QueueAttachment::open(connection_, queue, {}, detail::kQueueInspector);
  if (!q) return q.status();
  return QueueInspector(std::move(q).value());
}

}  // namespace shmbus

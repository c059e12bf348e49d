#include <cstring>

#include "bus/log.h"
#include "bus/publisher_core.h"
#include "bus/stamp_clock.h"
#include "shmbus/bus.h"

namespace shmbus {
namespace detail {
PublisherCore::~PublisherCore() {
  detach();
}

Status PublisherCore::attach(const std::string& topic_name) {
  full_timeout = options.full_timeout;
  OpenRequest request{};
  request.header = make_header(RecordType::kOpenPublisher, sizeof request, 0);
  copy_string(topic_name, request.topic, sizeof request.topic);
  request.settings = to_wire(options.topic);
  Reply reply{};
  int fd = -1;
  if (Status s = connection->call(&request, sizeof request, &reply, &fd); !s.ok()) return s;
  auto attachment = TopicAttachment::map(fd, reply, topic_name);
  if (!attachment) return attachment.status();
  if (reply.slot >= attachment->geometry.max_publishers) {
    return Status{Errc::kProtocolError, "the daemon assigned an out-of-range publisher slot"};
  }
  topic = std::move(attachment).value();
  slot = reply.slot;
  generation = reply.generation;
  id = reply.participant_id;
  attached = true;
  lost.store(false, std::memory_order_relaxed);
  connection->add_endpoint(make_reclaim(topic.topic_id, kRolePublisher, slot, id), &lost);
  writer = shm::RingWriter(topic.base(), topic.geometry, slot, generation, topic.lossless);
  log().debug("publisher {} on {} (ring {})", id, topic.topic, slot);
  return Status::Ok();
}

Status PublisherCore::reopen() {
  const auto now = std::chrono::steady_clock::now();
  if (now < next_reopen) {
    // An endpoint re-opened since that went away again is no success: its loan would be lost.
    if (reopen_status.ok())
      return {Errc::kDaemonUnavailable, "publisher on " + topic.topic + " lost its daemon again"};
    return reopen_status;
  }
  next_reopen = now + kReopenRetry;
  // The old endpoint went with its daemon: forget it without a close (which would reach the successor).
  if (attached) {
    attached = false;
    connection->remove_endpoint(topic.topic_id, kRolePublisher, slot);
  }
  const std::string name = topic.topic;
  reopen_status = attach(name);
  if (reopen_status.ok()) {
    log().info("publisher on {} re-opened on a restarted shmbusd (ring {})", name, slot);
  } else {
    reopen_status = {reopen_status.code(), "publisher on " + name + " lost its daemon and cannot re-open: " +
                                               reopen_status.message()};
  }
  return reopen_status;
}

void PublisherCore::detach() {
  if (!attached) return;
  attached = false;
  // A mapping replaced after a cut reads closed whatever the daemon did (it may even have missed a cut
  // and regrowth between two ticks): give the endpoint back then; a topic it retired ignores the close.
  if (lost.load(std::memory_order_relaxed) ||
      (topic.header()->closed.load(std::memory_order_relaxed) == shm::kTopicClosed &&
       !topic.segment.replaced())) {
    connection->remove_endpoint(topic.topic_id, kRolePublisher, slot);
    return;  // its daemon is gone: nothing to give back
  }
  CloseRequest request{};
  request.header = make_header(RecordType::kClose, sizeof request, 0);
  request.topic_id = topic.topic_id;
  request.role = kRolePublisher;
  request.slot = slot;
  request.generation = generation;
  Reply reply{};
  (void)connection->call(&request, sizeof request, &reply);
  // Unregistered only now: a close that meets a restarted daemon reconnects, which reclaims this endpoint
  // first, so that the retried close finds it (unregistered before, it stayed an orphan of the new daemon).
  connection->remove_endpoint(topic.topic_id, kRolePublisher, slot);
}
}  // namespace detail

void Loan::abandon(detail::PublisherCore* owner) {
  // The slot stays uncommitted (marked busy on a lossy ring) for the position it was lent for; the next loan
  // reuses it.
  owner->loan_outstanding = false;
  // relaxed: a flag; a lost endpoint's ring may be another publisher's now.
  if (owner->attached && !owner->lost.load(std::memory_order_relaxed)) owner->writer.abandon();
}

Publisher::Publisher() = default;
Publisher::Publisher(std::unique_ptr<detail::PublisherCore> core) : core_(std::move(core)) {}
Publisher::Publisher(Publisher&&) noexcept = default;
Publisher& Publisher::operator=(Publisher&&) noexcept = default;
Publisher::~Publisher() = default;

namespace {
[[gnu::cold, gnu::noinline]] Status topic_full(const detail::PublisherCore& c) {
  return {Errc::kTimeout, "topic " + c.topic.topic + " is full: its slowest subscriber did not keep up"};
}
}  // namespace

// Inline in both loan paths.
[[gnu::always_inline]] inline Loan Publisher::lend(std::byte* data) {
  Loan loan;
  loan.owner_ = core_.get();
  loan.data_ = data;
  loan.capacity_ = core_->topic.geometry.max_message_size;
  loan.size_ = loan.capacity_;
  core_->loan_outstanding = true;
  return loan;
}

Result<Loan> Publisher::loan() {
  detail::PublisherCore& c = *core_;
  if (c.loan_outstanding || c.must_reopen()) [[unlikely]] {
    return loan_slow();
  }
  std::byte* data = c.writer.claim(c.full_timeout);
  if (data == nullptr) [[unlikely]] {
    return topic_full(c);
  }
  return lend(data);
}

Result<Loan> Publisher::loan_slow() {
  if (core_->loan_outstanding) {
    return Status{Errc::kInvalidArgument,
                  "publisher on " + core_->topic.topic + " already has a loan outstanding"};
  }
  if (Status s = core_->reopen(); !s.ok()) return s;
  std::byte* data = core_->writer.claim(core_->full_timeout);
  if (data == nullptr) return topic_full(*core_);
  return lend(data);
}

void Publisher::publish(Loan&& loan) {
  if (loan.owner_ != core_.get() || loan.data_ == nullptr) return;  // not ours, or empty: nothing to publish
  const auto size = static_cast<uint32_t>(std::min(loan.size_, loan.capacity_));
  core_->writer.commit(size, core_->stamp());
  loan.owner_ = nullptr;
  loan.data_ = nullptr;
  core_->loan_outstanding = false;
}

namespace {
[[gnu::cold, gnu::noinline]] Status too_large(const detail::PublisherCore& c, std::size_t size) {
  return {Errc::kMessageTooLarge, "message of " + std::to_string(size) + " bytes exceeds topic " +
                                      c.topic.topic + "'s max_message_size of " +
                                      std::to_string(c.topic.geometry.max_message_size)};
}
}  // namespace

Status Publisher::publish(std::span<const std::byte> bytes) {
  detail::PublisherCore& c = *core_;
  if (c.loan_outstanding || c.must_reopen()) [[unlikely]] {
    return publish_slow(bytes);
  }
  if (bytes.size() > c.topic.geometry.max_message_size) [[unlikely]] {
    return too_large(c, bytes.size());
  }
  // The loan's path without a Loan: claim, copy, commit.
  std::byte* data = c.writer.claim(c.full_timeout);
  if (data == nullptr) [[unlikely]] {
    return topic_full(c);
  }
  if (!bytes.empty()) std::memcpy(data, bytes.data(), bytes.size());
  c.writer.commit(static_cast<uint32_t>(bytes.size()), c.stamp());
  return Status::Ok();
}

Status Publisher::publish_slow(std::span<const std::byte> bytes) {
  // Re-open first: a restarted daemon may have shaped the topic with a smaller max_message_size.
  if (core_->must_reopen() && !core_->loan_outstanding) {
    if (Status s = core_->reopen(); !s.ok()) return s;
  }
  if (bytes.size() > core_->topic.geometry.max_message_size) return too_large(*core_, bytes.size());
  auto loan = this->loan();  // refuses while a loan is outstanding
  if (!loan) return loan.status();
  if (!bytes.empty()) std::memcpy(loan->data(), bytes.data(), bytes.size());
  loan->set_size(bytes.size());
  publish(std::move(loan).value());
  return Status::Ok();
}

Result<std::size_t> Publisher::publish_batch(std::span<const std::span<const std::byte>> messages) {
  if (core_->loan_outstanding) {
    return Status{Errc::kInvalidArgument,
                  "publisher on " + core_->topic.topic + " has a loan outstanding: publish or drop it first"};
  }
  // Re-open before checking sizes: a restarted daemon may have shaped the topic with a smaller max.
  if (core_->must_reopen()) [[unlikely]] {
    if (Status s = core_->reopen(); !s.ok()) return s;
  }
  const std::size_t max = core_->topic.geometry.max_message_size;
  for (std::size_t i = 0; i < messages.size(); ++i) {
    if (messages[i].size() > max) {
      return Status{Errc::kMessageTooLarge, "message " + std::to_string(i) + " of the batch (" +
                                                std::to_string(messages[i].size()) +
                                                " bytes) exceeds topic " + core_->topic.topic +
                                                "'s max_message_size of " + std::to_string(max)};
    }
  }
  if (messages.empty()) return std::size_t{0};
  const std::size_t done = core_->writer.write_batch(messages, core_->stamp(), core_->full_timeout);
  if (done == 0) return topic_full(*core_);
  return done;
}

const std::string& Publisher::topic() const {
  return core_->topic.topic;
}
uint64_t Publisher::id() const {
  return core_->id;
}
std::size_t Publisher::max_message_size() const {
  return core_->topic.geometry.max_message_size;
}
uint64_t Publisher::published() const {
  return core_->writer.messages();
}

std::size_t Publisher::subscribers() const {
  const auto& t = core_->topic;
  std::size_t n = 0;
  for (uint32_t s = 0; s < t.geometry.max_subscribers; ++s) {
    // relaxed: a count for display and start-up handshakes, no data is read through it.
    n += shm::subscriber_slot(t.base(), t.geometry, s)->state.load(std::memory_order_relaxed) ==
         shm::kSlotActive;
  }
  return n;
}

}  // namespace shmbus

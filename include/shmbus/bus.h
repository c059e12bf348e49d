// The shmbus client library: connect to the instance's daemon, publish and subscribe to topics through
// shared memory.
//
//   auto bus = shmbus::Bus::connect().value();
//   auto pub = bus.publisher<Pose>("robot/pose").value();
//   auto loan = pub.loan().value(); loan->x = 1.0; pub.publish(std::move(loan));   // written in place
//   auto sub = bus.subscriber<Pose>("robot/pose").value();
//   if (auto m = sub.take(100ms)) use(m->x, m.sequence(), m.publish_time());       // read in place
//
// Control-plane calls (connect, publisher, subscriber) talk to the daemon and return Result/Status. Hot-path
// calls (loan, publish, take) make no system call while data flows, never allocate and never throw.
// Thread safety: a Bus may be shared by threads; each Publisher, Subscriber, Loan and Sample is used by one
// thread at a time.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <new>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>

#include "shmbus/options.h"
#include "shmbus/status.h"

namespace shmbus {

namespace detail {
class Connection;
struct PublisherCore;
struct RingFollower;
struct SubscriberCore;
}  // namespace detail
namespace shm {
struct RingMessage;
}  // namespace shm

class Publisher;
class Subscriber;
class QueueProducer;  // shmbus/work_queue.h
class QueueConsumer;
class QueueInspector;
class Server;  // shmbus/rpc.h
class Client;

// A slot of the publisher's ring lent for writing in place. Publish it with Publisher::publish; dropping it
// publishes nothing.
class Loan {
 public:
  Loan() = default;
  // Inline: a loan is made, moved and dropped once per message.
  Loan(Loan&& other) noexcept
      : owner_(std::exchange(other.owner_, nullptr)),
        data_(std::exchange(other.data_, nullptr)),
        capacity_(other.capacity_),
        size_(other.size_) {}
  Loan& operator=(Loan&& other) noexcept {
    if (this != &other) {
      if (owner_ != nullptr) abandon(owner_);
      owner_ = std::exchange(other.owner_, nullptr);
      data_ = std::exchange(other.data_, nullptr);
      capacity_ = other.capacity_;
      size_ = other.size_;
    }
    return *this;
  }
  // An unpublished loan gives its slot back: the next loan reuses it.
  ~Loan() {
    if (owner_ != nullptr) abandon(owner_);
  }

  explicit operator bool() const { return data_ != nullptr; }
  // The whole writable area: the topic's max_message_size bytes.
  std::span<std::byte> buffer() const { return {data_, capacity_}; }
  std::byte* data() const { return data_; }
  // Bytes to publish (default: the whole buffer). REQUIRES: size <= buffer().size().
  void set_size(std::size_t size) { size_ = size; }
  std::size_t size() const { return size_; }

 private:
  friend class Publisher;
  static void abandon(detail::PublisherCore* owner);
  detail::PublisherCore* owner_ = nullptr;
  std::byte* data_ = nullptr;
  std::size_t capacity_ = 0;
  std::size_t size_ = 0;
};

class Publisher {
 public:
  Publisher();
  Publisher(Publisher&&) noexcept;
  Publisher& operator=(Publisher&&) noexcept;
  ~Publisher();  // detaches from the topic; subscribers still receive what was published

  // Lends the next slot. On a lossless topic whose slowest subscriber is a full ring behind it waits up to
  // PublisherOptions::full_timeout, then fails with kTimeout. One loan at a time per publisher.
  Result<Loan> loan();
  // Publishes a loan of this publisher, in place (zero-copy). The loan becomes empty.
  void publish(Loan&& loan);
  // Copies `bytes` into a slot and publishes it: kMessageTooLarge, kTimeout (lossless, full) or Ok.
  Status publish(std::span<const std::byte> bytes);
  // Copies and publishes many messages at once, in order: one release and at most one wake-up of sleeping
  // subscribers per ring's worth, instead of one per message. On a lossless topic, messages that fit together
  // in max_message_size share a slot (each still its own sample, 32-byte aligned): a cache line a message
  // instead of two for small ones. Returns how many were published: all of them,
  // or fewer when a lossless topic stayed full for full_timeout (the rest were not published; retry them).
  // Errors publish nothing: kMessageTooLarge (naming the first oversize message), kTimeout (full for
  // full_timeout before the first), kInvalidArgument (a loan is outstanding).
  Result<std::size_t> publish_batch(std::span<const std::span<const std::byte>> messages);

  const std::string& topic() const;
  uint64_t id() const;  // this publisher's id as subscribers see it in SampleInfo::publisher_id
  std::size_t max_message_size() const;
  uint64_t published() const;  // messages published by this publisher
  // Subscribers attached to the topic right now (reads shared memory; no system call).
  std::size_t subscribers() const;

 private:
  friend class Bus;
  explicit Publisher(std::unique_ptr<detail::PublisherCore> core);
  // loan() when a loan is outstanding or the endpoint must re-open first: out of line, so that the common
  // case builds no error message and needs no stack frame for one.
  Result<Loan> loan_slow();
  inline Loan lend(std::byte* data);  // a loan of the slot claimed at `data` (defined in publisher.cpp)
  // publish(bytes) when a loan is outstanding or the endpoint must re-open first.
  Status publish_slow(std::span<const std::byte> bytes);
  std::unique_ptr<detail::PublisherCore> core_;
};

// A received message, read in place in shared memory: what Subscriber::drain hands its callback (valid only
// during that call), and what a Sample is while it lives.
class SampleView {
 public:
  std::span<const std::byte> bytes() const { return {data_, size_}; }
  const std::byte* data() const { return data_; }
  std::size_t size() const { return size_; }
  // 1, 2, 3... per publisher: gaps mean messages this subscriber missed (lossy topics).
  uint64_t sequence() const { return sequence_; }
  // When the publisher published it (steady_clock), or the clock's epoch if it does not stamp
  // (PublisherOptions::stamp_publish_time).
  std::chrono::steady_clock::time_point publish_time() const {
    return std::chrono::steady_clock::time_point(std::chrono::nanoseconds(publish_ns_));
  }
  bool has_publish_time() const { return publish_ns_ != 0; }
  uint64_t publisher_id() const { return publisher_id_; }
  // Lossy topics only: false once the publisher lapped the ring and overwrote this message. Check it after
  // reading to know that what was read is intact (always true on lossless topics).
  bool still_valid() const;

 protected:
  friend class Subscriber;
  detail::SubscriberCore* owner_ = nullptr;
  const std::byte* data_ = nullptr;
  std::size_t size_ = 0;
  uint64_t sequence_ = 0;
  uint64_t position_ = 0;  // of its slot in the ring (several messages of a batch may share a slot)
  uint64_t publish_ns_ = 0;
  uint64_t publisher_id_ = 0;
  uint32_t ring_ = 0;
  uint32_t generation_ = 0;
};

// A taken message: a SampleView that keeps its slot (the same accessors). The slot stays reserved while the
// sample lives (lossless topics), so release samples promptly; a subscriber holds at most
// SubscriberOptions::max_held_samples. REQUIRES: released before its Subscriber is destroyed.
class Sample : private SampleView {  // private: a SampleView& to a Sample could overwrite what it holds
 public:
  Sample() = default;
  // Inline: a sample is taken, moved and released once per message.
  Sample(Sample&& other) noexcept : SampleView(other) {
    other.owner_ = nullptr;
    other.data_ = nullptr;
  }
  Sample& operator=(Sample&& other) noexcept {
    if (this != &other) {
      release();
      static_cast<SampleView&>(*this) = other;  // every field; then `other` lets go of the slot
      other.owner_ = nullptr;
      other.data_ = nullptr;
    }
    return *this;
  }
  ~Sample() { release(); }

  explicit operator bool() const { return data_ != nullptr; }
  using SampleView::bytes;
  using SampleView::data;
  using SampleView::has_publish_time;
  using SampleView::publish_time;
  using SampleView::publisher_id;
  using SampleView::sequence;
  using SampleView::size;
  using SampleView::still_valid;

 private:
  friend class Subscriber;
  // Holds the message `m` of the ring `from` follows, at `position`: built in place by try_take (defined
  // inline in subscriber.cpp, its only user).
  inline Sample(detail::SubscriberCore* owner, const detail::RingFollower& from, const shm::RingMessage& m,
                uint64_t position);
  void release() {
    if (owner_ != nullptr) release_held();
  }
  void release_held();  // gives the slot back; REQUIRES: owner_
};

class Subscriber {
 public:
  Subscriber();
  Subscriber(Subscriber&&) noexcept;
  Subscriber& operator=(Subscriber&&) noexcept;
  ~Subscriber();

  // The next message of any publisher (publishers served in turn), or an empty Sample when there is none
  // (also while SubscriberOptions::max_held_samples samples are held: release one first).
  Sample try_take();
  // Waits up to `timeout` for a message: spins SubscriberOptions::spin, then sleeps on a futex. While
  // max_held_samples are held it takes nothing and only waits out the timeout (without a wake-up per
  // commit, which publishers would pay for).
  Sample take(std::chrono::nanoseconds timeout);
  // True if try_take() would return a message now.
  bool has_data();
  // Hands up to `max` messages that are ready now to `on_message(const SampleView&)`, in order per publisher,
  // and returns how many it handed over; never waits (pair it with WaitSet or has_data). Cheaper per message
  // than try_take when several are ready (64 B, callgrind: a take ~171 instructions; a message of a drain of
  // 8 ~95, of 64 ~70; a drain that finds one ~310, two ~190 a message): no Sample, nothing held; views come
  // in runs of up to 64 (and a quarter ring), consumed when the run's last callback returns; the read
  // position goes out after every quarter ring and when drain leaves a publisher's ring (what it consumed is
  // free). taken() counts them by the time drain returns. A callback that throws stops drain: the messages
  // before it are consumed and counted, the one it threw on is handed over again by the next take or drain.
  // REQUIRES: the callback calls nothing on this subscriber but its const accessors (a take, has_data or
  // drain from inside finds nothing). Inline: the callback runs in a loop over runs of up to 64 ready slots,
  // each found by one out-of-line pass, so a message costs the callback and a few instructions, not a call
  // with the loop's state spilled around it.
  template <typename F>
  std::size_t drain(std::size_t max, F&& on_message) {
    std::size_t n = 0;
    while (n < max) {
      Run r;
      const SampleView* run = begin_run(max - n, &r);
      if (r.count == 0) break;
      RunEnd end{*this, n + r.count == max};  // consumes what was handed over, also when the callback throws
      for (; end.consumed < r.count; ++end.consumed) {
        // Lossy: a view found ready before the callbacks may have been overwritten since; the run ends there
        // and the next one counts what the publisher's lap cost.
        if (r.lossy && end.consumed > 0 && !run[end.consumed].still_valid()) break;
        on_message(run[end.consumed]);
      }
      n += end.consumed;
      if (r.last && end.consumed == r.count) break;
    }
    return n;
  }
  using DrainCallback = void (*)(void* context, const SampleView& view);
  std::size_t drain(std::size_t max, DrainCallback on_message, void* context);

  const std::string& topic() const;
  std::size_t max_message_size() const;
  uint64_t taken() const;    // messages taken
  uint64_t dropped() const;  // messages lost to overwrites (lossy topics) or corrupt slots
  // Sleeps in take() (or a WaitSet's, one per subscriber then ready; or an EventSource's, counted at the
  // next rearm()) that ran their whole time, to their cap or the deadline, and then found a message: wake-ups
  // missed, each late by at most 10 ms (the first sleep of a wait) or 200 ms. An upper bound: a message
  // committed just as a sleep ended counts too. Rare: on a 2-vCPU VM, one late wake-up in 2 of 3 blocking
  // ping-pong runs of about 40 000 sleeps each; see shm/sleep_fence.h.
  uint64_t late_wakeups() const;
  bool closed() const;  // the daemon shut the topic down; the subscriber re-opens it once a daemon is back

 private:
  friend class Bus;
  friend class WaitSet;
  friend class EventSource;
  explicit Subscriber(std::unique_ptr<detail::SubscriberCore> core);
  // try_take when the ring whose turn it is has no single message ready, or the held limit, a drain, a change
  // of publishers, a lost endpoint or no publisher at all stands in the way: out of line, so that the common
  // case saves no registers for it.
  Sample try_take_slow();
  // drain's two halves. begin_run finds a ring with a message ready and views its consecutive ready messages,
  // at most `max` and 64, from at most a quarter ring of slots (the cursor goes out between runs): returns
  // the views (valid until end_run) and fills in `run`. end_run consumes the first `consumed` of them;
  // `last`: drain stops after this run.
  struct Run {
    std::size_t count = 0;  // views; 0 if nothing is ready
    bool lossy = false;     // the ring may overwrite them
    // Nothing else was ready when the run was found: it ended at a slot not yet committed, on the only ring.
    // Another begin_run now would poll that ring again for a message that was not there a moment ago; drain
    // returns instead (a publisher that joined meanwhile is found by the next call).
    bool last = false;
  };
  const SampleView* begin_run(std::size_t max, Run* run);
  void end_run(std::size_t consumed, bool last) noexcept;
  struct RunEnd {
    Subscriber& subscriber;
    bool last;
    std::size_t consumed = 0;
    RunEnd(Subscriber& s, bool is_last) : subscriber(s), last(is_last) {}
    RunEnd(const RunEnd&) = delete;
    RunEnd& operator=(const RunEnd&) = delete;
    ~RunEnd() { subscriber.end_run(consumed, last); }
  };
  std::unique_ptr<detail::SubscriberCore> core_;
};

template <typename T>
concept Message = std::is_trivially_copyable_v<T> && alignof(T) <= 32;

template <Message T>
class TypedLoan {
 public:
  TypedLoan() = default;
  explicit TypedLoan(Loan loan) : loan_(std::move(loan)) {
    // Default-initialisation starts the object's lifetime without writing (no zeroing of large frames).
    if (loan_) value_ = ::new (loan_.data()) T;
    loan_.set_size(sizeof(T));
  }
  explicit operator bool() const { return static_cast<bool>(loan_); }
  T* operator->() const { return value_; }
  T& operator*() const { return *value_; }
  Loan& untyped() { return loan_; }

 private:
  Loan loan_;
  T* value_ = nullptr;
};

template <Message T>
class TypedPublisher {
 public:
  TypedPublisher() = default;
  explicit TypedPublisher(Publisher publisher) : publisher_(std::move(publisher)) {}
  Result<TypedLoan<T>> loan() {
    auto loan = publisher_.loan();
    if (!loan) return loan.status();
    return TypedLoan<T>(std::move(loan).value());
  }
  void publish(TypedLoan<T>&& loan) { publisher_.publish(std::move(loan.untyped())); }
  Status publish(const T& value) {
    return publisher_.publish(std::as_bytes(std::span<const T, 1>(&value, 1)));
  }
  Publisher& untyped() { return publisher_; }

 private:
  Publisher publisher_;
};

template <Message T>
class TypedSample {
 public:
  TypedSample() = default;
  explicit TypedSample(Sample sample) : sample_(std::move(sample)) {}
  // Empty also when the message's size is not sizeof(T) (a publisher of another type): see untyped().
  explicit operator bool() const { return sample_ && sample_.size() == sizeof(T); }
  const T* operator->() const { return reinterpret_cast<const T*>(sample_.data()); }
  const T& operator*() const { return *operator->(); }
  uint64_t sequence() const { return sample_.sequence(); }
  std::chrono::steady_clock::time_point publish_time() const { return sample_.publish_time(); }
  bool has_publish_time() const { return sample_.has_publish_time(); }
  uint64_t publisher_id() const { return sample_.publisher_id(); }
  const Sample& untyped() const { return sample_; }

 private:
  Sample sample_;
};

template <Message T>
class TypedSubscriber {
 public:
  TypedSubscriber() = default;
  explicit TypedSubscriber(Subscriber subscriber) : subscriber_(std::move(subscriber)) {}
  TypedSample<T> try_take() { return TypedSample<T>(subscriber_.try_take()); }
  TypedSample<T> take(std::chrono::nanoseconds timeout) { return TypedSample<T>(subscriber_.take(timeout)); }
  Subscriber& untyped() { return subscriber_; }

 private:
  Subscriber subscriber_;
};

class Bus {
 public:
  // Connects to the daemon of options.instance: kDaemonUnavailable (with the socket path) if none runs.
  static Result<Bus> connect(const BusOptions& options = {});

  Result<Publisher> publisher(std::string_view topic, PublisherOptions options = {});
  Result<Subscriber> subscriber(std::string_view topic, SubscriberOptions options = {});

  template <Message T>
  Result<TypedPublisher<T>> publisher(std::string_view topic, PublisherOptions options = {}) {
    if (!options.topic.max_message_size) options.topic.max_message_size = sizeof(T);
    auto p = publisher(topic, options);
    if (!p) return p.status();
    return TypedPublisher<T>(std::move(p).value());
  }
  template <Message T>
  Result<TypedSubscriber<T>> subscriber(std::string_view topic, SubscriberOptions options = {}) {
    auto s = subscriber(topic, options);
    if (!s) return s.status();
    return TypedSubscriber<T>(std::move(s).value());
  }

  // Work queues (shmbus/work_queue.h): point-to-point, acknowledged, prioritised, optionally durable.
  Result<QueueProducer> queue_producer(std::string_view queue, QueueProducerOptions options = {});
  Result<QueueConsumer> queue_consumer(std::string_view queue, QueueConsumerOptions options = {});
  Result<QueueInspector> queue_inspector(std::string_view queue);
  // Request/response (shmbus/rpc.h) on a service name.
  Result<Server> server(std::string_view service, ServerOptions options = {});
  Result<Client> client(std::string_view service, ClientOptions options = {});

  // The daemon's statistics as a TOML document ([daemon], [[topic]] with [[topic.publisher]] and
  // [[topic.subscriber]], [[participant]]): what `shmbus stats` shows.
  Result<std::string> daemon_statistics();

  const std::string& instance() const;
  uint64_t participant_id() const;

 private:
  explicit Bus(std::shared_ptr<detail::Connection> connection) : connection_(std::move(connection)) {}
  std::shared_ptr<detail::Connection> connection_;
};

}  // namespace shmbus

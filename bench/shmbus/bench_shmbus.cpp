// bench-shmbus / bench-shmbus-copy / bench-shmbus-blocking: shmbus in the peer harness.
//   bench-shmbus           zero-copy: loan, write the sequence in place, publish; busy-poll try_take
//   bench-shmbus-unstamped as bench-shmbus, but the publisher does not stamp its messages
//                          (PublisherOptions::stamp_publish_time = false: no TSC read a publish)
//   bench-shmbus-copy      publish(span) and take + memcpy out: what a copying API costs
//   bench-shmbus-blocking  zero-copy, but the receiver sleeps in take() (futex) between messages:
//                          wake-up latency
//   bench-shmbus-batch     copy, handed over kBatch messages at a time with publish_batch (one release
//                          and one sleeper check per batch), received with Subscriber::drain (up to kBatch
//                          per call, each copied out). The topic allows kBatchSlotBytes messages, so that
//                          a batch of smaller ones shares slots (shm/packed_slot.h); at 64 B its ring holds
//                          about as many messages as the naive ring's. In rtt mode every message goes out at
//                          once.
//   bench-shmbus-drain     zero-copy as bench-shmbus, one message per publish; received with
//                          Subscriber::drain (up to kBatch per call, the sequence read in place)
//   bench-shmbus-event-source  zero-copy, but the receiver waits in poll() on an EventSource's fd between
//                          messages (try_take, rearm, poll): the wake-up of an epoll/asio/coroutine loop
// Each run uses a private shmbusd; topics are lossless so stream mode measures delivered messages.

#include <poll.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cstring>
#include <optional>
#include <thread>
#include <vector>

#include "bench_private_daemon.h"
#include "harness/message_buffer.h"
#include "harness/ring_budget.h"
#include "harness/two_process_bench.h"
#include "shmbus/bus.h"
#include "shmbus/event_source.h"

namespace {

enum class Variant { kZeroCopy, kUnstamped, kCopy, kBlocking, kBatch, kDrain, kEventSource };
constexpr std::size_t kBatch = 64;
// bench-shmbus-batch's topic: messages up to 4 KiB, so that a batch packs 60 of 64 B into a slot.
constexpr std::size_t kBatchSlotBytes = 4096;

template <Variant V>
class ShmbusTransport {
 public:
  ShmbusTransport(const bench::BenchOptions& o, bench::Side side) : buffer_(o.size), size_(o.size) {
    if (V == Variant::kBatch) batch_storage_.assign(kBatch * size_, std::byte{0x5a});  // pages touched now
    drained_.reserve(kBatch);
    batching_ = o.mode == bench::Mode::stream;  // a round trip needs each message out at once
    auto bus = shmbus::Bus::connect({.name = side == bench::Side::a ? "bench-a" : "bench-b"});
    if (!bus) throw std::runtime_error(bus.status().to_string());
    bus_.emplace(std::move(bus).value());
    shmbus::TopicSettings settings;
    settings.max_message_size = static_cast<uint32_t>(o.size);
    settings.depth = static_cast<uint32_t>(bench::ring_slots_for(o.size + 32));  // as the naive ring
    if (V == Variant::kBatch && o.size < kBatchSlotBytes) {
      // Larger slots, fewer of them: at 64 B about the naive ring's messages in flight (at least 4 slots).
      settings.max_message_size = kBatchSlotBytes;
      settings.depth = static_cast<uint32_t>(std::bit_floor(std::max<std::size_t>(
          4, bench::ring_slots_for(o.size + 32) * (o.size + 32) / (kBatchSlotBytes + 32))));
    }
    settings.policy = shmbus::Policy::kLossless;
    settings.max_publishers = 1;
    settings.max_subscribers = 2;
    shmbus::SubscriberOptions so{.topic = settings};
    if (V == Variant::kBlocking || V == Variant::kEventSource) so.spin = std::chrono::microseconds(0);
    const char* in = side == bench::Side::a ? "bench/b2a" : "bench/a2b";
    const char* out = side == bench::Side::a ? "bench/a2b" : "bench/b2a";
    auto sub = bus_->subscriber(in, so);
    if (!sub) throw std::runtime_error(sub.status().to_string());
    sub_ = std::move(sub).value();
    auto pub = bus_->publisher(out, {.topic = settings,
                                     .full_timeout = std::chrono::milliseconds(60000),
                                     .stamp_publish_time = V != Variant::kUnstamped});
    if (!pub) throw std::runtime_error(pub.status().to_string());
    pub_ = std::move(pub).value();
    while (pub_.subscribers() == 0) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }

  void send(uint64_t seq) {
    if constexpr (V == Variant::kBatch) {
      // As bench-shmbus-copy: the message is the caller's, only its sequence number changes.
      std::byte* p = batch_storage_.data() + batch_.size() * size_;
      std::memcpy(p, &seq, sizeof seq);
      batch_.emplace_back(p, size_);
      if (batch_.size() == kBatch || !batching_) flush();
    } else if constexpr (V == Variant::kCopy) {
      buffer_.put_sequence(seq);
      if (!pub_.publish(std::span<const std::byte>(buffer_.data(), size_)).ok())
        throw std::runtime_error("publish");
    } else {
      auto loan = pub_.loan();
      if (!loan) throw std::runtime_error(loan.status().to_string());
      std::memcpy(loan->data(), &seq,
                  sizeof seq);  // the payload is written in place; only its head is touched
      loan->set_size(size_);
      pub_.publish(std::move(loan).value());
    }
  }

  void flush() {
    if constexpr (V == Variant::kBatch) {
      std::span<const std::span<const std::byte>> rest(batch_);
      while (!rest.empty()) {
        auto n = pub_.publish_batch(rest);
        if (!n) throw std::runtime_error(n.status().to_string());
        rest = rest.subspan(*n);
      }
      batch_.clear();
    }
  }

  uint64_t receive() {
    // No flush here: a stream's receiving side sends nothing, and a round trip's sends go out at once.
    if constexpr (V == Variant::kBatch || V == Variant::kDrain) {
      while (drained_next_ == drained_.size()) {
        drained_.clear();
        drained_next_ = 0;
        sub_.drain(kBatch, [this](const shmbus::SampleView& v) {
          uint64_t seq;
          if constexpr (V == Variant::kBatch) {
            std::memcpy(buffer_.data(), v.data(), v.size());  // copied out, as bench-shmbus-copy does
            seq = buffer_.sequence();
          } else {
            std::memcpy(&seq, v.data(), sizeof seq);  // read in place, as bench-shmbus does
          }
          drained_.push_back(seq);
        });
      }
      return drained_[drained_next_++];
    }
    shmbus::Sample m;
    if constexpr (V == Variant::kEventSource) {
      if (!source_) {  // added here, not in the constructor: the subscriber must not move once watched
        auto source = shmbus::EventSource::create();
        if (!source) throw std::runtime_error(source.status().to_string());
        source_.emplace(std::move(source).value());
        if (auto st = source_->add(sub_); !st.ok()) throw std::runtime_error(st.to_string());
      }
      // As an event loop does: take what is there; when nothing is, rearm, and poll the fd if that says so.
      while (!(m = sub_.try_take())) {
        if (source_->rearm()) continue;
        pollfd p{source_->fd(), POLLIN, 0};
        if (::poll(&p, 1, 60000) < 0 && errno != EINTR) throw std::runtime_error("poll");
      }
    } else if constexpr (V == Variant::kBlocking) {
      while (!(m = sub_.take(std::chrono::seconds(60)))) {
      }
    } else {
      while (!(m = sub_.try_take())) {
      }
    }
    uint64_t seq;
    if constexpr (V == Variant::kCopy) {
      std::memcpy(buffer_.data(), m.data(), m.size());
      seq = buffer_.sequence();
    } else {
      std::memcpy(&seq, m.data(), sizeof seq);
    }
    return seq;
  }

 private:
  std::optional<shmbus::Bus> bus_;
  shmbus::Publisher pub_;
  shmbus::Subscriber sub_;
  std::optional<shmbus::EventSource> source_;  // kEventSource; declared after sub_, so destroyed before it
  bench::MessageBuffer buffer_;
  size_t size_;
  std::vector<std::byte> batch_storage_;           // kBatch: kBatch messages of size_ bytes
  std::vector<std::span<const std::byte>> batch_;  // kBatch: the messages queued in batch_storage_
  bool batching_ = false;                          // kBatch: stream mode (rtt sends each message at once)
  std::vector<uint64_t> drained_;  // kBatch, kDrain: sequences of the last drain, handed out in turn
  std::size_t drained_next_ = 0;
};

template <Variant V>
class ShmbusPeer {
 public:
  static constexpr const char* kName = V == Variant::kZeroCopy      ? "shmbus"
                                       : V == Variant::kUnstamped   ? "shmbus-unstamped"
                                       : V == Variant::kCopy        ? "shmbus-copy"
                                       : V == Variant::kBatch       ? "shmbus-batch"
                                       : V == Variant::kDrain       ? "shmbus-drain"
                                       : V == Variant::kEventSource ? "shmbus-event-source"
                                                                    : "shmbus-blocking";
  static constexpr bool kSupportsStream = true;
  static constexpr bool kCopiesPayload = V == Variant::kCopy || V == Variant::kBatch;

  explicit ShmbusPeer(const bench::BenchOptions& o) : options_(o) {}
  ShmbusTransport<V> open(bench::Side side) { return ShmbusTransport<V>(options_, side); }

 private:
  bench::PrivateDaemon daemon_;
  bench::BenchOptions options_;
};

}  // namespace

int main(int argc, char** argv) {
  return bench::run_two_process_bench<ShmbusPeer<SHMBUS_BENCH_VARIANT>>(argc, argv);
}

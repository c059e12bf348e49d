// What the bridge's threads share: the stop flag, counters, the relay hand-off and the ids of the bridge's
// own local publishers. The outbound thread owns the XPUB socket, the inbound thread the XSUB socket, the
// local publishers and the statistics; each counter is written by one thread and read by the inbound thread.
#pragma once

#include <atomic>
#include <cstdint>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "bridge/wire_format.h"
#include "bridge/zmq_message.h"
#include "shmbus/wait_set.h"

namespace shmbus::bridge {

// Monotonic counters. Relaxed: each is a tally read for display, ordering nothing.
struct Counters {
  // Outbound thread: local bus -> peers. Messages, not ZeroMQ messages: a batch counts each it carries.
  std::atomic<uint64_t> messages_out{0};
  std::atomic<uint64_t> bytes_out{0};
  std::atomic<uint64_t> relayed_out{0};    // messages of other origins passed on to our peers
  std::atomic<uint64_t> send_dropped{0};   // lossless mode: a peer stayed full for send_timeout
  std::atomic<uint64_t> local_dropped{0};  // lost on our local subscriber before we could forward them
  std::atomic<uint64_t> remote_topics{0};  // wire topics our peers subscribe to right now (a gauge)
  std::atomic<uint64_t> unselected_subscriptions{0};  // peer subscriptions no out rule selects
  // Inbound thread: peers -> local bus.
  std::atomic<uint64_t> messages_in{0};
  std::atomic<uint64_t> bytes_in{0};
  std::atomic<uint64_t> duplicates{0};       // seen before via another path: suppressed
  std::atomic<uint64_t> own_origin{0};       // our own messages coming back round a loop: suppressed
  std::atomic<uint64_t> stale_epoch{0};      // from an origin bridge's previous run
  std::atomic<uint64_t> malformed{0};        // ZeroMQ messages: wrong frame count, bad topic frame, bad batch
  std::atomic<uint64_t> unknown_version{0};  // ZeroMQ messages of another wire version
  std::atomic<uint64_t> hop_limit{0};        // crossed more than max_hops bridges
  std::atomic<uint64_t> unselected{0};       // a topic no in rule selects
  std::atomic<uint64_t> unsubscribed{0};     // a topic no local subscriber wants (and not relayed)
  std::atomic<uint64_t> gaps{0};             // sequences skipped: a later one arrived first
  std::atomic<uint64_t> late{0};             // delivered after a later sequence (along a slower path)
  std::atomic<uint64_t> gaps_filled{0};      // ...of which were counted in gaps: gaps - gaps_filled are lost
  std::atomic<uint64_t> too_large{0};        // larger than the local topic's max_message_size
  std::atomic<uint64_t> publish_failed{0};   // local topic unavailable or full past full_timeout
  std::atomic<uint64_t> relay_dropped{0};    // relay queue overflow
  // ZAP handler thread.
  std::atomic<uint64_t> auth_accepted{0};
  std::atomic<uint64_t> auth_refused{0};
};

// Messages the inbound thread received and the outbound thread passes on (multi-hop).
class RelayQueue {
 public:
  struct Item {
    std::string topic_frame;
    ZmqMessage batch;  // one record, its header already marked relayed: sent as it is
  };
  // Bounds, by count and by bytes: relays of large messages to a stalled peer must not grow without end.
  static constexpr std::size_t kMaxQueued = 65536;
  static constexpr std::size_t kMaxQueuedBytes = 64u << 20;

  // Inbound thread. False (and nothing queued) when full. The first item after the queue was taken wakes
  // the outbound thread's wait (one system call per batch of relays, not per item).
  bool push(Item&& item) {
    std::lock_guard lock(mutex_);
    const std::size_t bytes = item.batch.bytes().size() + item.topic_frame.size();
    // One item always fits an empty queue, so that a message larger than the budget still travels.
    if (items_.size() >= kMaxQueued || (!items_.empty() && queued_bytes_ + bytes > kMaxQueuedBytes))
      return false;
    queued_bytes_ += bytes;
    items_.push_back(std::move(item));
    // relaxed load: under the lock, which take_all's store also holds. release store: pairs with the acquire
    // in take_all.
    const bool was_pending = pending_.load(std::memory_order_relaxed);
    pending_.store(true, std::memory_order_release);
    if (!was_pending && waiter_ != nullptr) waiter_->notify();
    return true;
  }
  // Outbound thread: the wait set to notify when relays arrive (nullptr: none; set before waiting on it,
  // cleared before it goes away).
  void set_waiter(WaitSet* waiter) {
    std::lock_guard lock(mutex_);
    waiter_ = waiter;
  }
  // Outbound thread: moves everything queued into *out (cleared first).
  void take_all(std::vector<Item>* out) {
    out->clear();
    if (!pending_.load(std::memory_order_acquire)) return;
    std::lock_guard lock(mutex_);
    out->swap(items_);
    queued_bytes_ = 0;
    pending_.store(false, std::memory_order_relaxed);  // under the lock: a concurrent push re-sets it after
  }

 private:
  std::mutex mutex_;
  std::vector<Item> items_;
  std::size_t queued_bytes_ = 0;  // of items_, guarded by mutex_
  std::atomic<bool> pending_{false};
  WaitSet* waiter_ = nullptr;  // guarded by mutex_
};

// Ids of the local publishers the inbound thread opened: the outbound thread must not send their messages
// (they came from the network) back out as if they were local.
class OwnPublishers {
 public:
  void set(std::vector<uint64_t> ids) {
    std::lock_guard lock(mutex_);
    ids_ = std::move(ids);
    version_.fetch_add(1, std::memory_order_release);  // pairs with the acquire in changed()
  }
  bool changed(uint64_t seen_version) const {
    return version_.load(std::memory_order_acquire) != seen_version;
  }
  uint64_t snapshot(std::vector<uint64_t>* out) const {
    std::lock_guard lock(mutex_);
    *out = ids_;
    return version_.load(std::memory_order_relaxed);
  }

 private:
  mutable std::mutex mutex_;
  std::vector<uint64_t> ids_;
  std::atomic<uint64_t> version_{0};
};

// The wire topics our peers subscribe to (the outbound thread's view), for the inbound thread: relaying a
// message nobody downstream wants would cost a queue hand-off and a send per message for nothing.
class RemoteInterest {
 public:
  void set(std::vector<std::string> topics) {
    std::lock_guard lock(mutex_);
    topics_ = std::move(topics);
    version_.fetch_add(1, std::memory_order_release);  // pairs with the acquire in version()
  }
  uint64_t version() const { return version_.load(std::memory_order_acquire); }
  bool wanted(std::string_view wire_topic) const {
    std::lock_guard lock(mutex_);
    for (const auto& t : topics_) {
      if (t == wire_topic) return true;
    }
    return false;
  }

 private:
  mutable std::mutex mutex_;
  std::vector<std::string> topics_;
  std::atomic<uint64_t> version_{0};
};

struct Shared {
  // Set once to end the threads. Relaxed everywhere: a flag polled for a prompt exit; nothing is read
  // through it, and the threads' join orders what they did before the main thread goes on.
  std::atomic<bool> stop{false};
  // Bumped by the inbound thread when it finds the local daemon gone: the outbound thread then drops its
  // subscribers and reconnects too. Relaxed: only its change is looked at, and each thread talks to the
  // daemon through its own Bus, which orders everything else.
  std::atomic<uint64_t> daemon_losses{0};
  Counters counters;
  RelayQueue relay;
  OwnPublishers own_publishers;
  RemoteInterest remote_interest;
};

}  // namespace shmbus::bridge

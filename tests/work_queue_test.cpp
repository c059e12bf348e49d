// The shared-memory work queue on its own (no daemon): ordering, acknowledgement, redelivery, dead letters,
// recovery of a corrupted file image, and a multi-threaded stress run (run under ThreadSanitizer in CI).
#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <map>
#include <mutex>
#include <set>
#include <thread>
#include <vector>

#include "shm/work_queue.h"

namespace shmbus::shm {
namespace {

struct TestQueue {
  explicit TestQueue(WorkQueueGeometry g) : bytes(work_queue_bytes(g) / 64 + 1) {
    WorkQueue::initialize(base(), work_queue_bytes(g), g, 1, "test", "boot-a");
    std::string why;
    auto q = WorkQueue::attach(base(), work_queue_bytes(g), &why);
    EXPECT_TRUE(q.has_value()) << why;
    queue.emplace(*q);
  }
  std::byte* base() { return reinterpret_cast<std::byte*>(bytes.data()); }
  struct alignas(64) Line {
    std::byte b[64];
  };
  std::vector<Line> bytes;
  std::optional<WorkQueue> queue;
};

const pid_t kMe = getpid();

void put(WorkQueue& q, uint64_t value, uint32_t priority = 0) {
  ClaimedEntry c;
  ASSERT_EQ(q.reserve(kMe, &c), QueueOp::kOk);
  std::memcpy(c.payload, &value, sizeof value);
  ASSERT_EQ(q.commit(c, kMe, {.size = sizeof value, .priority = priority}), QueueOp::kOk);
}

uint64_t value_of(const DeliveredEntry& d) {
  uint64_t v = 0;
  std::memcpy(&v, d.payload, sizeof v);
  return v;
}

TEST(WorkQueueTest, HigherPriorityFirstFifoWithinALevel) {
  TestQueue t({.capacity = 16, .max_message_size = 64});
  WorkQueue& q = *t.queue;
  put(q, 1, 0);
  put(q, 2, 5);
  put(q, 3, 0);
  put(q, 4, 9);
  put(q, 5, 5);
  std::vector<uint64_t> order;
  DeliveredEntry d;
  while (q.pop(kMe, std::chrono::seconds(10), &d) == QueueOp::kOk) {
    order.push_back(value_of(d));
    EXPECT_EQ(q.ack(d.index, d.tag), QueueOp::kOk);
  }
  EXPECT_EQ(order, (std::vector<uint64_t>{4, 2, 5, 1, 3}));
  EXPECT_EQ(q.snapshot().acked, 5u);
  EXPECT_EQ(q.snapshot().ready, 0u);
}

TEST(WorkQueueTest, FullQueueRefusesThenAckMakesRoom) {
  TestQueue t({.capacity = 4, .max_message_size = 8});
  WorkQueue& q = *t.queue;
  for (uint64_t i = 0; i < 4; ++i) put(q, i);
  ClaimedEntry c;
  EXPECT_EQ(q.reserve(kMe, &c), QueueOp::kFull);
  DeliveredEntry d;
  ASSERT_EQ(q.pop(kMe, std::chrono::seconds(1), &d), QueueOp::kOk);
  EXPECT_EQ(q.reserve(kMe, &c), QueueOp::kFull) << "in flight still occupies its entry";
  ASSERT_EQ(q.ack(d.index, d.tag), QueueOp::kOk);
  EXPECT_EQ(q.reserve(kMe, &c), QueueOp::kOk);
  EXPECT_EQ(q.snapshot().full, 2u);
}

TEST(WorkQueueTest, RejectRedeliversWithCountThenDeadLettersAndReplays) {
  TestQueue t({.capacity = 8, .max_message_size = 8, .max_deliveries = 3});
  WorkQueue& q = *t.queue;
  put(q, 42);
  put(q, 43);
  DeliveredEntry d;
  for (uint32_t attempt = 1; attempt <= 3; ++attempt) {
    ASSERT_EQ(q.pop(kMe, std::chrono::seconds(1), &d), QueueOp::kOk);
    EXPECT_EQ(value_of(d), 42u) << "a redelivery keeps its place at the front";
    EXPECT_EQ(d.deliveries, attempt);
    ASSERT_EQ(q.reject(d.index, d.tag, true), QueueOp::kOk);
  }
  EXPECT_EQ(q.snapshot().dead, 1u);
  auto dead = q.dead_letters(10);
  ASSERT_EQ(dead.size(), 1u);
  EXPECT_EQ(dead[0].deliveries, 3u);
  uint64_t v = 0;
  std::memcpy(&v, dead[0].payload.data(), sizeof v);
  EXPECT_EQ(v, 42u);
  ASSERT_EQ(q.pop(kMe, std::chrono::seconds(1), &d), QueueOp::kOk);
  EXPECT_EQ(value_of(d), 43u);
  ASSERT_EQ(q.ack(d.index, d.tag), QueueOp::kOk);
  EXPECT_EQ(q.replay_dead(), 1u);
  ASSERT_EQ(q.pop(kMe, std::chrono::seconds(1), &d), QueueOp::kOk);
  EXPECT_EQ(value_of(d), 42u);
  EXPECT_EQ(d.deliveries, 1u) << "replay resets the delivery count";
  ASSERT_EQ(q.reject(d.index, d.tag, false), QueueOp::kOk);
  EXPECT_EQ(q.purge_dead(), 1u);
  EXPECT_EQ(q.snapshot().dead, 0u);
}

// dead_letters(max) returns the oldest `max` dead letters, in sequence order (and copies only those).
TEST(WorkQueueTest, DeadLettersReturnsTheOldestFirstUpToMax) {
  TestQueue t({.capacity = 16, .max_message_size = 8, .max_deliveries = 1});
  WorkQueue& q = *t.queue;
  for (uint64_t v = 1; v <= 6; ++v) put(q, v);
  DeliveredEntry d;
  for (int i = 0; i < 6; ++i) {
    ASSERT_EQ(q.pop(kMe, std::chrono::seconds(1), &d), QueueOp::kOk);
    ASSERT_EQ(q.reject(d.index, d.tag, true), QueueOp::kOk);  // one delivery allowed: dead at once
  }
  ASSERT_EQ(q.snapshot().dead, 6u);
  const auto dead = q.dead_letters(4);
  ASSERT_EQ(dead.size(), 4u);
  for (uint64_t k = 0; k < 4; ++k) {
    uint64_t v = 0;
    std::memcpy(&v, dead[k].payload.data(), sizeof v);
    EXPECT_EQ(v, k + 1);
  }
  EXPECT_EQ(q.dead_letters(100).size(), 6u);
  EXPECT_TRUE(q.dead_letters(0).empty());
}

TEST(WorkQueueTest, VisibilityTimeoutRedeliversAndTheStaleAckIsRefused) {
  TestQueue t({.capacity = 8, .max_message_size = 8});
  WorkQueue& q = *t.queue;
  put(q, 7);
  DeliveredEntry first, second;
  ASSERT_EQ(q.pop(kMe, std::chrono::milliseconds(1), &first), QueueOp::kOk);
  EXPECT_EQ(q.expire(steady_now_ns() + 2'000'000), 1u);
  ASSERT_EQ(q.pop(kMe, std::chrono::seconds(10), &second), QueueOp::kOk);
  EXPECT_EQ(second.deliveries, 2u);
  EXPECT_EQ(q.ack(first.index, first.tag), QueueOp::kStale) << "the first consumer lost it to the timeout";
  EXPECT_EQ(q.ack(second.index, second.tag), QueueOp::kOk);
  EXPECT_EQ(q.snapshot().expired, 1u);
}

TEST(WorkQueueTest, DeadOwnerLosesWritingAndInFlightEntries) {
  TestQueue t({.capacity = 8, .max_message_size = 8});
  WorkQueue& q = *t.queue;
  const pid_t dead = 999'999;
  ClaimedEntry c;
  ASSERT_EQ(q.reserve(dead, &c), QueueOp::kOk);  // mid-loan
  put(q, 1);
  DeliveredEntry d;
  ASSERT_EQ(q.pop(dead, std::chrono::seconds(10), &d), QueueOp::kOk);  // holding a delivery
  EXPECT_TRUE(q.release_owner(dead, true).empty());
  const QueueSnapshot s = q.snapshot();
  EXPECT_EQ(s.writing, 0u);
  EXPECT_EQ(s.in_flight, 0u);
  EXPECT_EQ(s.ready, 1u);
  EXPECT_EQ(q.commit(c, dead, {.size = 1}), QueueOp::kStale);
  // A service queue does not redeliver: the daemon gets the requests back to fail the calls.
  TestQueue svc({.capacity = 8, .max_message_size = 8, .flags = kQueueService});
  ASSERT_EQ(svc.queue->reserve(kMe, &c), QueueOp::kOk);
  ASSERT_EQ(svc.queue->commit(c, kMe, {.size = 1, .correlation = 77, .reply_queue = 5}), QueueOp::kOk);
  ASSERT_EQ(svc.queue->pop(dead, std::chrono::seconds(10), &d), QueueOp::kOk);
  auto failed = svc.queue->release_owner(dead, false);
  ASSERT_EQ(failed.size(), 1u);
  EXPECT_EQ(failed[0].correlation, 77u);
  EXPECT_EQ(failed[0].reply_queue, 5u);
  EXPECT_EQ(svc.queue->snapshot().ready + svc.queue->snapshot().in_flight, 0u);
}

TEST(WorkQueueTest, RecoveryDropsCorruptEntriesKeepsTheRestAndRequeuesAnEarlierBootsDeliveries) {
  TestQueue t({.capacity = 8, .max_message_size = 64, .flags = kQueueDurable});
  WorkQueue& q = *t.queue;
  for (uint64_t i = 0; i < 5; ++i) put(q, 100 + i);
  DeliveredEntry d;
  ASSERT_EQ(q.pop(kMe, std::chrono::seconds(10), &d), QueueOp::kOk);  // 100 in flight at the "crash"
  // Flip a payload byte of 102 (as a torn write or bad sector would).
  DeliveredEntry peek;
  std::byte* victim = nullptr;
  for (uint32_t i = 0; i < 8; ++i) {
    auto* e =
        reinterpret_cast<EntryHeader*>(t.base() + q.header()->entries_offset + i * q.header()->slot_stride);
    uint64_t v = 0;
    std::memcpy(&v, reinterpret_cast<std::byte*>(e) + kEntryHeaderBytes, sizeof v);
    if (v == 102) victim = reinterpret_cast<std::byte*>(e) + kEntryHeaderBytes;
  }
  ASSERT_NE(victim, nullptr);
  victim[0] ^= std::byte{0x40};
  const RecoveryReport r = q.recover(true, "boot-b");
  EXPECT_EQ(r.corrupt, 1u);
  EXPECT_EQ(r.requeued, 1u);
  EXPECT_EQ(r.recovered, 4u);
  std::vector<uint64_t> got;
  while (q.pop(kMe, std::chrono::seconds(10), &peek) == QueueOp::kOk) {
    got.push_back(value_of(peek));
    ASSERT_EQ(q.ack(peek.index, peek.tag), QueueOp::kOk);
  }
  EXPECT_EQ(got, (std::vector<uint64_t>{100, 101, 103, 104}));
}

TEST(WorkQueueTest, AttachRefusesAnInconsistentHeader) {
  TestQueue t({.capacity = 8, .max_message_size = 64});
  std::string why;
  EXPECT_FALSE(WorkQueue::attach(t.base(), 100, &why).has_value());
  t.queue->header()->capacity = 1u << 30;
  EXPECT_FALSE(WorkQueue::attach(t.base(), t.bytes.size() * 64, &why).has_value());
  EXPECT_FALSE(why.empty());
}

// Every process maps the queue writable. One that rewrites the geometry after the others attached (or an
// entry's size) must not steer them out of the mapping: they keep the geometry attach() checked.
TEST(WorkQueueTest, GeometryRewrittenAfterAttachIsNotFollowed) {
  TestQueue t({.capacity = 4, .max_message_size = 64});
  WorkQueue& q = *t.queue;
  put(q, 7);
  put(q, 8);
  WorkQueueHeader* h = q.header();
  h->capacity = 1u << 20;
  h->slot_stride = 1u << 30;
  h->entries_offset = uint64_t{1} << 40;
  h->max_message_size = 1u << 30;
  EXPECT_EQ(q.capacity(), 4u);
  EXPECT_EQ(q.max_message_size(), 64u);
  DeliveredEntry d;
  ASSERT_EQ(q.pop(kMe, std::chrono::seconds(10), &d), QueueOp::kOk);
  EXPECT_EQ(value_of(d), 7u);
  EXPECT_EQ(q.expire(steady_now_ns() + 60'000'000'000), 1u) << "the delivery, past its deadline";
  EXPECT_TRUE(q.release_owner(kMe, true).empty());
  EXPECT_EQ(q.owners().size(), 0u);
  ClaimedEntry c;
  ASSERT_EQ(q.reserve(kMe, &c), QueueOp::kOk);
  EXPECT_EQ(c.capacity, 64u);
  EXPECT_EQ(q.commit(c, kMe, {.size = 65}), QueueOp::kCorrupt) << "beyond the checked maximum";
  q.abandon(c, kMe);
  std::set<uint64_t> delivered;
  while (q.pop(kMe, std::chrono::seconds(10), &d) == QueueOp::kOk) {
    delivered.insert(value_of(d));
    EXPECT_EQ(d.size, sizeof(uint64_t));
    ASSERT_EQ(q.ack(d.index, d.tag), QueueOp::kOk);
  }
  EXPECT_EQ(delivered, (std::set<uint64_t>{7, 8})) << "the expired delivery again, and the other";
}

// Producers and consumers on threads; consumers reject about one in seven deliveries. Every message is
// acked exactly once, and within one producer and one priority, first deliveries come in order.
TEST(WorkQueueTest, MultiThreadedStressEveryMessageAckedExactlyOnce) {
  TestQueue t({.capacity = 64, .max_message_size = 16, .max_deliveries = 1000});
  WorkQueue& q = *t.queue;
  constexpr uint64_t kPerProducer = 20'000;
  constexpr int kProducers = 2, kConsumers = 3;
  std::atomic<uint64_t> acked{0};
  std::mutex seen_mutex;
  std::set<uint64_t> seen;
  std::vector<std::thread> threads;
  for (int p = 0; p < kProducers; ++p) {
    threads.emplace_back([&, p] {
      for (uint64_t i = 0; i < kPerProducer; ++i) {
        ClaimedEntry c;
        while (q.reserve(kMe, &c) != QueueOp::kOk) q.wait_space(std::chrono::milliseconds(10));
        const uint64_t v = (static_cast<uint64_t>(p) << 32) | i;
        std::memcpy(c.payload, &v, sizeof v);
        ASSERT_EQ(q.commit(c, kMe, {.size = sizeof v, .priority = static_cast<uint32_t>(i % 3)}),
                  QueueOp::kOk);
      }
    });
  }
  for (int c = 0; c < kConsumers; ++c) {
    threads.emplace_back([&, c] {
      uint64_t n = 0;
      while (acked.load() < kProducers * kPerProducer) {
        DeliveredEntry d;
        if (q.pop(kMe, std::chrono::seconds(30), &d) != QueueOp::kOk) {
          q.wait_ready(std::chrono::milliseconds(10));
          continue;
        }
        const uint64_t v = value_of(d);
        if (++n % 7 == static_cast<uint64_t>(c)) {
          ASSERT_EQ(q.reject(d.index, d.tag, true), QueueOp::kOk);
          continue;
        }
        {
          std::lock_guard lock(seen_mutex);
          ASSERT_TRUE(seen.insert(v).second) << "acked twice: " << v;
        }
        ASSERT_EQ(q.ack(d.index, d.tag), QueueOp::kOk);
        acked.fetch_add(1);
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(seen.size(), kProducers * kPerProducer);
  const QueueSnapshot s = q.snapshot();
  EXPECT_EQ(s.enqueued, kProducers * kPerProducer);
  EXPECT_EQ(s.acked, kProducers * kPerProducer);
  EXPECT_EQ(s.ready + s.in_flight + s.writing + s.dead, 0u);
  EXPECT_EQ(s.delivered, s.acked + s.rejected);
}

}  // namespace
}  // namespace shmbus::shm

// Work queues and request/response through a real daemon, across real processes (fork): exactly-once
// delivery to competing consumers, redelivery after kill -9, visibility timeouts, dead letters, priorities,
// durability across daemon kill -9 / restart / simulated reboot with corruption, RPC correlation, deadlines
// and server death, the CLI, and the documented errors.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <toml++/toml.h>
#include <algorithm>
#include <cstddef>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <set>
#include <thread>

#include "bus/control_protocol.h"
#include "shm/segment.h"
#include "shm/work_queue_layout.h"
#include "shmbus/rpc.h"
#include "shmbus/work_queue.h"
#include "support/durable_queue_file.h"
#include "support/fork_child.h"
#include "support/raw_control_socket.h"
#include "support/scratch_dir.h"
#include "support/test_daemon.h"
#include "support/word_bytes.h"

namespace shmbus::test {
namespace {

using namespace std::chrono_literals;

// A server process that answers one call on `service` with its request's bytes: exit 0, or 2 (no server),
// 4 (no call within 10 s), 3 (the response failed).
pid_t spawn_echo_once(const TestDaemon& daemon, const std::string& service) {
  return spawn([&] {
    Bus b = daemon.connect("server");
    auto s = b.server(service);
    if (!s) return 2;
    auto r = s->receive(10s);
    if (!r) return 4;
    return r->respond(r->bytes()).ok() ? 0 : 3;
  });
}

TEST(QueueTest, CompetingConsumerProcessesGetEachMessageExactlyOnce) {
  TestDaemon daemon;
  Bus bus = daemon.connect();
  constexpr uint64_t kMessages = 20'000;
  constexpr int kConsumers = 3;
  const ScratchDir scratch("shmbus-q");
  const std::string& dir = scratch.path();
  QueueProducerOptions po;
  po.queue.capacity = 128;
  auto producer = bus.queue_producer("jobs/work", po);
  ASSERT_TRUE(producer.ok()) << producer.status().to_string();
  std::vector<pid_t> consumers;
  for (int c = 0; c < kConsumers; ++c) {
    consumers.push_back(spawn([&, c] {
      Bus b = daemon.connect("consumer");
      auto consumer = b.queue_consumer("jobs/work");
      if (!consumer) return 2;
      std::ofstream out(dir + "/" + std::to_string(c), std::ios::binary);
      for (;;) {
        auto d = consumer->receive(30s);
        if (!d) return 3;
        const uint64_t v = value_of(d->bytes());
        if (!d->ack().ok()) return 4;
        if (v == ~0ull) return 0;  // one stop message per consumer
        out.write(reinterpret_cast<const char*>(&v), sizeof v);
      }
    }));
  }
  for (uint64_t i = 0; i < kMessages; ++i) {
    const uint64_t v = i * 2654435761u;
    ASSERT_TRUE(producer->send(bytes_of(v)).ok());
  }
  for (int c = 0; c < kConsumers; ++c) ASSERT_TRUE(producer->send(bytes_of(~0ull)).ok());
  std::multiset<uint64_t> got;
  std::vector<std::size_t> per_consumer;
  for (int c = 0; c < kConsumers; ++c) {
    EXPECT_EQ(wait_exit(consumers[c]), 0);
    std::ifstream in(dir + "/" + std::to_string(c), std::ios::binary);
    uint64_t v;
    std::size_t n = 0;
    while (in.read(reinterpret_cast<char*>(&v), sizeof v)) got.insert(v), ++n;
    per_consumer.push_back(n);
  }
  ASSERT_EQ(got.size(), kMessages);
  for (uint64_t i = 0; i < kMessages; ++i) ASSERT_EQ(got.count(i * 2654435761u), 1u) << "message " << i;
  const toml::table s = daemon.queue_statistics("jobs/work");
  EXPECT_EQ(s["acked"].value_or(0LL), static_cast<int64_t>(kMessages + kConsumers));
  EXPECT_EQ(s["in_flight"].value_or(-1LL), 0);
}

TEST(QueueTest, KilledConsumersDeliveriesComeBackWithTheirDeliveryCount) {
  TestDaemon daemon;
  Bus bus = daemon.connect();
  auto producer = bus.queue_producer("jobs/kill");
  ASSERT_TRUE(producer.ok());
  for (uint64_t i = 1; i <= 5; ++i) ASSERT_TRUE(producer->send(bytes_of(i)).ok());
  int ready[2];
  ASSERT_EQ(pipe(ready), 0);
  const pid_t victim = spawn([&] {
    Bus b = daemon.connect("victim");
    auto consumer = b.queue_consumer("jobs/kill");
    std::vector<Delivery> held;
    for (int i = 0; i < 3; ++i) held.push_back(std::move(consumer->receive(5s).value()));
    (void)write(ready[1], "x", 1);
    pause();  // killed while holding three deliveries
    return 0;
  });
  char c;
  ASSERT_EQ(read(ready[0], &c, 1), 1);
  kill(victim, SIGKILL);
  EXPECT_EQ(wait_exit(victim), 128 + SIGKILL);
  // The daemon takes the dead consumer's three deliveries back within a tick. Wait for that (a liveness
  // bound) before receiving: otherwise 4 and 5, still ready, may go out before the reclaim puts 1..3 back in
  // place.
  const auto deadline = std::chrono::steady_clock::now() + 10s;
  while (daemon.queue_statistics("jobs/kill")["in_flight"].value_or(-1LL) != 0 &&
         std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(10ms);
  }
  ASSERT_EQ(daemon.queue_statistics("jobs/kill")["in_flight"].value_or(-1LL), 0)
      << "not reclaimed within 10 s";
  auto consumer = bus.queue_consumer("jobs/kill");
  ASSERT_TRUE(consumer.ok());
  std::vector<uint64_t> order;
  std::vector<uint32_t> counts;
  for (int i = 0; i < 5; ++i) {
    auto d = consumer->receive(5s);  // liveness bound: the daemon takes them back within a tick
    ASSERT_TRUE(d.ok()) << d.status().to_string();
    order.push_back(value_of(d->bytes()));
    counts.push_back(d->delivery_count());
    ASSERT_TRUE(d->ack().ok());
  }
  EXPECT_EQ(order, (std::vector<uint64_t>{1, 2, 3, 4, 5})) << "redeliveries keep their place";
  EXPECT_EQ(counts, (std::vector<uint32_t>{2, 2, 2, 1, 1}));
  close(ready[0]);
  close(ready[1]);
}

TEST(QueueTest, VisibilityTimeoutRedeliversToAnotherConsumer) {
  TestDaemon daemon;
  Bus bus = daemon.connect();
  QueueConsumerOptions slow;
  slow.visibility_timeout = 200ms;
  auto a = bus.queue_consumer("jobs/slow", slow);
  auto b = bus.queue_consumer("jobs/slow");
  auto producer = bus.queue_producer("jobs/slow");
  ASSERT_TRUE(a.ok() && b.ok() && producer.ok());
  ASSERT_TRUE(producer->send(bytes_of(uint64_t{9})).ok());
  auto first = a->receive(1s);
  ASSERT_TRUE(first.ok());
  auto second = b->receive(5s);
  ASSERT_TRUE(second.ok()) << second.status().to_string();
  EXPECT_EQ(value_of(second->bytes()), 9u);
  EXPECT_EQ(second->delivery_count(), 2u);
  EXPECT_EQ(first->ack().code(), Errc::kInvalidArgument) << "a stale ack must not remove the redelivery";
  EXPECT_TRUE(second->ack().ok());
  EXPECT_EQ(daemon.queue_statistics("jobs/slow")["expired"].value_or(0LL), 1);
}

TEST(QueueTest, PoisonMessageBecomesADeadLetterThatCanBeInspectedAndReplayed) {
  TestDaemon daemon;
  Bus bus = daemon.connect();
  QueueProducerOptions po;
  po.queue.max_deliveries = 3;
  auto producer = bus.queue_producer("jobs/poison", po);
  auto consumer = bus.queue_consumer("jobs/poison");
  ASSERT_TRUE(producer.ok() && consumer.ok());
  const std::string text = "bad job";
  ASSERT_TRUE(producer->send(std::as_bytes(std::span(text.data(), text.size())), 4).ok());
  for (int i = 0; i < 3; ++i) {
    auto d = consumer->receive(1s);
    ASSERT_TRUE(d.ok());
    ASSERT_TRUE(d->reject().ok());
  }
  EXPECT_EQ(consumer->receive(100ms).status().code(), Errc::kTimeout);
  auto inspector = bus.queue_inspector("jobs/poison");
  ASSERT_TRUE(inspector.ok());
  EXPECT_EQ(inspector->info().dead_letters, 1u);
  auto dead = run_process({SHMBUS_CLI_PATH, "queue", "dead", "jobs/poison"});
  EXPECT_EQ(dead.status, 0);
  EXPECT_NE(dead.out.find("priority 4 deliveries 3: bad job"), std::string::npos) << dead.out;
  auto replay = run_process({SHMBUS_CLI_PATH, "queue", "replay", "jobs/poison"});
  EXPECT_NE(replay.out.find("replayed 1"), std::string::npos) << replay.out;
  auto again = consumer->receive(1s);
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->delivery_count(), 1u);
  EXPECT_TRUE(again->ack().ok());
}

TEST(QueueTest, HigherPrioritiesFirstFifoWithinALevelAcrossProcesses) {
  TestDaemon daemon;
  Bus bus = daemon.connect();
  auto consumer = bus.queue_consumer("jobs/prio");
  ASSERT_TRUE(consumer.ok());
  const pid_t producer = spawn([&] {
    Bus b = daemon.connect("producer");
    auto p = b.queue_producer("jobs/prio");
    for (uint64_t i = 0; i < 200; ++i) {
      const uint64_t v = (i % 10) << 32 | i;  // priority in the high half, order in the low
      if (!p->send(bytes_of(v), static_cast<uint32_t>(i % 10)).ok()) return 1;
    }
    return 0;
  });
  ASSERT_EQ(wait_exit(producer), 0);
  uint64_t last = ~0ull;
  for (int i = 0; i < 200; ++i) {
    auto d = consumer->receive(1s);
    ASSERT_TRUE(d.ok());
    const uint64_t v = value_of(d->bytes());
    EXPECT_EQ(d->priority(), v >> 32);
    if (last != ~0ull) {
      EXPECT_TRUE((v >> 32) < (last >> 32) || ((v >> 32) == (last >> 32) && v > last))
          << v << " after " << last;
    }
    last = v;
    ASSERT_TRUE(d->ack().ok());
  }
}

TEST(QueueTest, ErrorsAreTypedAndExplained) {
  TestDaemon daemon;
  Bus bus = daemon.connect();
  EXPECT_EQ(bus.queue_producer("bad//name").status().code(), Errc::kInvalidTopic);
  QueueProducerOptions po;
  po.queue.capacity = 2;
  po.queue.max_message_size = 8;
  po.full_timeout = 50ms;
  auto producer = bus.queue_producer("jobs/small", po);
  ASSERT_TRUE(producer.ok());
  const std::string big(9, 'x');
  EXPECT_EQ(producer->send(std::as_bytes(std::span(big.data(), big.size()))).code(), Errc::kMessageTooLarge);
  EXPECT_EQ(producer->send(bytes_of(uint64_t{1}), 10).code(), Errc::kInvalidArgument);
  ASSERT_TRUE(producer->send(bytes_of(uint64_t{1})).ok());
  ASSERT_TRUE(producer->send(bytes_of(uint64_t{2})).ok());
  const Status full = producer->send(bytes_of(uint64_t{3}));
  EXPECT_EQ(full.code(), Errc::kTimeout);
  EXPECT_NE(full.message().find("full"), std::string::npos);
  QueueConsumerOptions co;
  co.queue.capacity = 64;
  const Status clash = bus.queue_consumer("jobs/small", co).status();
  EXPECT_EQ(clash.code(), Errc::kIncompatibleSettings);
  EXPECT_NE(clash.message().find("capacity=2"), std::string::npos) << clash.message();
  EXPECT_NE(clash.message().find("capacity=64"), std::string::npos) << clash.message();
  EXPECT_EQ(daemon.queue_statistics("jobs/small")["full"].value_or(0LL) > 0, true);
}

// Durable queue: messages survive a daemon kill -9 and restart, then a simulated reboot (clean stop, page
// cache dropped where allowed, the file's boot id changed) during which one message was corrupted on disk.
TEST(QueueTest, DurableQueueSurvivesDaemonKillAndRebootAndReportsCorruption) {
  const ScratchDir scratch("shmbus-durable");
  const std::string& data_dir = scratch.path();
  {
    TestDaemon daemon("data_dir = \"" + data_dir +
                      "\"\n[[queue]]\npattern = \"orders/**\"\ndurable = true\n"
                      "sync = \"always\"\ncapacity = 64\n");
    {
      Bus bus = daemon.connect();
      auto producer = bus.queue_producer("orders/new");
      ASSERT_TRUE(producer.ok()) << producer.status().to_string();
      for (uint64_t i = 1; i <= 20; ++i) ASSERT_TRUE(producer->send(bytes_of(i)).ok());
      auto consumer = bus.queue_consumer("orders/new");
      for (int i = 0; i < 5; ++i) ASSERT_TRUE(consumer->receive(1s).value().ack().ok());  // 1..5 done
    }
    ASSERT_EQ(daemon.stop(SIGKILL), 128 + SIGKILL);
    ASSERT_TRUE(daemon.start());
    {
      Bus bus = daemon.connect();
      auto consumer = bus.queue_consumer("orders/new");
      ASSERT_TRUE(consumer.ok());
      auto d = consumer->receive(1s);
      ASSERT_TRUE(d.ok());
      EXPECT_EQ(value_of(d->bytes()), 6u) << "acked messages stay acked across the crash";
      auto held = consumer->receive(1s);  // 7 is in flight at the "reboot"
      ASSERT_TRUE(held.ok());
      ASSERT_TRUE(d->ack().ok());
      EXPECT_EQ(daemon.stop(SIGTERM), 0);
      (void)held;  // the daemon is gone; the next boot requeues it
    }
    // The "reboot": another boot id in the file, one message's payload damaged, the page cache dropped.
    const std::string file = data_dir + "/" + daemon.instance() + "/queue%3Aorders%2Fnew.queue";
    ASSERT_TRUE(std::filesystem::exists(file)) << file;
    {
      const auto layout = read_queue_layout(file);
      ASSERT_TRUE(layout) << file;
      std::fstream f(file, std::ios::in | std::ios::out | std::ios::binary);
      f.seekp(offsetof(shm::WorkQueueHeader, boot_id));
      f.write("another-boot", 13);
      // The entry holding 12 gets a flipped payload byte.
      for (uint64_t i = 0; i < layout->capacity; ++i) {
        const auto at = static_cast<std::streamoff>(layout->entry(i) + shm::kEntryHeaderBytes);
        uint64_t v = 0;
        f.seekg(at);
        f.read(reinterpret_cast<char*>(&v), sizeof v);
        if (v == 12) {
          v ^= 0x100;
          f.seekp(at);
          f.write(reinterpret_cast<const char*>(&v), sizeof v);
        }
      }
    }
    sync();
    if (std::ofstream drop("/proc/sys/vm/drop_caches"); drop) drop << "1\n";  // where allowed
    ASSERT_TRUE(daemon.start());
    Bus bus = daemon.connect();
    const toml::table s = daemon.queue_statistics("orders/new");
    EXPECT_EQ(s["recovered_corrupt"].value_or(0LL), 1) << "the damaged message is detected and reported";
    auto consumer = bus.queue_consumer("orders/new");
    std::vector<uint64_t> rest;
    while (auto d = consumer->receive(300ms)) {
      rest.push_back(value_of(d->bytes()));
      ASSERT_TRUE(d->ack().ok());
    }
    std::vector<uint64_t> expected{7, 8, 9, 10, 11, 13, 14, 15, 16, 17, 18, 19, 20};
    EXPECT_EQ(rest, expected) << "the in-flight message of the old boot is delivered again, the rest intact";
  }
}

// A durable queue file cut short (a torn write at power loss, a full disk): the daemon grows it back, keeps
// the intact prefix, reports the entries it lost, and `shmbus queue list / stats` show it.
TEST(QueueTest, TruncatedDurableFileKeepsItsIntactPrefixAndReportsTheRest) {
  const ScratchDir scratch("shmbus-trunc");
  const std::string& data_dir = scratch.path();
  {
    TestDaemon daemon("data_dir = \"" + data_dir + "\"\n");
    {
      Bus bus = daemon.connect();
      QueueProducerOptions po;
      po.queue.durable = true;
      po.queue.capacity = 32;
      po.queue.max_message_size = 64;
      auto producer = bus.queue_producer("orders/cut", po);
      ASSERT_TRUE(producer.ok()) << producer.status().to_string();
      for (uint64_t i = 1; i <= 20; ++i) ASSERT_TRUE(producer->send(bytes_of(i)).ok());
    }
    ASSERT_EQ(daemon.stop(SIGTERM), 0);
    const std::string file = data_dir + "/" + daemon.instance() + "/queue%3Aorders%2Fcut.queue";
    const auto layout = read_queue_layout(file);
    ASSERT_TRUE(layout) << file;
    // Cut in the middle of the 11th entry: entries 1..10 (slots 0..9) stay whole.
    std::filesystem::resize_file(file, layout->entry(10) + 8);
    ASSERT_TRUE(daemon.start());
    const toml::table s = daemon.queue_statistics("orders/cut");
    EXPECT_EQ(s["recovered"].value_or(0LL), 10);
    EXPECT_EQ(s["recovered_corrupt"].value_or(0LL), 10) << "the lost entries are reported, not silently gone";
    EXPECT_EQ(s["ready"].value_or(0LL), 10);
    auto list = run_process({SHMBUS_CLI_PATH, "queue", "list"});
    EXPECT_EQ(list.status, 0);
    EXPECT_NE(list.out.find("orders/cut"), std::string::npos) << list.out;
    auto stats = run_process({SHMBUS_CLI_PATH, "queue", "stats", "orders/cut", "--json"});
    EXPECT_EQ(stats.status, 0);
    EXPECT_NE(stats.out.find("\"recovered_corrupt\" : 10"), std::string::npos) << stats.out;
    Bus bus = daemon.connect();
    auto consumer = bus.queue_consumer("orders/cut");
    ASSERT_TRUE(consumer.ok());
    for (uint64_t i = 1; i <= 10; ++i) {
      auto d = consumer->receive(1s);
      ASSERT_TRUE(d.ok()) << i;
      EXPECT_EQ(value_of(d->bytes()), i);
      ASSERT_TRUE(d->ack().ok());
    }
    EXPECT_EQ(consumer->receive(100ms).status().code(), Errc::kTimeout);
  }
}

// A participant that scribbles on a queue's lock crashes nobody. (The lock used to be a robust pthread
// mutex, whose list links glibc writes through at unlock: one process could make the daemon, which locks
// every queue each tick, write wherever it liked.) While it scribbles, calls may fail or time out; the
// daemon and this process live on, and the queue serves again once it stops.
TEST(QueueTest, AProcessScribblingOnAQueueLockCrashesNobody) {
  TestDaemon daemon;
  Bus bus = daemon.connect();
  auto producer = bus.queue_producer("jobs/scribbled");
  auto consumer = bus.queue_consumer("jobs/scribbled");
  ASSERT_TRUE(producer.ok() && consumer.ok());
  const std::vector<std::string> segments = daemon.segments();
  ASSERT_EQ(segments.size(), 1u);
  uint64_t sent = 0;
  for (; sent < 10; ++sent) ASSERT_TRUE(producer->send(bytes_of(sent + 1)).ok());  // the queue works
  const pid_t scribbler = fork();
  if (scribbler == 0) {
    const int fd = shm_open(segments[0].c_str(), O_RDWR, 0);
    void* base = fd < 0 ? MAP_FAILED : mmap(nullptr, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (base == MAP_FAILED) _exit(2);
    // The lock word and the 36 bytes after it, where the mutex kept its owner and list links.
    auto* words = reinterpret_cast<volatile uint32_t*>(static_cast<std::byte*>(base) +
                                                       offsetof(shm::WorkQueueHeader, lock));
    uint32_t x = 0x9e3779b9;
    for (const auto end = std::chrono::steady_clock::now() + 2s; std::chrono::steady_clock::now() < end;) {
      for (int i = 0; i < 10; ++i) words[i] = x = x * 1664525 + 1013904223;
    }
    words[0] = 0;  // done: the lock is free again
    _exit(0);
  }
  for (const auto end = std::chrono::steady_clock::now() + 2s; std::chrono::steady_clock::now() < end;) {
    sent += producer->send(bytes_of(sent + 1)).ok();
    if (auto d = consumer->receive(1ms); d.ok()) (void)d->ack();
  }
  EXPECT_EQ(wait_exit(scribbler), 0);
  EXPECT_EQ(kill(daemon.pid(), 0), 0) << "the daemon died";
  // What is left (entries whose bookkeeping the scribbles garbled are dropped and counted), then one more.
  while (consumer->receive(200ms).ok()) {
  }
  const uint64_t marker = ~0ull - 1;
  ASSERT_TRUE(producer->send(bytes_of(marker)).ok());
  auto d = consumer->receive(5s);
  ASSERT_TRUE(d.ok()) << d.status().to_string();
  EXPECT_EQ(value_of(d->bytes()), marker);
  EXPECT_TRUE(d->ack().ok());
  EXPECT_TRUE(bus.queue_producer("jobs/after").ok()) << "the daemon still serves";
}

// A consumer killed while asleep in receive() leaves its sleeper count in the queue (every later send would
// pay a futex wake for nobody): the daemon zeroes the counts when it sees the participant go.
TEST(QueueTest, AConsumerKilledAsleepLeavesNoSleeperCountBehind) {
  TestDaemon daemon;
  Bus bus = daemon.connect();
  auto producer = bus.queue_producer("jobs/sleepy");
  ASSERT_TRUE(producer.ok());
  const std::vector<std::string> segments = daemon.segments();
  ASSERT_EQ(segments.size(), 1u);
  shm::Segment segment = shm::Segment::open(segments[0]);
  auto* header = reinterpret_cast<shm::WorkQueueHeader*>(segment.data());
  const pid_t sleeper = spawn([&] {
    Bus b = daemon.connect("sleeper");
    auto consumer = b.queue_consumer("jobs/sleepy");
    if (!consumer) return 2;
    (void)consumer->receive(60s);  // asleep until killed
    return 3;
  });
  bool counted = false;
  for (int i = 0; i < 500 && !(counted = header->ready_sleepers.load() == 1); ++i)
    std::this_thread::sleep_for(10ms);
  ASSERT_TRUE(counted) << "the consumer never slept";
  kill(sleeper, SIGKILL);
  EXPECT_EQ(wait_exit(sleeper), 128 + SIGKILL);
  bool cleared = false;
  for (int i = 0; i < 500 && !(cleared = header->ready_sleepers.load() == 0); ++i)
    std::this_thread::sleep_for(10ms);
  EXPECT_TRUE(cleared) << "ready_sleepers stayed " << header->ready_sleepers.load();
  const uint64_t v = 7;
  EXPECT_TRUE(producer->send(bytes_of(v)).ok());
}

// A loan sent after the daemon closed the queue (a clean stop) is refused with kClosed, not reported sent
// into a queue nobody will read again; and a consumer drains what was committed before the close.
TEST(QueueTest, ALoanSentAfterTheQueueClosedIsRefusedNotLost) {
  TestDaemon daemon;
  Bus bus = daemon.connect();
  auto producer = bus.queue_producer("jobs/closing");
  auto consumer = bus.queue_consumer("jobs/closing");
  ASSERT_TRUE(producer.ok() && consumer.ok());
  const uint64_t before = 1;
  ASSERT_TRUE(producer->send(bytes_of(before)).ok());
  auto loan = producer->loan();
  ASSERT_TRUE(loan.ok()) << loan.status().to_string();
  ASSERT_EQ(daemon.stop(SIGTERM), 0);
  const uint64_t after = 2;
  std::memcpy(loan->data(), &after, sizeof after);
  loan->set_size(sizeof after);
  EXPECT_EQ(producer->send(std::move(loan).value()).code(), Errc::kClosed);
  auto d = consumer->receive(1s);
  ASSERT_TRUE(d.ok()) << d.status().to_string();
  EXPECT_EQ(value_of(d->bytes()), before);
  EXPECT_EQ(consumer->receive(100ms).status().code(), Errc::kClosed);
}

// A producer and a consumer survive a daemon kill -9: the restarted daemon adopts their queue and learns
// who uses it when they next touch it (the consumer while it waits, the producer at its next send), so it
// neither retires the queue when it runs empty (that closed it under them) nor miscounts its consumers.
TEST(QueueTest, AProducerAndAConsumerKeepTheirQueueThroughADaemonCrash) {
  TestDaemon daemon;
  Bus bus = daemon.connect();
  auto producer = bus.queue_producer("jobs/survivor");
  auto consumer = bus.queue_consumer("jobs/survivor");
  ASSERT_TRUE(producer.ok() && consumer.ok());
  for (uint64_t v = 1; v <= 100; ++v) ASSERT_TRUE(producer->send(bytes_of(v)).ok());
  uint64_t sum = 0;
  for (uint64_t v = 1; v <= 100; ++v) {
    auto d = consumer->receive(5s);
    ASSERT_TRUE(d.ok()) << d.status().to_string();
    ASSERT_EQ(value_of(d->bytes()), v);
    sum += v;
    ASSERT_TRUE(d->ack().ok());
  }
  ASSERT_EQ(daemon.stop(SIGKILL), 128 + SIGKILL);
  ASSERT_TRUE(daemon.start());
  // Only the consumer waits: it re-claims both roles of this connection while nothing is sent.
  std::optional<Result<Delivery>> received;
  std::thread waiter([&] { received = consumer->receive(20s); });
  int64_t endpoints = 0, consumers = 0;
  for (int i = 0; i < 200 && endpoints != 2; ++i) {
    const toml::table q = daemon.queue_statistics("jobs/survivor");
    endpoints = q["endpoints"].value_or(int64_t{0});
    consumers = q["consumers"].value_or(int64_t{0});
    if (endpoints != 2) std::this_thread::sleep_for(20ms);
  }
  EXPECT_EQ(endpoints, 2) << "the restarted daemon does not know the queue's users";
  EXPECT_EQ(consumers, 1);
  std::this_thread::sleep_for(1500ms);  // > 10 daemon ticks, the queue empty: it used to be retired here
  const Status sent = producer->send(bytes_of(uint64_t{101}));
  waiter.join();
  ASSERT_TRUE(sent.ok()) << sent.to_string();
  ASSERT_TRUE(received && received->ok()) << (received ? received->status().to_string() : "no result");
  EXPECT_EQ(value_of((*received)->bytes()), 101u);
  ASSERT_TRUE((*received)->ack().ok());
  for (uint64_t v = 102; v <= 200; ++v) ASSERT_TRUE(producer->send(bytes_of(v)).ok());
  for (uint64_t v = 102; v <= 200; ++v) {
    auto d = consumer->receive(5s);
    ASSERT_TRUE(d.ok()) << d.status().to_string();
    ASSERT_EQ(value_of(d->bytes()), v);
    sum += v;
    ASSERT_TRUE(d->ack().ok());
  }
  EXPECT_EQ(sum + 101, 200u * 201 / 2);
}

// A queue whose header a participant rewrote to carry another id is not adopted under that id by the next
// daemon (clients and servers hold queues by id): it is closed and removed, so its users get kClosed instead
// of sending into a queue no daemon serves.
TEST(QueueTest, AQueueWhoseHeaderIdWasRewrittenIsNotAdopted) {
  TestDaemon daemon;
  Bus bus = daemon.connect();
  auto producer = bus.queue_producer("jobs/forged");
  ASSERT_TRUE(producer.ok()) << producer.status().to_string();
  const std::vector<std::string> segments = daemon.segments();
  ASSERT_EQ(segments.size(), 1u);
  ASSERT_EQ(daemon.stop(SIGKILL), 128 + SIGKILL);
  {
    const int fd = shm_open(segments[0].c_str(), O_RDWR, 0);
    ASSERT_GE(fd, 0);
    void* base = mmap(nullptr, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    close(fd);
    ASSERT_NE(base, MAP_FAILED);
    static_cast<shm::WorkQueueHeader*>(base)->queue_id = 77;
    munmap(base, 4096);
  }
  ASSERT_TRUE(daemon.start());
  EXPECT_TRUE(daemon.segments().empty()) << "the forged queue was adopted";
  EXPECT_FALSE(daemon.queue_statistics("jobs/forged").contains("name"));
  EXPECT_EQ(producer->send(bytes_of(uint64_t{1})).code(), Errc::kClosed);
}

// Whatever a local user leaves in /dev/shm under the daemon's names (here a huge queue id that would run
// the id counter round onto live queues) is removed at start, and queues get small ids that work.
TEST(QueueTest, AForeignSegmentWithAHugeIdDoesNotDisturbQueueIds) {
  TestDaemon daemon;
  ASSERT_EQ(daemon.stop(SIGKILL), 128 + SIGKILL);
  const std::string bogus = "/shmbus." + daemon.instance() + ".q4294967294";
  const int fd = shm_open(bogus.c_str(), O_RDWR | O_CREAT | O_EXCL, 0600);
  ASSERT_GE(fd, 0);
  EXPECT_EQ(ftruncate(fd, 8192), 0);
  close(fd);
  ASSERT_TRUE(daemon.start());
  EXPECT_NE(shm_unlink(bogus.c_str()), 0) << "the foreign segment was left";
  Bus bus = daemon.connect();
  std::vector<QueueProducer> producers;
  for (int i = 0; i < 3; ++i) {
    auto p = bus.queue_producer("jobs/ids" + std::to_string(i));
    ASSERT_TRUE(p.ok()) << p.status().to_string();
    producers.push_back(std::move(p).value());
  }
  auto consumer = bus.queue_consumer("jobs/ids0");
  ASSERT_TRUE(consumer.ok());
  ASSERT_TRUE(producers[0].send(bytes_of(uint64_t{8})).ok());
  auto d = consumer->receive(5s);
  ASSERT_TRUE(d.ok()) << d.status().to_string();
  EXPECT_EQ(value_of(d->bytes()), 8u);
  for (const std::string& segment : daemon.segments()) EXPECT_LT(segment.size(), bogus.size()) << segment;
}

TEST(RpcTest, ManyClientsSeveralServersResponsesMatchTheirCalls) {
  TestDaemon daemon;
  Bus bus = daemon.connect();
  std::vector<pid_t> servers;
  for (uint64_t id = 1; id <= 2; ++id) {
    servers.push_back(spawn([&, id] {
      Bus b = daemon.connect("server");
      auto server = b.server("math/double");
      if (!server) return 2;
      uint64_t handled = 0;
      for (;;) {
        auto r = server->receive(10s);
        if (!r) return r.status().code() == Errc::kTimeout ? 5 : 3;
        const uint64_t v = value_of(r->bytes());
        if (v == ~0ull) {
          (void)r->respond(bytes_of(v));
          return handled > 0 ? 0 : 6;  // 6: this server got no share of the load
        }
        ++handled;
        const uint64_t answer[2] = {v * 2, id};
        if (!r->respond(std::as_bytes(std::span(answer))).ok()) return 4;
      }
    }));
  }
  std::vector<pid_t> clients;
  for (uint64_t c = 0; c < 3; ++c) {
    clients.push_back(spawn([&, c] {
      Bus b = daemon.connect("client");
      auto client = b.client("math/double");
      if (!client) return 2;
      std::set<uint64_t> servers_seen;
      for (uint64_t i = 0; i < 500; ++i) {
        const uint64_t v = c * 1'000'000 + i;
        auto response = client->call(bytes_of(v), 5s);
        if (!response) return 3;
        uint64_t answer[2];
        std::memcpy(answer, response->bytes().data(), sizeof answer);
        if (answer[0] != v * 2) return 4;
        servers_seen.insert(answer[1]);
      }
      return static_cast<int>(10 + servers_seen.size());
    }));
  }
  for (pid_t c : clients) EXPECT_GE(wait_exit(c), 11) << "a client failed";
  auto stopper = bus.client("math/double");
  for (int i = 0; i < 2; ++i) (void)stopper->call(bytes_of(~0ull), 5s);
  for (pid_t s : servers) EXPECT_EQ(wait_exit(s), 0);
  EXPECT_EQ(daemon.queue_statistics("math/double")["acked"].value_or(0LL), 1502);
}

// After a daemon kill -9, a server and a client that survived it go on: the restarted daemon adopts the
// service's request queue and the client's response queue, and both re-claim their roles at their next
// operation, so the server answers the old client and a new one. No response completes another client's
// call (response queue ids used to be handed to new clients while old servers still cached them).
TEST(RpcTest, AfterADaemonCrashOldAndNewClientsAreAnsweredEachTheirOwn) {
  TestDaemon daemon;
  const pid_t server = spawn([&] {
    Bus b = daemon.connect("server");
    auto s = b.server("math/echo");
    if (!s) return 2;
    for (;;) {
      auto r = s->receive(20s);
      if (!r) return 0;  // the test is over (or its daemon gone)
      if (value_of(r->bytes()) == ~0ull) return 0;
      if (!r->respond(r->bytes()).ok()) return 3;
    }
  });
  Bus bus_a = daemon.connect("a");
  auto a = bus_a.client("math/echo");
  ASSERT_TRUE(a.ok()) << a.status().to_string();
  auto first = a->call(bytes_of(uint64_t{101}), 5s);  // the server now caches A's response queue
  ASSERT_TRUE(first.ok()) << first.status().to_string();
  ASSERT_EQ(daemon.stop(SIGKILL), 128 + SIGKILL);
  ASSERT_TRUE(daemon.start());
  Bus bus_b = daemon.connect("b");
  auto b = bus_b.client("math/echo");
  ASSERT_TRUE(b.ok()) << b.status().to_string();
  auto b1 = b->call(bytes_of(uint64_t{201}), 5s);
  auto b2 = b->call_async(bytes_of(uint64_t{202}), 5s);
  auto a2 = a->call_async(bytes_of(uint64_t{102}), 5s);
  ASSERT_TRUE(b1.ok()) << "a new client is not answered: " << b1.status().to_string();
  EXPECT_EQ(value_of(b1->bytes()), 201u) << "B got another client's response";
  ASSERT_TRUE(a2.ok()) << a2.status().to_string();
  auto ra = a->wait(*a2);
  ASSERT_TRUE(ra.ok()) << "the old client is not answered: " << ra.status().to_string();
  EXPECT_EQ(value_of(ra->bytes()), 102u) << "A got another client's response";
  ASSERT_TRUE(b2.ok()) << b2.status().to_string();
  auto rb = b->wait(*b2);
  ASSERT_TRUE(rb.ok()) << rb.status().to_string();
  EXPECT_EQ(value_of(rb->bytes()), 202u) << "B got another client's response";
  EXPECT_EQ(a->late_responses() + b->late_responses(), 0u);
  (void)b->call_async(bytes_of(~0ull), 1s);  // stops the server
  EXPECT_EQ(wait_exit(server), 0) << "the server could not answer (3) or did not start (2)";
}

// A client made before a daemon crash, with no server yet: a server started after the restart must be able
// to answer it, which takes the client's roles known to the new daemon (re-claimed at its next call).
TEST(RpcTest, AServerStartedAfterADaemonCrashAnswersAClientFromBefore) {
  TestDaemon daemon;
  Bus bus = daemon.connect("client");
  auto client = bus.client("math/late");
  ASSERT_TRUE(client.ok()) << client.status().to_string();
  ASSERT_EQ(daemon.stop(SIGKILL), 128 + SIGKILL);
  ASSERT_TRUE(daemon.start());
  const pid_t server = spawn_echo_once(daemon, "math/late");
  auto response = client->call(bytes_of(uint64_t{7}), 10s);
  ASSERT_TRUE(response.ok()) << response.status().to_string();
  EXPECT_EQ(value_of(response->bytes()), 7u);
  EXPECT_EQ(wait_exit(server), 0) << "the server could not answer (3), got nothing (4) or did not start (2)";
}

// Re-claiming sets a participant's count of a role, it does not add to it: a re-claim sent again (its answer
// came after the client's timeout) must not count the same handles twice. Two consumers of one Bus re-claim
// as one request with count 2; a raw participant then sends the same re-claim twice.
TEST(QueueTest, AReclaimSentTwiceCountsItsHandlesOnce) {
  TestDaemon daemon;
  Bus bus = daemon.connect();
  auto producer = bus.queue_producer("jobs/twice");
  auto first = bus.queue_consumer("jobs/twice");
  auto second = bus.queue_consumer("jobs/twice");
  ASSERT_TRUE(producer.ok() && first.ok() && second.ok());
  const int64_t id = daemon.queue_statistics("jobs/twice")["id"].value_or(int64_t{0});
  ASSERT_GT(id, 0);
  ASSERT_EQ(daemon.stop(SIGKILL), 128 + SIGKILL);
  ASSERT_TRUE(daemon.start());
  ASSERT_TRUE(producer->send(bytes_of(uint64_t{1})).ok());  // re-claims the producer and both consumers
  EXPECT_EQ(daemon.queue_statistics("jobs/twice")["endpoints"].value_or(int64_t{0}), 3);
  EXPECT_EQ(daemon.queue_statistics("jobs/twice")["consumers"].value_or(int64_t{0}), 2);

  const int fd = connect_raw_control(daemon.socket_path());
  ASSERT_GE(fd, 0);
  const timeval five_seconds{.tv_sec = 5, .tv_usec = 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &five_seconds, sizeof five_seconds);
  auto exchange = [&](auto request) {
    detail::Reply reply{};
    if (send(fd, &request, sizeof request, MSG_NOSIGNAL) != static_cast<ssize_t>(sizeof request)) return -1;
    return recv(fd, &reply, sizeof reply, 0) == static_cast<ssize_t>(sizeof reply) ? reply.code : -1;
  };
  detail::HelloRequest hello{};
  hello.header = detail::make_header(detail::RecordType::kHello, sizeof hello, 1);
  ASSERT_EQ(exchange(hello), 0);
  detail::ReclaimQueueRequest reclaim{};
  reclaim.header = detail::make_header(detail::RecordType::kReclaimQueue, sizeof reclaim, 2);
  detail::copy_string("jobs/twice", reclaim.name, sizeof reclaim.name);
  reclaim.queue_id = static_cast<uint32_t>(id);
  reclaim.role = detail::kQueueConsumer;
  reclaim.count = 1;
  EXPECT_EQ(exchange(reclaim), 0);
  reclaim.header.request_id = 3;
  EXPECT_EQ(exchange(reclaim), 0);  // sent again
  EXPECT_EQ(daemon.queue_statistics("jobs/twice")["endpoints"].value_or(int64_t{0}), 4);
  EXPECT_EQ(daemon.queue_statistics("jobs/twice")["consumers"].value_or(int64_t{0}), 3);
  reclaim.header.request_id = 4;
  reclaim.count = 0;
  EXPECT_EQ(exchange(reclaim), static_cast<int>(Errc::kInvalidArgument));
  close(fd);
  auto d = first->receive(5s);
  ASSERT_TRUE(d.ok()) << d.status().to_string();
  EXPECT_EQ(value_of(d->bytes()), 1u);
}

// A call made before a daemon crash, still queued, is answered by a server started after the restart: the
// server's open of the client's (adopted, not yet re-claimed) response queue waits for the waiting client to
// re-claim it, instead of being refused and the response dropped.
TEST(RpcTest, ACallQueuedBeforeADaemonCrashIsAnsweredByAServerStartedAfter) {
  TestDaemon daemon;
  Bus bus = daemon.connect("client");
  auto client = bus.client("math/queued");
  ASSERT_TRUE(client.ok()) << client.status().to_string();
  auto call = client->call_async(bytes_of(uint64_t{41}), 20s);
  ASSERT_TRUE(call.ok()) << call.status().to_string();
  ASSERT_EQ(daemon.stop(SIGKILL), 128 + SIGKILL);
  ASSERT_TRUE(daemon.start());
  const pid_t server = spawn_echo_once(daemon, "math/queued");
  // The client waits only once the server holds the request: its open of the response queue comes first.
  int64_t in_flight = 0;
  for (int i = 0; i < 500 && in_flight != 1; ++i) {
    in_flight = daemon.queue_statistics("math/queued")["in_flight"].value_or(int64_t{0});
    if (in_flight != 1) std::this_thread::sleep_for(10ms);
  }
  EXPECT_EQ(in_flight, 1);
  auto response = client->wait(*call);
  ASSERT_TRUE(response.ok()) << response.status().to_string();
  EXPECT_EQ(value_of(response->bytes()), 41u);
  EXPECT_EQ(wait_exit(server), 0) << "the server could not answer (3), got nothing (4) or did not start (2)";
}

// A durable queue recovered after a daemon crash keeps its id, so that its users re-claim their roles on it
// (it used to get a new id whenever a shared-memory queue with a higher one was adopted first).
TEST(QueueTest, ADurableQueueKeepsItsIdThroughADaemonCrash) {
  const ScratchDir scratch("shmbus-durable-id");
  TestDaemon daemon("data_dir = \"" + scratch.path() + "\"\n");
  Bus bus = daemon.connect();
  QueueProducerOptions po;
  po.queue.durable = true;
  auto producer = bus.queue_producer("jobs/durable-id", po);
  auto consumer = bus.queue_consumer("jobs/durable-id");
  ASSERT_TRUE(producer.ok() && consumer.ok()) << producer.status().to_string();
  auto client = bus.client("svc/after");  // shared-memory queues with higher ids, adopted first
  ASSERT_TRUE(client.ok()) << client.status().to_string();
  ASSERT_EQ(daemon.stop(SIGKILL), 128 + SIGKILL);
  ASSERT_TRUE(daemon.start());
  ASSERT_TRUE(producer->send(bytes_of(uint64_t{5})).ok());  // re-claims this connection's roles
  int64_t endpoints = 0;
  for (int i = 0; i < 100 && endpoints != 2; ++i) {
    endpoints = daemon.queue_statistics("jobs/durable-id")["endpoints"].value_or(int64_t{0});
    if (endpoints != 2) std::this_thread::sleep_for(20ms);
  }
  EXPECT_EQ(endpoints, 2) << "the producer's and consumer's roles did not land on the recovered queue";
  auto d = consumer->receive(5s);
  ASSERT_TRUE(d.ok()) << d.status().to_string();
  EXPECT_EQ(value_of(d->bytes()), 5u);
  ASSERT_TRUE(d->ack().ok());
}

// A response queue whose client died while no daemon ran is removed by the restarted one (it is kept only
// while its process lives, for that process to re-claim it).
TEST(RpcTest, TheResponseQueueOfAClientThatDiedWithoutADaemonIsRemoved) {
  TestDaemon daemon;
  int ready[2];
  ASSERT_EQ(pipe(ready), 0);
  const pid_t client = spawn([&] {
    close(ready[0]);
    Bus b = daemon.connect("client");
    auto c = b.client("math/gone");
    char one = 1;
    if (!c || write(ready[1], &one, 1) != 1) return 2;
    pause();
    return 0;
  });
  close(ready[1]);  // a child that fails before writing makes the read below return 0, not block
  struct Reaper {
    pid_t pid;
    ~Reaper() {
      if (pid > 0) kill(pid, SIGKILL), wait_exit(pid);
    }
  } reaper{client};
  char byte = 0;
  const ssize_t got = read(ready[0], &byte, 1);
  close(ready[0]);
  ASSERT_EQ(got, 1) << "the client did not start";
  const std::string reply_name = "reply/" + std::to_string(client);
  ASSERT_TRUE(daemon.queue_statistics(reply_name).contains("name"));
  ASSERT_EQ(daemon.stop(SIGKILL), 128 + SIGKILL);
  kill(client, SIGKILL);
  EXPECT_EQ(wait_exit(client), 128 + SIGKILL);
  reaper.pid = 0;
  ASSERT_TRUE(daemon.start());
  bool gone = false;
  for (int i = 0; i < 100 && !gone; ++i) {
    gone = !daemon.queue_statistics(reply_name).contains("name");
    if (!gone) std::this_thread::sleep_for(50ms);
  }
  EXPECT_TRUE(gone) << reply_name << " outlived its client";
}

TEST(RpcTest, ServerDeathFailsTheCallLongBeforeItsDeadline) {
  TestDaemon daemon;
  Bus bus = daemon.connect();
  const pid_t server = spawn([&] {
    Bus b = daemon.connect("doomed");
    auto s = b.server("svc/doomed");
    auto r = s->receive(10s);
    raise(SIGKILL);  // dies holding the request
    return 0;
  });
  auto client = bus.client("svc/doomed");
  ASSERT_TRUE(client.ok());
  const auto start = std::chrono::steady_clock::now();
  auto response = client->call(bytes_of(uint64_t{1}), 20s);
  const auto took = std::chrono::steady_clock::now() - start;
  EXPECT_EQ(wait_exit(server), 128 + SIGKILL);
  ASSERT_FALSE(response.ok());
  EXPECT_EQ(response.status().code(), Errc::kServerDied) << response.status().to_string();
  EXPECT_LT(took, 10s);
}

TEST(RpcTest, DeadlinesErrorsAndZeroCopyBothWays) {
  TestDaemon daemon;
  Bus bus = daemon.connect();
  ClientOptions co;
  co.queue.capacity = 4;
  co.queue.max_message_size = 1 << 20;
  co.response_capacity = 4;
  co.max_response_size = 1 << 20;
  auto client = bus.client("svc/big", co);
  ASSERT_TRUE(client.ok()) << client.status().to_string();
  EXPECT_EQ(client->call(bytes_of(uint64_t{1}), 100ms).status().code(), Errc::kTimeout) << "no server yet";
  uint64_t expired = 0;
  std::thread server_thread([&] {
    Bus b = daemon.connect("server");
    auto server = b.server("svc/big");
    for (int i = 0; i < 2; ++i) {  // the request that timed out first is skipped: its caller gave up
      auto r = server->receive(5s);
      if (!r) return;
      if (r->bytes().size() < 16) {
        (void)r->fail(Errc::kInvalidArgument, "too short");
        continue;
      }
      auto loan = r->loan_response();  // written in place in the client's response queue
      if (!loan) return;
      for (std::size_t k = 0; k < r->bytes().size(); ++k) loan->data()[k] = ~r->bytes()[k];
      loan->set_size(r->bytes().size());
      (void)r->respond(std::move(loan).value());
    }
    expired = server->expired();
  });
  auto request = client->loan();
  ASSERT_TRUE(request.ok());
  for (std::size_t k = 0; k < (1u << 20); ++k) request->data()[k] = std::byte(k * 7);
  request->set_size(1 << 20);
  auto response = client->call(std::move(request).value(), 5s);
  ASSERT_TRUE(response.ok()) << response.status().to_string();
  ASSERT_EQ(response->bytes().size(), 1u << 20);
  for (std::size_t k = 0; k < (1u << 20); k += 4099) ASSERT_EQ(response->bytes()[k], ~std::byte(k * 7));
  const Status refused = client->call(bytes_of(uint64_t{1}), 5s).status();
  EXPECT_EQ(refused.code(), Errc::kInvalidArgument);
  EXPECT_NE(refused.message().find("too short"), std::string::npos);
  server_thread.join();
  EXPECT_EQ(expired, 1u) << "the request whose caller timed out is dropped, not served";
}

// The wait for room in a full request queue counts against the call's deadline: a call with a short timeout
// returns at about that timeout, not after the client's (longer) full_timeout as well.
TEST(RpcTest, AFullRequestQueueCountsAgainstTheCallsDeadline) {
  TestDaemon daemon;
  Bus bus = daemon.connect();
  ClientOptions co;
  co.queue.capacity = 2;
  co.full_timeout = std::chrono::milliseconds(10'000);
  auto client = bus.client("math/slow", co);
  ASSERT_TRUE(client.ok()) << client.status().to_string();
  const uint64_t v = 1;
  for (int i = 0; i < 2; ++i) ASSERT_TRUE(client->call_async(bytes_of(v), 60s).ok());  // no server: full now
  const auto start = std::chrono::steady_clock::now();
  auto r = client->call(bytes_of(v), 200ms);
  const auto took = std::chrono::steady_clock::now() - start;
  EXPECT_EQ(r.status().code(), Errc::kTimeout) << r.status().to_string();
  EXPECT_LT(took, 5s) << "waited for room past the call's deadline";
}

// A server keeps the response queues of the clients it answered open (a cache of 256). When the cache is
// trimmed, a response loan still held for one of them must stay writable: that queue is kept. (The trim
// unmapped it before, and the loan wrote into unmapped memory.)
TEST(RpcTest, AResponseLoanOutlivesTheTrimOfTheServersResponseQueueCache) {
  TestDaemon daemon("max_queues = 400\n");
  Bus bus = daemon.connect();
  auto server = bus.server("svc/cache", {.queue = {.capacity = 512, .max_message_size = 64}});
  ASSERT_TRUE(server.ok()) << server.status().to_string();
  const ClientOptions co{
      .queue = {.capacity = 512, .max_message_size = 64}, .response_capacity = 2, .max_response_size = 64};
  auto first = bus.client("svc/cache", co);
  ASSERT_TRUE(first.ok()) << first.status().to_string();
  auto first_call = first->call_async(bytes_of(uint64_t{1000}), 30s);
  ASSERT_TRUE(first_call.ok()) << first_call.status().to_string();
  auto held_request = server->receive(5s);
  ASSERT_TRUE(held_request.ok());
  auto held_loan = held_request->loan_response();
  ASSERT_TRUE(held_loan.ok()) << held_loan.status().to_string();
  // 260 more clients, each answered: the cache passes 256 and is trimmed. Spread over participants: one may
  // own at most half of max_queues response queues.
  std::vector<Bus> buses;
  for (int b = 0; b < 4; ++b) buses.push_back(daemon.connect("clients" + std::to_string(b)));
  std::vector<Client> others;
  for (uint64_t i = 0; i < 260; ++i) {
    auto c = buses[i % buses.size()].client("svc/cache", co);
    ASSERT_TRUE(c.ok()) << i << ": " << c.status().to_string();
    auto pending = c->call_async(bytes_of(i), 30s);
    ASSERT_TRUE(pending.ok()) << pending.status().to_string();
    auto r = server->receive(5s);
    ASSERT_TRUE(r.ok()) << r.status().to_string();
    ASSERT_TRUE(r->respond(r->bytes()).ok());
    auto response = c->wait(*pending);
    ASSERT_TRUE(response.ok()) << response.status().to_string();
    others.push_back(std::move(c).value());
  }
  std::memcpy(held_loan->data(), "held", 4);
  held_loan->set_size(4);
  ASSERT_TRUE(held_request->respond(std::move(held_loan).value()).ok());
  auto response = first->wait(*first_call);
  ASSERT_TRUE(response.ok()) << response.status().to_string();
  EXPECT_EQ(std::string(reinterpret_cast<const char*>(response->bytes().data()), response->bytes().size()),
            "held");
}

// Any local user may connect: a client's response queue is bounded (256 MiB), and one participant owns at
// most half of max_queues of them, so that it cannot take /dev/shm or every queue from the others.
TEST(RpcTest, ResponseQueuesAreBoundedInSizeAndPerParticipant) {
  TestDaemon daemon("max_queues = 8\n");
  Bus bus = daemon.connect();
  ClientOptions huge;
  huge.response_capacity = 65536;
  huge.max_response_size = 64u << 20;
  const Status too_big = bus.client("svc/bounded", huge).status();
  EXPECT_EQ(too_big.code(), Errc::kInvalidArgument) << too_big.to_string();
  EXPECT_NE(too_big.message().find("256 MiB"), std::string::npos) << too_big.message();
  std::vector<Client> clients;
  Status last;
  for (int i = 0; i < 8; ++i) {
    auto c = bus.client("svc/bounded");
    if (!c.ok()) {
      last = c.status();
      break;
    }
    clients.push_back(std::move(c).value());
  }
  EXPECT_EQ(clients.size(), 4u) << "half of max_queues (8)";
  EXPECT_EQ(last.code(), Errc::kExhausted) << last.to_string();
  Bus other = daemon.connect("other");
  EXPECT_TRUE(other.client("svc/bounded").ok()) << "another participant still gets one";
}

TEST(RpcTest, CliCallPrintsTheResponse) {
  TestDaemon daemon;
  std::thread server_thread([&] {
    Bus b = daemon.connect("echo");
    auto server = b.server("svc/echo");
    auto r = server->receive(10s);
    if (!r) return;
    std::string text =
        "echo: " + std::string(reinterpret_cast<const char*>(r->bytes().data()), r->bytes().size());
    (void)r->respond(std::as_bytes(std::span(text.data(), text.size())));
  });
  std::this_thread::sleep_for(100ms);  // the server opens the service first (not required: requests wait)
  auto out = run_process({SHMBUS_CLI_PATH, "call", "svc/echo", "hello"});
  server_thread.join();
  EXPECT_EQ(out.status, 0);
  EXPECT_EQ(out.out, "echo: hello\n");
  auto none = run_process({SHMBUS_CLI_PATH, "call", "svc/nobody", "x", "--timeout", "0.2"});
  EXPECT_EQ(none.status, 1);
}

}  // namespace
}  // namespace shmbus::test

// The async API through a real daemon: EventSource's pollable fd (poll, epoll), EventLoop callbacks and
// coroutines, across processes. Timings are generous liveness bounds, never performance claims.
#include <gtest/gtest.h>
#include <poll.h>
#include <sys/epoll.h>
#include <unistd.h>

#include <csignal>
#include <cstring>
#include <map>
#include <optional>
#include <thread>
#include <vector>

#include "shmbus/bus.h"
#include "shmbus/event_loop.h"
#include "shmbus/event_source.h"
#include "shmbus/task.h"
#include "support/peer_output.h"
#include "support/test_daemon.h"

namespace shmbus::test {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

// test_peer's checksum of one payload (FNV-1a); a publisher prints the sum over its messages.
uint64_t checksum(const Sample& s) {
  uint64_t h = 1469598103934665603ULL;
  for (std::byte b : s.bytes()) h = (h ^ static_cast<uint8_t>(b)) * 1099511628211ULL;
  return h;
}
// test_peer puts the message's index (0, 1, 2...) in the first 8 bytes; our own publishers do too.
uint64_t index_of(const Sample& s) {
  uint64_t index = UINT64_MAX;
  if (s.size() >= sizeof index) std::memcpy(&index, s.data(), sizeof index);
  return index;
}
Status publish_index(Publisher& p, uint64_t index) {
  return p.publish(std::as_bytes(std::span(&index, 1)));
}

bool readable(int fd, std::chrono::milliseconds timeout) {
  pollfd p{fd, POLLIN, 0};
  return poll(&p, 1, static_cast<int>(timeout.count())) == 1;
}

// What one consumer saw of one test_peer publisher: count, order and the checksum sum.
struct Received {
  uint64_t count = 0;
  uint64_t order_errors = 0;
  uint64_t sum = 0;
  void add(const Sample& s) {
    if (index_of(s) != count) ++order_errors;
    sum += checksum(s);
    ++count;
  }
};

std::vector<std::string> publish_command(const std::string& topic, int count, int size, int seed) {
  return {TEST_PEER_PATH,       "publish",  topic, std::to_string(count),
          std::to_string(size), "lossless", "1",   std::to_string(seed)};
}

TEST(AsyncTest, PollWakesWhenAnotherProcessPublishes) {
  TestDaemon daemon;
  Bus bus = daemon.connect();
  auto sub = bus.subscriber("async/poll").value();
  auto source = EventSource::create().value();
  ASSERT_TRUE(source.add(sub).ok());
  EXPECT_FALSE(readable(source.fd(), 50ms)) << "nothing published yet";

  constexpr int kCount = 500;
  ChildProcess publisher(publish_command("async/poll", kCount, 200, 7));
  Received got;
  int wakeups = 0;
  const auto deadline = Clock::now() + 60s;
  while (got.count < kCount && Clock::now() < deadline) {
    ASSERT_TRUE(readable(source.fd(), 10s)) << "no wake-up after " << got.count << " messages";
    ++wakeups;
    while (Sample m = sub.try_take()) got.add(m);
    source.rearm();
  }
  const std::string published = publisher.read_line(60);
  EXPECT_EQ(publisher.wait(), 0);
  EXPECT_EQ(got.count, static_cast<uint64_t>(kCount));
  EXPECT_EQ(got.order_errors, 0u);
  EXPECT_EQ(got.sum, field(published, "checksum"));
  EXPECT_LE(wakeups, kCount + 2) << "a readiness without messages now and then at most";
  // The publisher's leaving changes the topic's publishers epoch, which makes the fd readable once (the
  // subscriber re-reads its publishers); after that, quiet.
  if (readable(source.fd(), 1s)) {
    EXPECT_FALSE(sub.try_take());
    source.rearm();
  }
  EXPECT_FALSE(readable(source.fd(), 100ms)) << "drained and re-armed: quiet";
}

TEST(AsyncTest, OneThreadServesThreeTopicsFromThreeProcessesViaEpoll) {
  TestDaemon daemon;
  Bus bus = daemon.connect();
  const std::vector<std::string> topics = {"async/a", "async/b", "async/c"};
  std::vector<Subscriber> subs;
  for (const auto& t : topics) subs.push_back(std::move(bus.subscriber(t).value()));
  auto source = EventSource::create().value();
  for (auto& s : subs) ASSERT_TRUE(source.add(s).ok());
  const int epoll_fd = epoll_create1(EPOLL_CLOEXEC);
  ASSERT_GE(epoll_fd, 0);
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.fd = source.fd();
  ASSERT_EQ(epoll_ctl(epoll_fd, EPOLL_CTL_ADD, source.fd(), &ev), 0);

  constexpr int kCount = 3000;
  std::vector<std::unique_ptr<ChildProcess>> publishers;
  for (std::size_t i = 0; i < topics.size(); ++i) {
    publishers.push_back(std::make_unique<ChildProcess>(
        publish_command(topics[i], kCount, 100 + 300 * static_cast<int>(i), 11 + static_cast<int>(i))));
  }
  std::vector<Received> got(topics.size());
  auto all_done = [&] {
    return std::all_of(got.begin(), got.end(), [](auto& r) { return r.count >= kCount; });
  };
  const auto deadline = Clock::now() + 120s;
  while (!all_done() && Clock::now() < deadline) {
    epoll_event out{};
    ASSERT_EQ(epoll_wait(epoll_fd, &out, 1, 10'000), 1) << "no wake-up within 10 s";
    for (std::size_t i = 0; i < subs.size(); ++i) {
      for (int batch = 0; batch < 100; ++batch) {  // a bounded batch: rearm keeps the fd readable if more
        Sample m = subs[i].try_take();
        if (!m) break;
        got[i].add(m);
      }
    }
    source.rearm();
  }
  close(epoll_fd);
  for (std::size_t i = 0; i < topics.size(); ++i) {
    const std::string published = publishers[i]->read_line(60);
    EXPECT_EQ(publishers[i]->wait(), 0);
    EXPECT_EQ(got[i].count, static_cast<uint64_t>(kCount)) << topics[i];
    EXPECT_EQ(got[i].order_errors, 0u) << topics[i];
    EXPECT_EQ(got[i].sum, field(published, "checksum")) << topics[i];
  }
}

TEST(AsyncTest, NoReadinessWithoutMessages) {
  TestDaemon daemon;
  Bus bus = daemon.connect();
  auto a = bus.subscriber("quiet/a").value();
  auto b = bus.subscriber("quiet/b").value();
  auto pub = bus.publisher("quiet/a").value();
  auto source = EventSource::create().value();
  ASSERT_TRUE(source.add(a).ok());
  ASSERT_TRUE(source.add(b).ok());
  EXPECT_FALSE(source.rearm());
  EXPECT_FALSE(readable(source.fd(), 200ms));
  ASSERT_TRUE(publish_index(pub, 0).ok());
  EXPECT_TRUE(readable(source.fd(), 5s));
  EXPECT_TRUE(a.try_take());
  EXPECT_FALSE(source.rearm());
  EXPECT_FALSE(readable(source.fd(), 200ms)) << "no readiness storm after a drain";

  auto loop = EventLoop::create().value();
  int calls = 0;
  ASSERT_TRUE(loop.add(a, [&](Sample) { ++calls; }).ok());
  EXPECT_EQ(loop.run_once(200ms), 0u);
  EXPECT_EQ(calls, 0);
}

TEST(AsyncTest, PartialDrainStaysReadable) {
  TestDaemon daemon;
  Bus bus = daemon.connect();
  auto sub = bus.subscriber("partial").value();
  auto pub = bus.publisher("partial").value();
  auto source = EventSource::create().value();
  ASSERT_TRUE(source.add(sub).ok());
  for (uint64_t i = 0; i < 3; ++i) ASSERT_TRUE(publish_index(pub, i).ok());
  ASSERT_TRUE(readable(source.fd(), 5s));
  EXPECT_TRUE(sub.try_take());
  EXPECT_TRUE(source.rearm()) << "two messages still wait";
  EXPECT_TRUE(readable(source.fd(), 0ms)) << "level-triggered";
  EXPECT_TRUE(sub.try_take());
  EXPECT_TRUE(sub.try_take());
  EXPECT_FALSE(source.rearm());
  EXPECT_FALSE(readable(source.fd(), 50ms));
}

// A watched subscriber moved to a new owner stays watched (the source follows its core), and one destroyed
// without remove() is forgotten: the source neither reads it after free (ASan) nor counts it.
TEST(AsyncTest, AWatchedSubscriberCanBeMovedOrDestroyedWithoutRemove) {
  TestDaemon daemon;
  Bus bus = daemon.connect();
  auto pub = bus.publisher("moved/topic").value();
  auto source = EventSource::create().value();
  std::optional<Subscriber> doomed = bus.subscriber("moved/topic").value();
  ASSERT_TRUE(source.add(*doomed).ok());
  Subscriber original = bus.subscriber("moved/topic").value();
  ASSERT_TRUE(source.add(original).ok());
  ASSERT_EQ(source.size(), 2u);
  std::vector<Subscriber> owners;
  owners.push_back(std::move(original));  // moved: the source must follow it, not the moved-from object
  doomed.reset();                         // destroyed while watched, the thread asleep on its topic
  EXPECT_EQ(source.size(), 1u);
  EXPECT_FALSE(source.rearm());
  source.remove(original);  // moved from: nothing to remove, and the moved-to one stays watched
  EXPECT_EQ(source.size(), 1u);
  ASSERT_TRUE(publish_index(pub, 7).ok());
  ASSERT_TRUE(readable(source.fd(), 5s)) << "the moved subscriber is no longer watched";
  Sample m = owners[0].try_take();
  ASSERT_TRUE(m);
  EXPECT_EQ(index_of(m), 7u);
  m = Sample();
  EXPECT_FALSE(source.rearm());
  source.remove(owners[0]);
  EXPECT_EQ(source.size(), 0u);
}

TEST(AsyncTest, DestructorReturnsPromptlyWhileTheThreadSleeps) {
  TestDaemon daemon;
  Bus bus = daemon.connect();
  auto sub = bus.subscriber("liveness").value();
  {
    auto source = EventSource::create().value();
    ASSERT_TRUE(source.add(sub).ok());
    EXPECT_FALSE(source.rearm());        // the thread sleeps on the topic now
    std::this_thread::sleep_for(100ms);  // and has certainly gone to sleep
    const auto start = Clock::now();
    { EventSource gone = std::move(source); }
    EXPECT_LT(Clock::now() - start, 2s);
  }
  {
    auto idle = EventSource::create().value();  // a thread that never got work
    const auto start = Clock::now();
    { EventSource gone = std::move(idle); }
    EXPECT_LT(Clock::now() - start, 2s);
  }
  // A loop with a coroutine suspended on a subscriber: the frame is destroyed (its locals too).
  bool frame_destroyed = false;
  struct Flag {
    bool* set;
    ~Flag() { *set = true; }
  };
  auto waiter = [](EventLoop& loop, Subscriber& s, bool* destroyed) -> Task {
    Flag flag{destroyed};
    Sample m = co_await loop.next(s);
  };
  {
    auto loop = EventLoop::create().value();
    loop.spawn(waiter(loop, sub, &frame_destroyed));
    EXPECT_EQ(loop.run_once(50ms), 0u);
    EXPECT_EQ(loop.tasks(), 1u);
    const auto start = Clock::now();
    { EventLoop gone = std::move(loop); }
    EXPECT_LT(Clock::now() - start, 2s);
  }
  EXPECT_TRUE(frame_destroyed);
}

TEST(AsyncTest, CallbacksDeliverAllMessagesInOrderFromTwoTopics) {
  TestDaemon daemon;
  Bus bus = daemon.connect();
  PublisherOptions lossless;
  lossless.topic.policy = Policy::kLossless;
  lossless.full_timeout = 30s;
  SubscriberOptions matching;
  matching.topic.policy = Policy::kLossless;
  auto sub_x = bus.subscriber("cb/x", matching).value();
  auto sub_y = bus.subscriber("cb/y", matching).value();
  auto pub_x = bus.publisher("cb/x", lossless).value();
  auto pub_y = bus.publisher("cb/y", lossless).value();

  constexpr uint64_t kCount = 20000;
  auto loop = EventLoop::create().value();
  std::vector<uint64_t> x, y;
  auto check_done = [&] {
    if (x.size() == kCount && y.size() == kCount) loop.stop();
  };
  ASSERT_TRUE(loop.add(sub_x, [&](Sample m) { x.push_back(index_of(m)), check_done(); }).ok());
  ASSERT_TRUE(loop.add(sub_y, [&](Sample m) { y.push_back(index_of(m)), check_done(); }).ok());
  std::thread publishers([&] {
    for (uint64_t i = 0; i < kCount; ++i) {
      ASSERT_TRUE(publish_index(pub_x, i).ok());
      ASSERT_TRUE(publish_index(pub_y, i).ok());
      if (i % 1000 == 0) std::this_thread::sleep_for(1ms);  // let the loop fall asleep now and then
    }
  });
  loop.run_for(120s);
  publishers.join();
  ASSERT_EQ(x.size(), kCount);
  ASSERT_EQ(y.size(), kCount);
  for (uint64_t i = 0; i < kCount; ++i) {
    ASSERT_EQ(x[i], i);
    ASSERT_EQ(y[i], i);
  }
  EXPECT_EQ(loop.run_once(100ms), 0u) << "nothing more";
}

// One coroutine takes from two subscribers in turn (while it awaits one, the other is paused and must not
// spin the loop); the publishers are other processes.
Task alternate(EventLoop& loop, Subscriber& first, Subscriber& second, uint64_t count, Received* got_first,
               Received* got_second) {
  for (uint64_t i = 0; i < count; ++i) {
    Sample a = co_await loop.next(first);
    if (!a) break;
    got_first->add(a);
    Sample b = co_await loop.next(second);
    if (!b) break;
    got_second->add(b);
  }
  loop.stop();
}

TEST(AsyncTest, CoroutineAwaitsTwoSubscribersWithChecksums) {
  TestDaemon daemon;
  Bus bus = daemon.connect();
  auto first = bus.subscriber("co/first").value();
  auto second = bus.subscriber("co/second").value();
  constexpr int kCount = 3000;
  ChildProcess p1(publish_command("co/first", kCount, 512, 21));
  ChildProcess p2(publish_command("co/second", kCount, 64, 22));
  auto loop = EventLoop::create().value();
  Received got_first, got_second;
  loop.spawn(alternate(loop, first, second, kCount, &got_first, &got_second));
  loop.run_for(120s);
  EXPECT_EQ(loop.tasks(), 0u) << "the coroutine finished";
  const std::string o1 = p1.read_line(60), o2 = p2.read_line(60);
  EXPECT_EQ(p1.wait(), 0);
  EXPECT_EQ(p2.wait(), 0);
  EXPECT_EQ(got_first.count, static_cast<uint64_t>(kCount));
  EXPECT_EQ(got_second.count, static_cast<uint64_t>(kCount));
  EXPECT_EQ(got_first.order_errors + got_second.order_errors, 0u);
  EXPECT_EQ(got_first.sum, field(o1, "checksum"));
  EXPECT_EQ(got_second.sum, field(o2, "checksum"));
}

TEST(AsyncTest, UnawaitedSubscriberWithMessagesDoesNotSpinTheLoop) {
  TestDaemon daemon;
  Bus bus = daemon.connect();
  auto awaited = bus.subscriber("spin/awaited").value();
  auto other = bus.subscriber("spin/other").value();
  auto pub = bus.publisher("spin/other").value();
  auto loop = EventLoop::create().value();
  int taken = 0;
  auto task = [](EventLoop& loop, Subscriber& other, Subscriber& awaited, int* taken) -> Task {
    if (co_await loop.next(other)) ++*taken;  // registers `other`, then no one awaits it
    while (co_await loop.next(awaited)) ++*taken;
  };
  ASSERT_TRUE(publish_index(pub, 0).ok());
  loop.spawn(task(loop, other, awaited, &taken));
  EXPECT_EQ(taken, 1);
  for (uint64_t i = 1; i < 5; ++i) ASSERT_TRUE(publish_index(pub, i).ok());
  // Messages wait on `other`, but nobody can take them: the loop must sleep, not spin.
  int rounds = 0;
  const auto start = Clock::now();
  while (Clock::now() - start < 300ms) {
    loop.run_once(100ms);
    ++rounds;
  }
  EXPECT_LE(rounds, 10) << "the loop spun on messages nobody awaits";
  EXPECT_EQ(taken, 1);
}

TEST(AsyncTest, ClosedTopicEndsAwaitingCoroutineAndCallback) {
  TestDaemon daemon;
  Bus bus = daemon.connect();
  auto awaited = bus.subscriber("close/awaited").value();
  auto called = bus.subscriber("close/called").value();
  auto loop = EventLoop::create().value();
  bool ended = false, empty_callback = false;
  auto task = [](EventLoop& loop, Subscriber& s, bool* ended) -> Task {
    while (co_await loop.next(s)) {
    }
    *ended = true;
  };
  ASSERT_TRUE(loop.add(called, [&](Sample m) { empty_callback = !m; }).ok());
  loop.spawn(task(loop, awaited, &ended));
  EXPECT_EQ(loop.run_once(50ms), 0u);
  EXPECT_EQ(daemon.stop(), 0);
  const auto deadline = Clock::now() + 10s;
  while (!(ended && empty_callback) && Clock::now() < deadline) loop.run_once(100ms);
  EXPECT_TRUE(ended);
  EXPECT_TRUE(empty_callback);
  EXPECT_EQ(loop.tasks(), 0u);
}

TEST(AsyncTest, FollowsATopicReshapedByItsFirstPublisher) {
  TestDaemon daemon;
  Bus bus = daemon.connect();
  auto sub = bus.subscriber("reshape/me").value();  // creates the topic with default settings
  auto source = EventSource::create().value();
  ASSERT_TRUE(source.add(sub).ok());
  EXPECT_FALSE(source.rearm());  // asleep on the default-shaped segment
  PublisherOptions big;
  big.topic.max_message_size = 65536;
  auto pub = bus.publisher("reshape/me", big).value();  // moves the topic to a new segment
  std::vector<uint64_t> got;
  for (uint64_t i = 0; i < 3; ++i) {
    ASSERT_TRUE(publish_index(pub, i).ok());
    const auto deadline = Clock::now() + 10s;
    while (got.size() <= i && Clock::now() < deadline) {
      if (!readable(source.fd(), 10s)) break;
      while (Sample m = sub.try_take()) got.push_back(index_of(m));
      source.rearm();
    }
  }
  EXPECT_EQ(got, (std::vector<uint64_t>{0, 1, 2}));
  EXPECT_EQ(sub.max_message_size(), 65536u) << "the subscriber re-opened the reshaped topic";
}

// A daemon stopped with SIGTERM takes its topics along; endpoints re-open them with its successor. The fd
// must lead the loop to that: while the topic is closed it becomes readable now and then, so that the
// subscriber looks, re-opens, and the thread then sleeps on the new segment.
TEST(AsyncTest, KeepsWakingAfterTheDaemonRestarts) {
  TestDaemon daemon;
  Bus bus = daemon.connect();
  auto sub = bus.subscriber("restart/topic").value();
  auto pub = bus.publisher("restart/topic").value();
  auto source = EventSource::create().value();
  ASSERT_TRUE(source.add(sub).ok());
  ASSERT_TRUE(publish_index(pub, 0).ok());
  ASSERT_TRUE(readable(source.fd(), 5s));
  EXPECT_TRUE(sub.try_take());
  EXPECT_FALSE(source.rearm());
  EXPECT_EQ(daemon.stop(SIGTERM), 0);
  EXPECT_TRUE(readable(source.fd(), 5s)) << "the topic closed";
  EXPECT_TRUE(sub.closed());
  source.rearm();
  ASSERT_TRUE(daemon.start());
  bool got = false;
  const auto deadline = Clock::now() + 20s;
  while (!got && Clock::now() < deadline) {
    (void)publish_index(pub, 1);  // the publisher re-opens the topic at its next publish
    if (!readable(source.fd(), 500ms)) continue;
    while (Sample m = sub.try_take()) got = true;  // only when the fd says so
    source.rearm();
  }
  EXPECT_TRUE(got) << "no wake-up for messages on the re-opened topic";
  EXPECT_FALSE(sub.closed());
}

}  // namespace
}  // namespace shmbus::test

// Publish/subscribe through a real daemon: in-process and across real processes.
#include <gtest/gtest.h>
#include <poll.h>

#include <sys/syscall.h>
#include <toml++/toml.h>
#include <unistd.h>

#include <array>
#include <atomic>
#include <cstring>
#include <fstream>
#include <functional>
#include <thread>

#include "shm/segment.h"
#include "shm/topic_segment_layout.h"
#include "shmbus/bus.h"
#include "shmbus/event_source.h"
#include "shmbus/wait_set.h"
#include "shmbus/work_queue.h"
#include "support/peer_output.h"
#include "support/process_stat.h"
#include "support/test_daemon.h"

namespace shmbus::test {
namespace {

using namespace std::chrono_literals;

Status publish_text(Publisher& p, const std::string& text) {
  return p.publish(std::as_bytes(std::span(text.data(), text.size())));
}
std::string text_of(const Sample& s) {
  return std::string(reinterpret_cast<const char*>(s.data()), s.size());
}

TEST(PubSubTest, MessagesFlowWithMetadata) {
  TestDaemon daemon;
  Bus bus = daemon.connect();
  auto sub = bus.subscriber("demo/text");
  ASSERT_TRUE(sub.ok()) << sub.status().to_string();
  auto pub = bus.publisher("demo/text");
  ASSERT_TRUE(pub.ok()) << pub.status().to_string();
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(publish_text(*pub, "hello " + std::to_string(i)).ok());
  for (int i = 0; i < 3; ++i) {
    Sample m = sub->take(5s);
    ASSERT_TRUE(m);
    EXPECT_EQ(text_of(m), "hello " + std::to_string(i));
    EXPECT_EQ(m.sequence(), static_cast<uint64_t>(i + 1));
    EXPECT_EQ(m.publisher_id(), pub->id());
    EXPECT_LE(m.publish_time(), std::chrono::steady_clock::now());
  }
  EXPECT_FALSE(sub->try_take());
}

// "Wait for ever" (nanoseconds::max()) waits: the deadline saturates instead of overflowing into the past,
// which made take() return at once (and a caller's take loop spin). The same for a WaitSet and a queue.
TEST(PubSubTest, AWaitWithoutDeadlineWaitsForTheMessage) {
  TestDaemon daemon;
  Bus bus = daemon.connect();
  auto sub = bus.subscriber("demo/forever");
  auto pub = bus.publisher("demo/forever");
  ASSERT_TRUE(sub.ok() && pub.ok());
  // A send that fails stops the daemon: the waits then end (closed) and the test fails instead of hanging.
  std::thread later([&] {
    std::this_thread::sleep_for(200ms);
    if (!publish_text(*pub, "late").ok()) daemon.stop(SIGTERM);
  });
  const auto start = std::chrono::steady_clock::now();
  Sample m = sub->take(std::chrono::nanoseconds::max());
  later.join();
  ASSERT_TRUE(m) << "returned empty after "
                 << std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() -
                                                                          start)
                        .count()
                 << " ms";
  EXPECT_EQ(text_of(m), "late");

  auto producer = bus.queue_producer("jobs/forever");
  auto consumer = bus.queue_consumer("jobs/forever");
  ASSERT_TRUE(producer.ok() && consumer.ok());
  std::thread sender([&] {
    std::this_thread::sleep_for(200ms);
    if (!producer->send(std::as_bytes(std::span("job", 3))).ok()) daemon.stop(SIGTERM);
  });
  auto d = consumer->receive(std::chrono::nanoseconds::max());
  sender.join();
  ASSERT_TRUE(d.ok()) << d.status().to_string();
  EXPECT_EQ(d->bytes().size(), 3u);
}

// Voluntary context switches of the calling thread so far (each futex sleep that ended is one).
long voluntary_switches() {
  std::ifstream status("/proc/thread-self/status");
  for (std::string line; std::getline(status, line);) {
    if (line.rfind("voluntary_ctxt_switches:", 0) == 0) return std::stol(line.substr(24));
  }
  return -1;
}

// At max_held_samples, take() can take nothing: it waits out its timeout unarmed, instead of being woken
// (and paying a membarrier) for every commit, which the publishers would pay for too.
TEST(PubSubTest, TakeAtTheHeldLimitIsNotWokenByEveryCommit) {
  TestDaemon daemon;
  Bus bus = daemon.connect();
  const TopicSettings lossy{.policy = Policy::kLossy};
  auto sub = bus.subscriber("demo/held", {.topic = lossy, .max_held_samples = 2});
  auto pub = bus.publisher("demo/held", {.topic = lossy});
  ASSERT_TRUE(sub.ok() && pub.ok());
  for (int i = 0; i < 2; ++i) ASSERT_TRUE(publish_text(*pub, "held").ok());
  Sample first = sub->take(1s), second = sub->take(1s);
  ASSERT_TRUE(first && second);
  std::atomic<bool> stop{false};
  std::thread publisher([&] {
    while (!stop.load()) {
      (void)publish_text(*pub, "more");
      std::this_thread::sleep_for(500us);
    }
  });
  const long before = voluntary_switches();
  EXPECT_FALSE(sub->take(500ms)) << "took past max_held_samples";
  const long after = voluntary_switches();
  stop.store(true);
  publisher.join();
  // Unarmed: about 50 sleeps of 10 ms. Armed, each of ~1000 commits woke the thread.
  EXPECT_LT(after - before, 200) << "woken " << after - before << " times in 500 ms";
}

struct Pose {
  double x, y, z;
  uint64_t frame;
};

TEST(PubSubTest, TypedZeroCopyWritesAndReadsInPlace) {
  TestDaemon daemon;
  Bus bus = daemon.connect();
  PublisherOptions o;
  o.topic.depth = 4;
  o.topic.policy = Policy::kLossy;
  auto sub = bus.subscriber<Pose>("robot/pose");
  auto pub = bus.publisher<Pose>("robot/pose", o);
  ASSERT_TRUE(sub.ok() && pub.ok());
  auto loan = pub->loan();
  ASSERT_TRUE(loan.ok());
  **loan = Pose{1, 2, 3, 42};
  pub->publish(std::move(loan).value());
  auto m = sub->take(5s);
  ASSERT_TRUE(m);
  EXPECT_EQ(m->frame, 42u);
  EXPECT_EQ(m.sequence(), 1u);
  EXPECT_TRUE(m.untyped().still_valid());
  // The sample is a view of the slot, not a copy: once the lossy publisher laps the ring, the same view shows
  // the newer message and says it is no longer valid.
  for (uint64_t f = 100; f < 104; ++f) ASSERT_TRUE(pub->publish(Pose{0, 0, 0, f}).ok());
  EXPECT_EQ(m->frame, 103u);
  EXPECT_FALSE(m.untyped().still_valid());
}

TEST(PubSubTest, ManyPublishersManySubscribers) {
  TestDaemon daemon;
  Bus bus = daemon.connect();
  std::vector<Subscriber> subs;
  for (int i = 0; i < 3; ++i) subs.push_back(std::move(bus.subscriber("fan/in").value()));
  std::vector<Publisher> pubs;
  for (int i = 0; i < 4; ++i) pubs.push_back(std::move(bus.publisher("fan/in").value()));
  for (int round = 0; round < 10; ++round) {
    for (auto& p : pubs) ASSERT_TRUE(publish_text(p, "m").ok());
  }
  for (auto& s : subs) {
    std::map<uint64_t, uint64_t> last;
    for (int i = 0; i < 40; ++i) {
      Sample m = s.take(5s);
      ASSERT_TRUE(m);
      EXPECT_EQ(m.sequence(), last[m.publisher_id()] + 1) << "per-publisher order";
      last[m.publisher_id()] = m.sequence();
    }
    EXPECT_EQ(last.size(), 4u);
    EXPECT_FALSE(s.try_take());
  }
}

TEST(PubSubTest, ErrorsAreTypedAndExplained) {
  TestDaemon daemon;
  Bus bus = daemon.connect();
  EXPECT_EQ(bus.publisher("bad topic").status().code(), Errc::kInvalidTopic);
  EXPECT_EQ(bus.subscriber("a//b").status().code(), Errc::kInvalidTopic);
  PublisherOptions small;
  small.topic.max_message_size = 16;
  auto pub = bus.publisher("sized", small);
  ASSERT_TRUE(pub.ok());
  std::vector<std::byte> big(17);
  const Status s = pub->publish(big);
  EXPECT_EQ(s.code(), Errc::kMessageTooLarge);
  EXPECT_NE(s.message().find("16"), std::string::npos);
  PublisherOptions other;
  other.topic.max_message_size = 1024;
  other.topic.policy = Policy::kLossless;
  auto clash = bus.publisher("sized", other);
  ASSERT_EQ(clash.status().code(), Errc::kIncompatibleSettings);
  EXPECT_NE(clash.status().message().find("max_message_size=16"), std::string::npos)
      << "names the topic's settings";
  EXPECT_NE(clash.status().message().find("max_message_size=1024"), std::string::npos) << "names the request";
  PublisherOptions greedy;
  greedy.topic.history = 4294967295u;  // must not wrap around the history <= depth - 2 check
  EXPECT_EQ(bus.publisher("greedy", greedy).status().code(), Errc::kInvalidArgument);
  PublisherOptions odd;
  odd.topic.depth = 6;
  EXPECT_EQ(bus.publisher("odd", odd).status().code(), Errc::kInvalidArgument);
  PublisherOptions two;
  two.topic.max_publishers = 1;
  auto first = bus.publisher("single", two);
  ASSERT_TRUE(first.ok());
  EXPECT_EQ(bus.publisher("single").status().code(), Errc::kExhausted);
  auto loan = first->loan();
  ASSERT_TRUE(loan.ok());
  EXPECT_EQ(first->loan().status().code(), Errc::kInvalidArgument) << "one loan at a time";
}

TEST(PubSubTest, DaemonAbsentIsAClearErrorNotAHang) {
  BusOptions o;
  o.instance = "nobody-runs-this-instance";
  o.runtime_dir = "/tmp/shmbus-absent";
  const auto start = std::chrono::steady_clock::now();
  auto bus = Bus::connect(o);
  ASSERT_FALSE(bus.ok());
  EXPECT_EQ(bus.status().code(), Errc::kDaemonUnavailable);
  EXPECT_NE(bus.status().message().find("nobody-runs-this-instance.sock"), std::string::npos);
  EXPECT_LT(std::chrono::steady_clock::now() - start, 5s);
  o.instance = "bad/name";
  EXPECT_EQ(Bus::connect(o).status().code(), Errc::kInvalidArgument);
}

TEST(PubSubTest, FirstPublisherReshapesATopicItsSubscriberCreated) {
  TestDaemon daemon;
  Bus bus = daemon.connect();
  auto sub = bus.subscriber("late/shape");  // creates the topic with defaults (lossy)
  ASSERT_TRUE(sub.ok());
  PublisherOptions o;
  o.topic.policy = Policy::kLossless;
  o.topic.max_message_size = 100000;
  auto pub = bus.publisher("late/shape", o);
  ASSERT_TRUE(pub.ok()) << pub.status().to_string();
  std::vector<std::byte> big(100000, std::byte{7});
  ASSERT_TRUE(pub->publish(big).ok());
  Sample m = sub->take(5s);
  ASSERT_TRUE(m);
  EXPECT_EQ(m.size(), 100000u);
  EXPECT_EQ(sub->max_message_size(), 100000u);
  // Once a publisher fixed the settings, a conflicting publisher is refused.
  PublisherOptions lossy;
  lossy.topic.policy = Policy::kLossy;
  EXPECT_EQ(bus.publisher("late/shape", lossy).status().code(), Errc::kIncompatibleSettings);
}

// A first publisher whose settings cannot make a topic is refused before the topic its subscriber created is
// retired: the subscriber's topic (and its segment) stays as it was, and a valid publisher reaches it.
TEST(PubSubTest, APublisherWithImpossibleSettingsLeavesTheSubscribersTopicAlone) {
  TestDaemon daemon;
  Bus bus = daemon.connect();
  auto sub = bus.subscriber("keep/shape");
  ASSERT_TRUE(sub.ok());
  const auto before = daemon.segments();
  ASSERT_EQ(before.size(), 1u);
  PublisherOptions bad;
  bad.topic.depth = 3;
  EXPECT_EQ(bus.publisher("keep/shape", bad).status().code(), Errc::kInvalidArgument);
  EXPECT_EQ(daemon.segments(), before) << "the topic was retired for a publisher that could not have it";
  auto pub = bus.publisher("keep/shape");
  ASSERT_TRUE(pub.ok()) << pub.status().to_string();
  ASSERT_TRUE(publish_text(*pub, "kept").ok());
  Sample m = sub->take(5s);
  ASSERT_TRUE(m);
  EXPECT_EQ(text_of(m), "kept");
}

TEST(PubSubTest, LateJoinerReceivesHistory) {
  TestDaemon daemon;
  Bus bus = daemon.connect();
  PublisherOptions o;
  o.topic.history = 4;
  o.topic.depth = 16;
  auto pub = bus.publisher("history/topic", o);
  ASSERT_TRUE(pub.ok());
  for (int i = 1; i <= 10; ++i) ASSERT_TRUE(publish_text(*pub, std::to_string(i)).ok());
  SubscriberOptions so;
  so.history = 4;
  auto late = bus.subscriber("history/topic", so);
  ASSERT_TRUE(late.ok());
  for (int i = 7; i <= 10; ++i) {
    Sample m = late->take(5s);
    ASSERT_TRUE(m);
    EXPECT_EQ(text_of(m), std::to_string(i));
  }
  EXPECT_FALSE(late->try_take());
  auto no_history = bus.subscriber("history/topic");
  ASSERT_TRUE(no_history.ok());
  EXPECT_FALSE(no_history->try_take()) << "history is opt-in per subscriber";
}

TEST(PubSubTest, LossyStalledSubscriberNeverBlocksAndCountsExactly) {
  TestDaemon daemon;
  Bus bus = daemon.connect();
  PublisherOptions o;
  o.topic.depth = 16;
  auto sub = bus.subscriber("lossy/stall", {.topic = o.topic});
  auto pub = bus.publisher("lossy/stall", o);
  ASSERT_TRUE(sub.ok() && pub.ok());
  constexpr uint64_t kSent = 100000;
  for (uint64_t i = 0; i < kSent; ++i) {
    ASSERT_TRUE(
        pub->publish(std::as_bytes(std::span(&i, 1))).ok());  // the stalled subscriber never blocks us
  }
  uint64_t received = 0, last = 0;
  while (Sample m = sub->try_take()) {
    uint64_t v;
    std::memcpy(&v, m.data(), sizeof v);
    EXPECT_TRUE(received == 0 || v > last);
    EXPECT_EQ(m.sequence(), v + 1);
    last = v;
    ++received;
  }
  EXPECT_GT(received, 0u);
  EXPECT_EQ(received + sub->dropped(), kSent) << "every message is either delivered or counted as dropped";
  const auto stats = toml::parse(daemon.statistics());
  EXPECT_EQ(stats["topic"][0]["drops"].value<int64_t>().value_or(-1), static_cast<int64_t>(sub->dropped()));
}

TEST(PubSubTest, LosslessPublisherWaitsForSlowSubscriberThenTimesOut) {
  TestDaemon daemon;
  Bus bus = daemon.connect();
  PublisherOptions o;
  o.topic.depth = 8;
  o.topic.policy = Policy::kLossless;
  o.full_timeout = 50ms;
  auto pub = bus.publisher("lossless/slow", o);
  auto sub = bus.subscriber("lossless/slow");
  ASSERT_TRUE(sub.ok() && pub.ok());
  int sent = 0;
  while (publish_text(*pub, "x").ok()) ++sent;
  EXPECT_EQ(sent, 8);
  EXPECT_EQ(publish_text(*pub, "x").code(), Errc::kTimeout);
  for (int i = 0; i < 8; ++i) ASSERT_TRUE(sub->take(1s));
  EXPECT_TRUE(sub->take(10ms).size() == 0);
  EXPECT_TRUE(publish_text(*pub, "x").ok()) << "space again once the subscriber caught up";
}

// Samples kept from a publisher that left, after the daemon freed its ring, stop counting against
// max_held_samples: the subscriber takes from the next publisher (it took nothing more, for ever, before).
TEST(PubSubTest, SamplesHeldFromAFreedRingStopCountingAgainstTheLimit) {
  TestDaemon daemon("dead_ring_grace_s = 0.1\n");
  Bus bus = daemon.connect();
  auto sub = bus.subscriber("held/freed", {.max_held_samples = 2});
  ASSERT_TRUE(sub.ok()) << sub.status().to_string();
  std::vector<Sample> kept;
  {
    auto pub = bus.publisher("held/freed");
    ASSERT_TRUE(pub.ok());
    for (int i = 0; i < 3; ++i) ASSERT_TRUE(publish_text(*pub, "old").ok());
    for (int i = 0; i < 2; ++i) {
      kept.push_back(sub->take(5s));
      ASSERT_TRUE(kept.back());
    }
    EXPECT_FALSE(sub->try_take()) << "at the limit, with a third message waiting";
  }  // the publisher leaves; its ring is freed after the grace period although our samples pin it
  // Read now: once the old ring is freed, the next publisher may be given it and overwrite it.
  EXPECT_EQ(text_of(kept[0]), "old") << "the kept samples are readable";
  auto pub = bus.publisher("held/freed");
  ASSERT_TRUE(pub.ok());
  ASSERT_TRUE(publish_text(*pub, "new").ok());
  Sample m;
  const auto deadline = std::chrono::steady_clock::now() + 10s;
  while (!(m = sub->try_take()) && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(5ms);
  ASSERT_TRUE(m) << "still at the limit 10 s after the old ring's grace period of 0.1 s";
  EXPECT_EQ(text_of(m), "new");
}

// A sample kept from a ring freed since still points into the topic's mapping: a re-open (here after a
// daemon restart closed the topic) waits until it is released, so the sample stays readable; then the
// subscriber re-opens and receives again. (Re-opening at once unmapped it under the sample: SIGSEGV.)
TEST(PubSubTest, ASampleOfAFreedRingStaysReadableAcrossADaemonRestart) {
  TestDaemon daemon("dead_ring_grace_s = 0.1\n");
  Bus bus = daemon.connect();
  auto sub = bus.subscriber("held/restart", {.max_held_samples = 2});
  ASSERT_TRUE(sub.ok()) << sub.status().to_string();
  Sample kept;
  {
    auto pub = bus.publisher("held/restart");
    ASSERT_TRUE(pub.ok());
    ASSERT_TRUE(publish_text(*pub, "old").ok());
    kept = sub->take(5s);
    ASSERT_TRUE(kept);
  }                                // the publisher leaves; its ring is freed after the grace period
  for (int i = 0; i < 100; ++i) {  // the subscriber follows the freed ring: the sample is now an orphan
    (void)sub->try_take();
    std::this_thread::sleep_for(10ms);
  }
  EXPECT_EQ(daemon.stop(SIGTERM), 0);  // closes the topic
  ASSERT_TRUE(daemon.start());
  for (int i = 0; i < 20; ++i) {  // each would re-open, and unmap, were the sample not counted
    (void)sub->try_take();
    std::this_thread::sleep_for(10ms);
  }
  EXPECT_EQ(text_of(kept), "old");
  kept = Sample();  // released: the subscriber may re-open now
  auto pub = bus.publisher("held/restart");
  ASSERT_TRUE(pub.ok()) << pub.status().to_string();
  Sample m;
  const auto deadline = std::chrono::steady_clock::now() + 10s;
  while (!m && std::chrono::steady_clock::now() < deadline) {
    (void)publish_text(*pub, "new");
    m = sub->take(20ms);
  }
  ASSERT_TRUE(m) << "the subscriber did not re-open after the sample was released";
  EXPECT_EQ(text_of(m), "new");
}

TEST(PubSubTest, BlockingTakeWakesOnPublish) {
  TestDaemon daemon;
  Bus bus = daemon.connect();
  auto sub = bus.subscriber("wake/up", {.spin = std::chrono::microseconds(0)});
  auto pub = bus.publisher("wake/up");
  ASSERT_TRUE(sub.ok() && pub.ok());
  std::thread later([&] {
    std::this_thread::sleep_for(100ms);
    (void)publish_text(*pub, "late");
  });
  Sample m = sub->take(10s);
  later.join();
  ASSERT_TRUE(m);
  EXPECT_EQ(text_of(m), "late");
  EXPECT_EQ(sub->late_wakeups(), 0u) << "woken by the publish, not at a sleep's cap";
}

// The test daemon's only topic, mapped: the topic's sleeper count (what writers look at) and the sums over
// its subscriber slots of the readers' own sleeper counts (what the daemon undoes for a reader that dies)
// and of their late wake-ups.
struct OnlyTopic {
  shm::Segment segment;
  shm::TopicHeader* header = nullptr;
  shm::TopicGeometry geometry{};

  explicit OnlyTopic(TestDaemon& daemon) {
    const std::vector<std::string> names = daemon.segments();
    if (names.size() != 1) throw std::runtime_error("expected one topic segment");
    segment = shm::Segment::open(names[0]);
    header = shm::topic_header(segment.data());
    std::string error;
    const auto g = shm::validate_topic_header(*header, segment.size(), &error);
    if (!g) throw std::runtime_error(error);
    geometry = *g;
  }
  uint32_t sleepers() const { return header->sleepers.load(); }
  uint32_t counted_in_slots() const {
    uint32_t n = 0;
    for (uint32_t i = 0; i < geometry.max_subscribers; ++i) n += slot(i)->sleeping.load();
    return n;
  }
  uint64_t late_wakeups() const {
    uint64_t n = 0;
    for (uint32_t i = 0; i < geometry.max_subscribers; ++i) n += slot(i)->late_wakeups.load();
    return n;
  }
  shm::SubscriberSlot* slot(uint32_t i) const { return shm::subscriber_slot(segment.data(), geometry, i); }
};

// A wake-up nobody makes: a writer that missed the sleeper (the race a wait's unfenced first sleep allows,
// shm/sleep_fence.h; here the sleeper count is cleared by hand while `wait` sleeps) costs the sleep's cap,
// not a hang, and is counted in the subscriber's late_wakeups (also in the shared slot the daemon reports).
// Each attempt must deliver; one whose sleep happened to end just before the publish is woken normally and
// counts nothing, so up to five attempts, and at least one must count.
// `in_wait` (if given) says whether `wait` has reached its sleep, when its thread may be asleep elsewhere
// first.
void expect_a_missed_wake_up_is_late_and_counted(
    TestDaemon& daemon, Publisher& pub, Subscriber& sub, const std::function<bool()>& wait,
    const std::function<bool()>& in_wait = [] { return true; }) {
  const OnlyTopic topic(daemon);
  shm::TopicHeader* h = topic.header;
  uint64_t late = 0;
  for (int attempt = 0; attempt < 5 && late == 0; ++attempt) {
    std::atomic<pid_t> tid{0};
    std::atomic<bool> got{false};
    const auto start = std::chrono::steady_clock::now();
    std::thread waiter([&] {
      tid = static_cast<pid_t>(syscall(SYS_gettid));
      got = wait();
    });
    // Asleep in the wait: counted as a sleeper, and its thread in state S (for 5 s at most).
    bool asleep = false;
    while (!(asleep = tid != 0 && h->sleepers.load() != 0 && in_wait() && thread_state(tid) == 'S') &&
           std::chrono::steady_clock::now() - start < 5s) {
      std::this_thread::sleep_for(1ms);
    }
    h->sleepers.store(0);  // the publisher below sees nobody asleep: no futex_wake
    const auto published = std::chrono::steady_clock::now();
    const bool sent = publish_text(pub, "unannounced").ok();
    waiter.join();
    // Back to the true count, as the readers' slots record it: a take() stays counted after it returns.
    h->sleepers.store(topic.counted_in_slots());
    ASSERT_TRUE(asleep) << "the waiter never slept";
    ASSERT_TRUE(sent);
    ASSERT_TRUE(got) << "attempt " << attempt << ": the message was not delivered";
    // Liveness: one sleep's cap (10 or 200 ms), with a generous margin for a loaded machine.
    EXPECT_LT(std::chrono::steady_clock::now() - published, 5s);
    late = sub.late_wakeups();
    EXPECT_EQ(topic.late_wakeups(), late) << "the shared slot reports what the subscriber counts";
  }
  EXPECT_EQ(late, 1u) << "a missed wake-up was never counted in five attempts";
}

TEST(PubSubTest, AMissedWakeUpInTakeCostsASleepsCapAndIsCounted) {
  TestDaemon daemon;
  Bus bus = daemon.connect();
  auto sub = bus.subscriber("wake/missed", {.spin = std::chrono::microseconds(0)});
  auto pub = bus.publisher("wake/missed");
  ASSERT_TRUE(sub.ok() && pub.ok());
  ASSERT_NO_FATAL_FAILURE(
      expect_a_missed_wake_up_is_late_and_counted(daemon, *pub, *sub, [&] { return bool(sub->take(10s)); }));
  // A wake-up that is made is not late.
  std::thread later([&] {
    std::this_thread::sleep_for(50ms);
    (void)publish_text(*pub, "announced");
  });
  EXPECT_TRUE(sub->take(10s));
  later.join();
  EXPECT_EQ(sub->late_wakeups(), 1u);
}

TEST(PubSubTest, AMissedWakeUpInAWaitSetCostsASleepsCapAndIsCounted) {
  TestDaemon daemon;
  Bus bus = daemon.connect();
  auto sub = bus.subscriber("wake/missed-set");
  auto pub = bus.publisher("wake/missed-set");
  ASSERT_TRUE(sub.ok() && pub.ok());
  WaitSet ws;
  ws.add(*sub);
  ASSERT_NO_FATAL_FAILURE(expect_a_missed_wake_up_is_late_and_counted(daemon, *pub, *sub, [&] {
    const bool ready = ws.wait(10s).size() == 1;
    return ready && sub->try_take();
  }));
}

// An EventSource's thread cannot look at the rings: it finds the commit it was not woken for by the ring
// heads its owner noted when arming it, makes the fd readable, and the next rearm() counts the late wake-up.
TEST(PubSubTest, AMissedWakeUpInAnEventSourceCostsASleepsCapAndIsCounted) {
  TestDaemon daemon;
  Bus bus = daemon.connect();
  auto sub = bus.subscriber("wake/missed-source");
  auto pub = bus.publisher("wake/missed-source");
  ASSERT_TRUE(sub.ok() && pub.ok());
  auto source = EventSource::create();
  ASSERT_TRUE(source.ok()) << source.status().to_string();
  ASSERT_TRUE(source->add(*sub).ok());
  // One turn of an event loop: rearm, poll the fd (10 s at most), take.
  std::atomic<bool> polling{false};
  auto turn = [&] {
    if (!source->rearm()) {
      pollfd p{source->fd(), POLLIN, 0};
      polling = true;
      const int n = poll(&p, 1, 10000);
      polling = false;
      if (n != 1) return false;
    }
    const bool got = static_cast<bool>(sub->try_take());
    (void)source->rearm();  // counts what the thread found without a wake-up
    return got;
  };
  ASSERT_NO_FATAL_FAILURE(
      expect_a_missed_wake_up_is_late_and_counted(daemon, *pub, *sub, turn, [&] { return polling.load(); }));
  // A wake-up that is made is not late.
  std::thread later([&] {
    std::this_thread::sleep_for(50ms);
    (void)publish_text(*pub, "announced");
  });
  EXPECT_TRUE(turn());
  later.join();
  EXPECT_EQ(sub->late_wakeups(), 1u);
}

// A take() that slept leaves its subscriber counted as a sleeper (so that the next sleep and the wake-up
// write nothing to the count's line), once however often it sleeps; a WaitSet counts it for its own sleeps
// only; leaving the topic withdraws the count.
TEST(PubSubTest, ABlockingTakeStaysCountedAsASleeperUntilTheSubscriberLeaves) {
  TestDaemon daemon;
  Bus bus = daemon.connect();
  auto pub = bus.publisher("wake/counted");
  ASSERT_TRUE(pub.ok());
  auto sub = bus.subscriber("wake/counted", {.spin = std::chrono::microseconds(0)});
  ASSERT_TRUE(sub.ok());
  OnlyTopic counts(daemon);
  EXPECT_EQ(counts.sleepers(), 0u);
  // Nothing to take, no spin: each take sleeps until its timeout.
  for (int i = 0; i < 3; ++i) {
    EXPECT_FALSE(sub->take(500ms));
    EXPECT_EQ(counts.sleepers(), 1u) << "take " << i;
    EXPECT_EQ(counts.counted_in_slots(), 1u) << "take " << i;
  }
  // Woken by a publish (or finding it at once, if this thread was late): counted once still.
  std::thread later([&] {
    std::this_thread::sleep_for(50ms);
    (void)publish_text(*pub, "later");
  });
  EXPECT_TRUE(sub->take(10s));
  later.join();
  EXPECT_EQ(counts.sleepers(), 1u);
  EXPECT_EQ(counts.counted_in_slots(), 1u);
  WaitSet set(std::chrono::microseconds(0));
  set.add(*sub);
  EXPECT_TRUE(set.wait(500ms).empty());
  EXPECT_EQ(counts.sleepers(), 0u) << "the WaitSet's sleep replaced take()'s count and withdrew its own";
  EXPECT_EQ(counts.counted_in_slots(), 0u);
  EXPECT_FALSE(sub->take(500ms));
  EXPECT_EQ(counts.sleepers(), 1u);
  sub = Status{Errc::kClosed, "left"};  // the subscriber closes
  EXPECT_EQ(counts.sleepers(), 0u);
  EXPECT_EQ(counts.counted_in_slots(), 0u);
}

// kill -9 of a subscriber still counted as a sleeper after a blocking take: the daemon undoes its count, so
// writers stop looking at the wake word for it.
TEST(PubSubTest, ASubscriberKilledAfterABlockingTakeIsNoLongerCounted) {
  TestDaemon daemon;
  Bus bus = daemon.connect();
  auto pub = bus.publisher("wake/killed");
  ASSERT_TRUE(pub.ok());
  ChildProcess holder({TEST_PEER_PATH, "hold", "wake/killed", "1"});
  ASSERT_EQ(holder.read_line(), "ready");
  OnlyTopic counts(daemon);
  const auto deadline = std::chrono::steady_clock::now() + 5s;
  while (counts.sleepers() == 0 && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(1ms);
  ASSERT_EQ(counts.sleepers(), 1u) << "the holder never slept in take()";
  ASSERT_TRUE(publish_text(*pub, "held").ok());
  ASSERT_EQ(holder.read_line(), "holding");
  EXPECT_EQ(counts.sleepers(), 1u) << "still counted after its take returned";
  EXPECT_EQ(counts.counted_in_slots(), 1u);
  holder.kill(SIGKILL);
  EXPECT_EQ(holder.wait(), 128 + SIGKILL);
  const auto reaped = std::chrono::steady_clock::now() + 5s;
  while (counts.sleepers() != 0 && std::chrono::steady_clock::now() < reaped)
    std::this_thread::sleep_for(1ms);
  EXPECT_EQ(counts.sleepers(), 0u) << "the daemon undid the dead reader's count";
  EXPECT_EQ(counts.counted_in_slots(), 0u);
}

TEST(PubSubTest, WaitSetWakesOnAnyOfSeveralTopics) {
  TestDaemon daemon;
  Bus bus = daemon.connect();
  auto a = bus.subscriber("ws/a").value();
  auto b = bus.subscriber("ws/b").value();
  auto pb = bus.publisher("ws/b").value();
  WaitSet ws;
  ws.add(a);
  ws.add(b);
  EXPECT_TRUE(ws.wait(10ms).empty());
  std::thread later([&] {
    std::this_thread::sleep_for(50ms);
    (void)publish_text(pb, "b");
  });
  auto ready = ws.wait(10s);
  later.join();
  ASSERT_EQ(ready.size(), 1u);
  EXPECT_EQ(ready[0], &b);
}

// futex_waitv takes 128 words: a WaitSet of 130 topics sleeps on the first 127 (and its notify word) and
// polls the rest every millisecond. Before, the kernel refused the wait and wait() spun. An empty set waits
// for its timeout or a notify, instead of returning at once.
TEST(PubSubTest, WaitSetBeyondTheFutexLimitWakesForEveryTopicAndAnEmptyOneWaits) {
  TestDaemon daemon;
  Bus bus = daemon.connect();
  constexpr int kTopics = 130;
  std::vector<Subscriber> subs;
  std::vector<Publisher> pubs;
  for (int i = 0; i < kTopics; ++i) {
    const std::string name = "many/t" + std::to_string(i);
    auto sub = bus.subscriber(name, {.topic = {.max_message_size = 64, .depth = 4}});
    ASSERT_TRUE(sub.ok()) << sub.status().to_string();
    subs.push_back(std::move(sub).value());
    auto pub = bus.publisher(name, {.topic = {.max_message_size = 64, .depth = 4}});
    ASSERT_TRUE(pub.ok()) << pub.status().to_string();
    pubs.push_back(std::move(pub).value());
  }
  WaitSet ws(std::chrono::microseconds(0));
  for (auto& s : subs) ws.add(s);
  for (int i : {0, 126, 127, 129}) {  // slept on, the last slept on, the first polled, the last
    std::thread later([&] {
      std::this_thread::sleep_for(50ms);
      ASSERT_TRUE(publish_text(pubs[i], "x").ok());
    });
    const auto ready = ws.wait(10s);
    later.join();
    ASSERT_EQ(ready.size(), 1u) << "topic " << i;
    EXPECT_EQ(ready[0], &subs[i]) << "topic " << i;
    EXPECT_TRUE(subs[i].try_take());
  }
  WaitSet empty(std::chrono::microseconds(0));
  const auto start = std::chrono::steady_clock::now();
  EXPECT_TRUE(empty.wait(200ms).empty());
  EXPECT_GE(std::chrono::steady_clock::now() - start, 150ms) << "an empty set returned at once";
}

// notify() from another thread ends a wait() without a message; one made between two waits ends the next one
// at once (nothing is lost between the caller's own check and its wait), and it is seen once.
TEST(PubSubTest, WaitSetNotifyEndsAWaitFromAnotherThreadAndIsSeenOnce) {
  TestDaemon daemon;
  Bus bus = daemon.connect();
  auto a = bus.subscriber("ws/n").value();
  auto pa = bus.publisher("ws/n").value();
  WaitSet ws(std::chrono::microseconds(0));
  ws.add(a);
  std::atomic<bool> queued{false};
  std::thread notifier([&] {
    std::this_thread::sleep_for(50ms);
    queued.store(true);
    ws.notify();
  });
  const auto start = std::chrono::steady_clock::now();
  const auto ready = ws.wait(20s);
  const auto waited = std::chrono::steady_clock::now() - start;
  notifier.join();
  EXPECT_TRUE(ready.empty());
  EXPECT_TRUE(queued.load()) << "returned before the notify";
  EXPECT_LT(waited, 10s) << "the notify did not end the wait";

  ws.notify();  // between two waits
  EXPECT_TRUE(ws.wait(20s).empty());
  EXPECT_TRUE(ws.wait(50ms).empty());  // seen once: this one times out
  // Messages still wake it as before.
  (void)publish_text(pa, "m");
  const auto again = ws.wait(10s);
  ASSERT_EQ(again.size(), 1u);
  EXPECT_EQ(again[0], &a);
}

// Real processes: two publishers and two subscribers, each its own process, lossless, with checksums.
TEST(MultiProcessTest, LosslessAcrossProcessesWithChecksums) {
  TestDaemon daemon;
  constexpr int kPerPublisher = 20000;
  ChildProcess s1({TEST_PEER_PATH, "subscribe", "mp/data", std::to_string(2 * kPerPublisher)});
  ChildProcess s2({TEST_PEER_PATH, "subscribe", "mp/data", std::to_string(2 * kPerPublisher)});
  ASSERT_EQ(s1.read_line(), "ready");
  ASSERT_EQ(s2.read_line(), "ready");
  ChildProcess p1(
      {TEST_PEER_PATH, "publish", "mp/data", std::to_string(kPerPublisher), "1000", "lossless", "2", "11"});
  ChildProcess p2(
      {TEST_PEER_PATH, "publish", "mp/data", std::to_string(kPerPublisher), "1000", "lossless", "2", "22"});
  const std::string o1 = p1.read_line(120), o2 = p2.read_line(120);
  const std::string r1 = s1.read_line(120), r2 = s2.read_line(120);
  EXPECT_EQ(p1.wait(), 0);
  EXPECT_EQ(p2.wait(), 0);
  const uint64_t sum = field(o1, "checksum") + field(o2, "checksum");
  for (const std::string& r : {r1, r2}) {
    EXPECT_EQ(field(r, "received"), 2u * kPerPublisher) << r;
    EXPECT_EQ(field(r, "checksum"), sum) << r;
    EXPECT_EQ(field(r, "order_errors"), 0u) << r;
    EXPECT_EQ(field(r, "corrupt"), 0u) << r;
    EXPECT_EQ(field(r, "dropped"), 0u) << r;
  }
}

TEST(MultiProcessTest, OneMillionLosslessMessagesAllInOrder) {
  TestDaemon daemon;
  ChildProcess sub({TEST_PEER_PATH, "subscribe", "mp/million", "1000000"});
  ASSERT_EQ(sub.read_line(), "ready");
  ChildProcess pub({TEST_PEER_PATH, "publish", "mp/million", "1000000", "64", "lossless", "1"});
  const std::string published = pub.read_line(300);
  const std::string received = sub.read_line(300);
  EXPECT_EQ(field(published, "published"), 1000000u);
  EXPECT_EQ(field(received, "received"), 1000000u) << received;
  EXPECT_EQ(field(received, "checksum"), field(published, "checksum"));
  EXPECT_EQ(field(received, "order_errors"), 0u);
  EXPECT_EQ(field(received, "dropped"), 0u);
}

// A lossless subscriber peer's report `r`: every one of `count` messages the publisher's report `published`
// covers, once, in order, with sequences 1, 2, 3..., intact (checksums equal), nothing dropped.
void expect_every_message_once(const std::string& r, const std::string& published, uint64_t count) {
  EXPECT_EQ(field(r, "received"), count) << r;
  EXPECT_EQ(field(r, "checksum"), field(published, "checksum")) << r;
  EXPECT_EQ(field(r, "order_errors"), 0u) << r;
  EXPECT_EQ(field(r, "sequence_gaps"), 0u) << r;
  EXPECT_EQ(field(r, "corrupt"), 0u) << r;
  EXPECT_EQ(field(r, "dropped"), 0u) << r;
}

// publish_batch across processes: two subscribers, batches of 1..64 of varying sizes, lossless: every message
// once, in order, checksums equal.
TEST(MultiProcessTest, BatchPublishIsLosslessAndInOrder) {
  TestDaemon daemon;
  constexpr int kMessages = 200000;
  ChildProcess s1({TEST_PEER_PATH, "subscribe", "mp/batch", std::to_string(kMessages)});
  ChildProcess s2({TEST_PEER_PATH, "subscribe", "mp/batch", std::to_string(kMessages)});
  ASSERT_EQ(s1.read_line(), "ready");
  ASSERT_EQ(s2.read_line(), "ready");
  ChildProcess p({TEST_PEER_PATH, "publish_batch", "mp/batch", std::to_string(kMessages), "300", "lossless",
                  "2", "5", "64"});
  const std::string published = p.read_line(300);
  EXPECT_EQ(p.wait(), 0);
  EXPECT_EQ(field(published, "published"), static_cast<uint64_t>(kMessages)) << published;
  for (ChildProcess* s : {&s1, &s2}) expect_every_message_once(s->read_line(300), published, kMessages);
}

// publish_batch of 16..300-byte messages on a topic that allows 4 KiB: a batch packs about 25 a slot
// (shm/packed_slot.h). A taking and a draining subscriber in their own processes get every message once, in
// order, with sequences 1, 2, 3... and equal checksums; the publisher and the daemon count messages, not
// slots.
TEST(MultiProcessTest, PackedBatchesReachTakersAndDrainersWhole) {
  TestDaemon daemon;
  constexpr int kMessages = 200000;
  ChildProcess taker({TEST_PEER_PATH, "subscribe", "mp/packed", std::to_string(kMessages)});
  ChildProcess drainer({TEST_PEER_PATH, "drain", "mp/packed", std::to_string(kMessages)});
  ASSERT_EQ(taker.read_line(), "ready");
  ASSERT_EQ(drainer.read_line(), "ready");
  ChildProcess p({TEST_PEER_PATH, "publish_batch", "mp/packed", std::to_string(kMessages), "300", "lossless",
                  "2", "9", "64", "4096"});
  const std::string published = p.read_line(300);
  EXPECT_EQ(p.wait(), 0);
  EXPECT_EQ(field(published, "published"), static_cast<uint64_t>(kMessages)) << published;
  for (ChildProcess* s : {&taker, &drainer})
    expect_every_message_once(s->read_line(300), published, kMessages);
}

TEST(PubSubTest, BatchPublishErrorsPublishNothing) {
  TestDaemon daemon;
  Bus bus = daemon.connect();
  PublisherOptions o;
  o.topic.depth = 8;
  o.topic.max_message_size = 64;
  o.topic.policy = Policy::kLossless;
  o.full_timeout = 50ms;
  auto pub = bus.publisher("batch/errors", o);
  auto sub = bus.subscriber("batch/errors");
  ASSERT_TRUE(sub.ok() && pub.ok());
  const std::string small = "hello", big(65, 'x');
  std::vector<std::span<const std::byte>> batch(5, std::as_bytes(std::span(small.data(), small.size())));
  batch[3] = std::as_bytes(std::span(big.data(), big.size()));
  auto r = pub->publish_batch(batch);
  EXPECT_EQ(r.status().code(), Errc::kMessageTooLarge);
  EXPECT_NE(r.status().message().find("message 3"), std::string::npos) << r.status().to_string();
  EXPECT_EQ(pub->published(), 0u) << "an invalid batch publishes nothing";
  batch[3] = batch[0];
  batch.resize(12, batch[0]);
  r = pub->publish_batch(batch);
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  EXPECT_EQ(*r, 8u) << "a lossless ring of 8 with a subscriber that reads nothing: 8 fit, the rest wait";
  r = pub->publish_batch(std::span(batch).subspan(8));
  EXPECT_EQ(r.status().code(), Errc::kTimeout) << "still full after full_timeout: nothing published";
  for (int i = 0; i < 8; ++i) {
    Sample m = sub->take(1s);
    ASSERT_TRUE(m);
    EXPECT_EQ(text_of(m), small);
    EXPECT_EQ(m.sequence(), static_cast<uint64_t>(i + 1));
  }
  r = pub->publish_batch(std::span(batch).subspan(8));
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(*r, 4u);
  {
    auto loan = pub->loan();
    ASSERT_TRUE(loan.ok());
    EXPECT_EQ(pub->publish_batch(batch).status().code(), Errc::kInvalidArgument) << "a loan is outstanding";
  }
  EXPECT_EQ(pub->publish_batch({}).value(), 0u);
}

TEST(MultiProcessTest, LargeMessagesAcrossProcesses) {
  TestDaemon daemon;
  ChildProcess sub({TEST_PEER_PATH, "subscribe", "mp/frames", "200"});
  ASSERT_EQ(sub.read_line(), "ready");
  ChildProcess pub({TEST_PEER_PATH, "publish", "mp/frames", "200", std::to_string(1 << 20), "lossless", "1"});
  const std::string published = pub.read_line(120);
  const std::string received = sub.read_line(120);
  EXPECT_EQ(field(received, "received"), 200u) << received;
  EXPECT_EQ(field(received, "checksum"), field(published, "checksum"));
  EXPECT_EQ(field(received, "corrupt"), 0u);
}

// Publish-to-take latency is sampled on one take in 64 (a clock read each; one in 16 cost a seventh of a
// drained message): takes 0, 64, 128... of a subscriber's life, whether taken one by one or drained; and,
// so that slow topics are sampled too, every message published a millisecond or more after the last sample.
// Read from the topic's shared memory, as the daemon reads it.
TEST(PubSubTest, LatencyIsSampledOnOneTakeIn64AndAfterALull) {
  TestDaemon daemon;
  Bus bus = daemon.connect();
  const TopicSettings topic{.max_message_size = 8, .depth = 8192, .policy = Policy::kLossless};
  auto sub = bus.subscriber("latency/sampling", {.topic = topic});
  auto pub = bus.publisher("latency/sampling", {.topic = topic});
  ASSERT_TRUE(sub.ok() && pub.ok());
  constexpr uint64_t kBurst = 5000;
  const std::array<std::byte, 8> m{};
  for (uint64_t i = 0; i < kBurst; ++i) ASSERT_TRUE(pub->publish(m).ok());
  uint64_t taken = 0;
  while (taken < kBurst / 2 && sub->try_take()) ++taken;
  taken += sub->drain(kBurst, [](const SampleView&) {});
  ASSERT_EQ(taken, kBurst);
  constexpr int kSlow = 3;  // takes 5000..5002: not one in 64, each published 2 ms after the take before
  for (int i = 0; i < kSlow; ++i) {
    std::this_thread::sleep_for(2ms);
    ASSERT_TRUE(pub->publish(m).ok());
    ASSERT_TRUE(sub->take(5s));
  }

  const OnlyTopic mapped(daemon);
  uint64_t histogram = 0, samples = 0;
  for (uint32_t s = 0; s < mapped.geometry.max_subscribers; ++s) {
    const shm::SubscriberSlot* slot = mapped.slot(s);
    for (const auto& bucket : slot->latency_ns) histogram += bucket.load(std::memory_order_relaxed);
    samples += slot->latency_samples.load(std::memory_order_acquire);
  }
  constexpr uint64_t kSampled = (kBurst + 63) / 64 + kSlow;  // takes 0, 64, ..., 4992, then the slow ones
  EXPECT_EQ(samples, kSampled);
  EXPECT_EQ(histogram, kSampled);
}

uint64_t latency_samples(const OnlyTopic& mapped) {
  uint64_t samples = 0;
  for (uint32_t s = 0; s < mapped.geometry.max_subscribers; ++s)
    samples += mapped.slot(s)->latency_samples.load(std::memory_order_acquire);
  return samples;
}

// A publisher told not to stamp (PublisherOptions::stamp_publish_time) publishes messages without a time,
// taken or drained, and they add no waiting-time sample (a zero stamp would read as a latency of the whole
// uptime); a stamping publisher's messages on the same topic still carry theirs and are sampled.
TEST(PubSubTest, MessagesOfAPublisherThatDoesNotStampCarryNoTimeAndAreNotSampled) {
  TestDaemon daemon;
  Bus bus = daemon.connect();
  const TopicSettings topic{.max_message_size = 8, .depth = 512, .policy = Policy::kLossless};
  auto sub = bus.subscriber("latency/unstamped", {.topic = topic});
  auto unstamped = bus.publisher("latency/unstamped", {.topic = topic, .stamp_publish_time = false});
  ASSERT_TRUE(sub.ok() && unstamped.ok());
  const std::array<std::byte, 8> m{};
  constexpr int kMessages = 200;  // takes 0, 64, 128, 192 would be sampled, and the first after each lull
  for (int i = 0; i < kMessages; ++i) ASSERT_TRUE(unstamped->publish(m).ok());
  const std::vector<std::byte> batch(8);
  const std::array<std::span<const std::byte>, 2> two{std::span(batch), std::span(batch)};
  auto sent = unstamped->publish_batch(two);
  ASSERT_TRUE(sent.ok() && *sent == 2u);
  int taken = 0;
  for (; taken < kMessages / 2; ++taken) {
    Sample s = sub->try_take();
    ASSERT_TRUE(s);
    EXPECT_FALSE(s.has_publish_time());
    EXPECT_EQ(s.publish_time(), std::chrono::steady_clock::time_point{});
  }
  taken += static_cast<int>(sub->drain(kMessages, [](const SampleView& v) {
    EXPECT_FALSE(v.has_publish_time());
    EXPECT_EQ(v.publish_time(), std::chrono::steady_clock::time_point{});
  }));
  ASSERT_EQ(taken, kMessages + 2);
  std::this_thread::sleep_for(2ms);  // a lull: the next take would be sampled by time
  ASSERT_TRUE(unstamped->publish(m).ok());
  ASSERT_TRUE(sub->take(5s));
  const OnlyTopic mapped(daemon);
  EXPECT_EQ(latency_samples(mapped), 0u);

  auto typed = bus.subscriber<uint64_t>("latency/unstamped", {.topic = topic});
  auto stamped = bus.publisher<uint64_t>("latency/unstamped", {.topic = topic});
  ASSERT_TRUE(typed.ok() && stamped.ok());
  const auto before = std::chrono::steady_clock::now();
  ASSERT_TRUE(stamped->publish(uint64_t{7}).ok());
  Sample s = sub->take(5s);
  ASSERT_TRUE(s);
  EXPECT_TRUE(s.has_publish_time());
  EXPECT_GE(s.publish_time(), before);
  EXPECT_LE(s.publish_time(), std::chrono::steady_clock::now());
  EXPECT_EQ(latency_samples(mapped), 1u);
  auto t = typed->take(5s);
  ASSERT_TRUE(t);
  EXPECT_EQ(*t, 7u);
  EXPECT_TRUE(t.has_publish_time());
}

}  // namespace
}  // namespace shmbus::test

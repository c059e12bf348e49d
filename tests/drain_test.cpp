// Subscriber::drain: many messages per call, no Sample each, through a real daemon and across processes.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <map>
#include <stdexcept>
#include <thread>

#include "shmbus/bus.h"
#include "shmbus/wait_set.h"
#include "support/peer_output.h"
#include "support/test_daemon.h"
#include "support/word_bytes.h"

namespace shmbus::test {
namespace {

using namespace std::chrono_literals;

// Drains everything ready now; returns the values (first 8 bytes) in the order they were handed over.
std::vector<uint64_t> drain_values(Subscriber& sub, std::size_t max, std::size_t* handed = nullptr) {
  std::vector<uint64_t> values;
  const std::size_t n = sub.drain(max, [&](const SampleView& v) {
    EXPECT_EQ(v.size(), sizeof(uint64_t));
    values.push_back(value_of(v.bytes()));
  });
  if (handed != nullptr) *handed = n;
  EXPECT_EQ(n, values.size()) << "drain returns what it handed over";
  return values;
}

// A daemon, and a subscriber and a publisher on one topic of `depth` slots.
struct OneTopic {
  TestDaemon daemon;
  Bus bus = daemon.connect();
  Subscriber sub;
  Publisher pub;
  OneTopic(const std::string& name, uint32_t depth, Policy policy) {
    PublisherOptions o;
    o.topic.depth = depth;
    o.topic.policy = policy;
    o.full_timeout = 50ms;
    auto s = bus.subscriber(name, {.topic = o.topic});
    auto p = bus.publisher(name, o);
    EXPECT_TRUE(s.ok() && p.ok()) << s.status().to_string() << " " << p.status().to_string();
    if (s.ok()) sub = std::move(s).value();
    if (p.ok()) pub = std::move(p).value();
  }
};

TEST(DrainTest, HandsOverInOrderUpToMaxWithMetadata) {
  OneTopic t("drain/order", 128, Policy::kLossless);
  Subscriber* sub = &t.sub;
  Publisher* pub = &t.pub;
  for (uint64_t i = 0; i < 100; ++i) ASSERT_TRUE(pub->publish(bytes_of(i)).ok());
  std::vector<uint64_t> sequences;
  const std::size_t n = sub->drain(30, [&](const SampleView& v) {
    EXPECT_EQ(value_of(v.bytes()), v.sequence() - 1);
    EXPECT_EQ(v.publisher_id(), pub->id());
    EXPECT_LE(v.publish_time(), std::chrono::steady_clock::now());
    EXPECT_TRUE(v.still_valid());
    sequences.push_back(v.sequence());
  });
  ASSERT_EQ(n, 30u) << "at most max";
  for (uint64_t i = 0; i < 30; ++i) EXPECT_EQ(sequences[i], i + 1);
  const auto rest = drain_values(*sub, 1000);
  ASSERT_EQ(rest.size(), 70u);
  for (uint64_t i = 0; i < 70; ++i) EXPECT_EQ(rest[i], 30 + i);
  EXPECT_EQ(drain_values(*sub, 1000).size(), 0u) << "nothing left: returns 0 at once";
  EXPECT_EQ(sub->taken(), 100u);
  EXPECT_FALSE(sub->try_take());
}

TEST(DrainTest, MixesWithTakeAndHeldSamples) {
  OneTopic t("drain/mixed", 64, Policy::kLossy);
  Subscriber* sub = &t.sub;
  Publisher* pub = &t.pub;
  for (uint64_t i = 0; i < 10; ++i) ASSERT_TRUE(pub->publish(bytes_of(i)).ok());
  Sample held = sub->try_take();
  ASSERT_TRUE(held);
  EXPECT_EQ(value_of(held.bytes()), 0u);
  const auto drained = drain_values(*sub, 5);
  EXPECT_EQ(drained, (std::vector<uint64_t>{1, 2, 3, 4, 5}));
  EXPECT_EQ(value_of(held.bytes()), 0u) << "a held sample is untouched by drain";
  Sample next = sub->try_take();
  ASSERT_TRUE(next);
  EXPECT_EQ(value_of(next.bytes()), 6u);
  EXPECT_EQ(drain_values(*sub, 100), (std::vector<uint64_t>{7, 8, 9}));
}

TEST(DrainTest, FreesRoomForABlockedLosslessPublisher) {
  OneTopic t("drain/lossless", 8, Policy::kLossless);
  Subscriber* sub = &t.sub;
  Publisher* pub = &t.pub;
  uint64_t sent = 0;
  while (pub->publish(bytes_of(sent)).ok()) ++sent;
  ASSERT_EQ(sent, 8u);
  EXPECT_EQ(drain_values(*sub, 3), (std::vector<uint64_t>{0, 1, 2}));
  for (uint64_t i = 0; i < 3; ++i) {
    EXPECT_TRUE(pub->publish(bytes_of(sent++)).ok()) << "drain gave the consumed slots back";
  }
  EXPECT_EQ(pub->publish(bytes_of(sent)).code(), Errc::kTimeout) << "and no more than those";
  const auto rest = drain_values(*sub, 100);
  ASSERT_EQ(rest.size(), 8u);
  for (uint64_t i = 0; i < rest.size(); ++i) EXPECT_EQ(rest[i], 3 + i);
}

// drain hands a ring's ready slots over in runs of at most 64, found in one pass each: a drain longer than a
// run, short of a run's end, and across the ring's wrap keeps the order and the count.
TEST(DrainTest, RunsLongerThanOnePassAndAcrossTheRingsWrapKeepOrder) {
  OneTopic t("drain/runs", 256, Policy::kLossless);
  uint64_t next_sent = 0, next_expected = 0;
  // 7 rounds of 200 in a 256-slot ring: the rounds wrap it; drain takes them as 150 (two runs and a part),
  // then what is left, and then nothing.
  for (int round = 0; round < 7; ++round) {
    for (int i = 0; i < 200; ++i) ASSERT_TRUE(t.pub.publish(bytes_of(next_sent++)).ok());
    for (const std::size_t max : {std::size_t{150}, std::size_t{1000}, std::size_t{10}}) {
      for (uint64_t v : drain_values(t.sub, max)) ASSERT_EQ(v, next_expected++) << "round " << round;
    }
    ASSERT_EQ(next_expected, next_sent) << "round " << round << ": drain left messages behind";
  }
  EXPECT_EQ(t.sub.taken(), 1400u);
}

// A callback that throws stops the drain: what it consumed before is counted and gone, the message it threw
// on is handed over again, and the lossless publisher gets the consumed slots back.
TEST(DrainTest, ACallbackThatThrowsConsumesOnlyWhatWentBefore) {
  OneTopic t("drain/throw", 16, Policy::kLossless);
  for (uint64_t i = 0; i < 16; ++i) ASSERT_TRUE(t.pub.publish(bytes_of(i)).ok());
  EXPECT_EQ(t.pub.publish(bytes_of(99)).code(), Errc::kTimeout) << "the ring is full";
  std::vector<uint64_t> seen;
  EXPECT_THROW(t.sub.drain(100,
                           [&](const SampleView& v) {
                             if (value_of(v.bytes()) == 5) throw std::runtime_error("five");
                             seen.push_back(value_of(v.bytes()));
                           }),
               std::runtime_error);
  EXPECT_EQ(seen, (std::vector<uint64_t>{0, 1, 2, 3, 4}));
  EXPECT_EQ(t.sub.taken(), 5u);
  for (uint64_t i = 16; i < 21; ++i) ASSERT_TRUE(t.pub.publish(bytes_of(i)).ok()) << "slot of #" << i - 16;
  const auto rest = drain_values(t.sub, 100);
  ASSERT_EQ(rest.size(), 16u);
  for (uint64_t i = 0; i < rest.size(); ++i) EXPECT_EQ(rest[i], 5 + i);
  EXPECT_EQ(t.sub.taken(), 21u);
}

// Runs stop at a quarter ring: a lossless publisher blocked on a full ring gets room while the callbacks of
// one drain call still run, a quarter at a time.
TEST(DrainTest, ABlockedPublisherGetsRoomEveryQuarterRingWithinOneDrain) {
  OneTopic t("drain/quarter", 16, Policy::kLossless);
  for (uint64_t i = 0; i < 16; ++i) ASSERT_TRUE(t.pub.publish(bytes_of(i)).ok());
  int index = 0;
  bool room_after_8 = false;
  const std::size_t n = t.sub.drain(100, [&](const SampleView&) {
    if (index++ == 8) room_after_8 = t.pub.publish(bytes_of(100)).ok();
  });
  EXPECT_TRUE(room_after_8) << "8 consumed (two quarters) and the publisher got no room";
  EXPECT_EQ(n, 17u) << "the 16, and the one published from the callback";
}

// A lossy publisher that laps the reader while a run's callbacks run: the run ends at the first overwritten
// view, the lap is counted in dropped(), and every message is handed over or counted once, never twice.
TEST(DrainTest, ALapDuringARunIsCountedNotHandedOverTwice) {
  OneTopic t("drain/lossylap", 8, Policy::kLossy);
  for (uint64_t i = 0; i < 8; ++i) ASSERT_TRUE(t.pub.publish(bytes_of(i)).ok());
  std::vector<uint64_t> sequences;
  bool lapped = false;
  std::size_t n = 0;
  for (int call = 0; call < 3; ++call) {
    n += t.sub.drain(100, [&](const SampleView& v) {
      EXPECT_TRUE(v.still_valid()) << "#" << v.sequence() << " was handed over already overwritten";
      EXPECT_EQ(value_of(v.bytes()), v.sequence() - 1);
      sequences.push_back(v.sequence());
      if (!lapped) {  // inside the first callback: 8 more lap the 8-slot ring
        lapped = true;
        for (uint64_t i = 8; i < 16; ++i) ASSERT_TRUE(t.pub.publish(bytes_of(i)).ok());
      }
    });
  }
  EXPECT_EQ(n, sequences.size());
  // #1 handed over; #2..#9 overwritten (counted); #10..#16 handed over.
  std::vector<uint64_t> expected{1};
  for (uint64_t s = 10; s <= 16; ++s) expected.push_back(s);
  EXPECT_EQ(sequences, expected);
  EXPECT_EQ(t.sub.taken(), 8u);
  EXPECT_EQ(t.sub.dropped(), 8u);
}

std::size_t handed_to_function = 0;
void count_in_function(const SampleView& v) {
  handed_to_function += v.size() == sizeof(uint64_t) ? 1 : 0;
}

TEST(DrainTest, TakesPlainFunctionsAndCannotBeReenteredFromItsCallback) {
  OneTopic t("drain/reenter", 64, Policy::kLossless);
  Subscriber* sub = &t.sub;
  Publisher* pub = &t.pub;
  for (uint64_t i = 0; i < 10; ++i) ASSERT_TRUE(pub->publish(bytes_of(i)).ok());
  handed_to_function = 0;
  EXPECT_EQ(sub->drain(3, count_in_function), 3u);
  EXPECT_EQ(handed_to_function, 3u);
  std::vector<uint64_t> seen;
  const std::size_t n = sub->drain(100, [&](const SampleView& v) {
    seen.push_back(value_of(v.bytes()));
    // From inside, the subscriber hands out nothing: the view's mapping and the reader must stay as they are.
    EXPECT_FALSE(sub->try_take());
    EXPECT_FALSE(sub->has_data());
    EXPECT_EQ(sub->drain(10, [](const SampleView&) { ADD_FAILURE() << "re-entered"; }), 0u);
  });
  EXPECT_EQ(n, 7u);
  EXPECT_EQ(seen, (std::vector<uint64_t>{3, 4, 5, 6, 7, 8, 9}));
  EXPECT_EQ(sub->taken(), 10u);
}

TEST(DrainTest, LappedLossyReaderCountsEveryLossExactly) {
  OneTopic t("drain/lossy", 16, Policy::kLossy);
  Subscriber* sub = &t.sub;
  Publisher* pub = &t.pub;
  constexpr uint64_t kSent = 100000;
  uint64_t received = 0, last = 0;
  for (uint64_t i = 0; i < kSent; ++i) {
    ASSERT_TRUE(pub->publish(bytes_of(i)).ok());
    if (i % 1000 == 999) {  // a reader that looks far too rarely: lapped between looks
      for (uint64_t v : drain_values(*sub, 7)) {
        EXPECT_TRUE(received == 0 || v > last);
        last = v;
        ++received;
      }
    }
  }
  for (;;) {
    const auto values = drain_values(*sub, 7);
    if (values.empty()) break;
    for (uint64_t v : values) {
      EXPECT_TRUE(received == 0 || v > last);
      last = v;
      ++received;
    }
  }
  EXPECT_EQ(last, kSent - 1);
  EXPECT_GT(sub->dropped(), 0u);
  EXPECT_EQ(received + sub->dropped(), kSent) << "every message is either handed over or counted as dropped";
  EXPECT_EQ(sub->taken(), received);
}

// One drain call hands over what every publisher has ready: a run that catches up with one ring ends the
// call only when that ring is the only one (another begin_run would find nothing more, or a publisher that
// joined during the call, which the next call then finds).
TEST(DrainTest, OneCallTakesWhatEveryPublisherHasReady) {
  TestDaemon daemon;
  Bus bus = daemon.connect();
  PublisherOptions o;
  o.topic.max_publishers = 3;
  auto sub = bus.subscriber("drain/every", {.topic = o.topic});
  ASSERT_TRUE(sub.ok());
  std::vector<Publisher> pubs;
  for (int p = 0; p < 3; ++p) {
    auto pub = bus.publisher("drain/every", o);
    ASSERT_TRUE(pub.ok());
    pubs.push_back(std::move(pub).value());
  }
  for (uint64_t i = 0; i < 5; ++i) {
    for (auto& pub : pubs) ASSERT_TRUE(pub.publish(bytes_of(i)).ok());
  }
  std::map<uint64_t, uint64_t> counts;
  const std::size_t n = sub->drain(100, [&](const SampleView& v) { ++counts[v.publisher_id()]; });
  EXPECT_EQ(n, 15u) << "all three rings in one call";
  for (auto& pub : pubs) EXPECT_EQ(counts[pub.id()], 5u);
  ASSERT_TRUE(pubs[1].publish(bytes_of(5)).ok());
  EXPECT_EQ(drain_values(*sub, 100), std::vector<uint64_t>{5});
  EXPECT_EQ(drain_values(*sub, 100).size(), 0u);
}

// Two publisher threads and a draining thread: each publisher's messages once, in order (run under TSan).
TEST(DrainTest, ThreadedPublishersLosslessInOrder) {
  TestDaemon daemon;
  Bus bus = daemon.connect();
  PublisherOptions o;
  o.topic.depth = 64;
  o.topic.policy = Policy::kLossless;
  o.full_timeout = 10s;
  auto sub = bus.subscriber("drain/threads", {.topic = o.topic});
  ASSERT_TRUE(sub.ok());
  constexpr uint64_t kPerPublisher = 100000;
  std::vector<std::thread> publishers;
  std::vector<uint64_t> ids(2);
  for (int t = 0; t < 2; ++t) {
    auto pub = bus.publisher("drain/threads", o);
    ASSERT_TRUE(pub.ok());
    ids[t] = pub->id();
    publishers.emplace_back([p = std::move(pub).value()]() mutable {
      for (uint64_t i = 0; i < kPerPublisher; ++i) ASSERT_TRUE(p.publish(bytes_of(i)).ok());
    });
  }
  std::map<uint64_t, uint64_t> next;  // per publisher id: the value expected next
  uint64_t received = 0, out_of_order = 0;
  WaitSet ready;
  ready.add(*sub);
  const auto give_up = std::chrono::steady_clock::now() + 120s;
  while (received < 2 * kPerPublisher && std::chrono::steady_clock::now() < give_up) {
    const std::size_t n = sub->drain(50, [&](const SampleView& v) {
      uint64_t& expected = next[v.publisher_id()];
      if (value_of(v.bytes()) != expected) ++out_of_order;
      expected = value_of(v.bytes()) + 1;
      ++received;
    });
    if (n == 0) (void)ready.wait(100ms);
  }
  for (auto& t : publishers) t.join();
  EXPECT_EQ(received, 2 * kPerPublisher);
  EXPECT_EQ(out_of_order, 0u);
  EXPECT_EQ(next[ids[0]], kPerPublisher);
  EXPECT_EQ(next[ids[1]], kPerPublisher);
  EXPECT_EQ(sub->dropped(), 0u);
}

// Real processes: a publish and a publish_batch publisher, one subscriber draining and one taking; both
// receive every message once, in order, with equal checksums.
TEST(DrainMultiProcessTest, DrainingAndTakingSubscribersAgree) {
  TestDaemon daemon;
  constexpr int kPerPublisher = 100000;
  ChildProcess drainer({TEST_PEER_PATH, "drain", "mp/drain", std::to_string(2 * kPerPublisher)});
  ChildProcess taker({TEST_PEER_PATH, "subscribe", "mp/drain", std::to_string(2 * kPerPublisher)});
  ASSERT_EQ(drainer.read_line(), "ready");
  ASSERT_EQ(taker.read_line(), "ready");
  ChildProcess p1(
      {TEST_PEER_PATH, "publish", "mp/drain", std::to_string(kPerPublisher), "200", "lossless", "2", "11"});
  ChildProcess p2({TEST_PEER_PATH, "publish_batch", "mp/drain", std::to_string(kPerPublisher), "200",
                   "lossless", "2", "22", "64"});
  const std::string o1 = p1.read_line(300), o2 = p2.read_line(300);
  EXPECT_EQ(p1.wait(), 0);
  EXPECT_EQ(p2.wait(), 0);
  const uint64_t sum = field(o1, "checksum") + field(o2, "checksum");
  for (ChildProcess* s : {&drainer, &taker}) {
    const std::string r = s->read_line(300);
    EXPECT_EQ(field(r, "received"), 2u * kPerPublisher) << r;
    EXPECT_EQ(field(r, "checksum"), sum) << r;
    EXPECT_EQ(field(r, "order_errors"), 0u) << r;
    EXPECT_EQ(field(r, "corrupt"), 0u) << r;
    EXPECT_EQ(field(r, "dropped"), 0u) << r;
  }
}

}  // namespace
}  // namespace shmbus::test

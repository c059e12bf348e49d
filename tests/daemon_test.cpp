// shmbusd's life cycle: one per instance, clean shutdown, recovery after kill -9, reclaiming dead
// participants.
#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <toml++/toml.h>
#include <array>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <initializer_list>
#include <optional>
#include <thread>
#include <vector>

#include "shm/segment.h"
#include "shmbus/work_queue.h"
#include "support/peer_output.h"
#include "support/test_daemon.h"

namespace shmbus::test {
namespace {

using namespace std::chrono_literals;

toml::table stats_of(const TestDaemon& d) {
  return toml::parse(d.statistics());
}

TEST(DaemonTest, SecondDaemonOnTheSameInstanceIsRefused) {
  TestDaemon daemon;
  const auto r = run_process({"/bin/sh", "-c",
                              std::string(SHMBUSD_PATH) + " --instance " + daemon.instance() +
                                  " --runtime-dir " + daemon.runtime_dir() + " 2>&1"},
                             10);
  EXPECT_EQ(r.status, 1);
  // A clear message naming the running daemon's pid, not just a non-zero exit.
  EXPECT_NE(r.out.find(std::to_string(daemon.pid())), std::string::npos) << r.out;
  // The first one is unharmed.
  EXPECT_TRUE(Bus::connect().ok());
}

TEST(DaemonTest, SigtermLeavesNoSegmentAndNoSocket) {
  TestDaemon daemon;
  {
    Bus bus = daemon.connect();
    auto pub = bus.publisher("leftover/check");
    auto sub = bus.subscriber("leftover/other");
    ASSERT_TRUE(pub.ok() && sub.ok());
    EXPECT_EQ(daemon.segments().size(), 2u);
    EXPECT_EQ(daemon.stop(SIGTERM), 0);
    EXPECT_TRUE(daemon.segments().empty());
    EXPECT_FALSE(std::filesystem::exists(daemon.socket_path()));
    EXPECT_TRUE(sub->closed()) << "subscribers learn that the daemon closed the topic";
    EXPECT_FALSE(sub->take(10ms));
  }
  ASSERT_TRUE(daemon.start());
  EXPECT_EQ(daemon.stop(SIGINT), 0);
  EXPECT_TRUE(daemon.segments().empty());
}

// Publishes on `pub` and takes from each of `subs` until every one has received a message (false after 5 s):
// endpoints that lost their daemon re-open at their next use, retrying while that fails.
bool flows(Publisher& pub, std::initializer_list<Subscriber*> subs) {
  const std::array<std::byte, 8> m{};
  const auto deadline = std::chrono::steady_clock::now() + 5s;
  std::vector<bool> got(subs.size(), false);
  while (std::chrono::steady_clock::now() < deadline) {
    (void)pub.publish(m);
    std::size_t i = 0, done = 0;
    for (Subscriber* s : subs) {
      if (!got[i] && s->take(5ms)) got[i] = true;
      done += got[i++];
    }
    if (done == subs.size()) return true;
  }
  return false;
}

// A daemon stopped with SIGTERM takes its topics with it, so its successor cannot hand them back: publishers
// and subscribers re-open their topics by themselves at their next use, and messages flow again.
TEST(DaemonTest, EndpointsReopenThemselvesAfterARestartThatLostTheirTopic) {
  TestDaemon daemon;
  Bus bus = daemon.connect();
  auto pub = bus.publisher("lost/topic");
  auto sub = bus.subscriber("lost/topic");
  auto sub2 = bus.subscriber("lost/topic");
  ASSERT_TRUE(pub.ok() && sub.ok() && sub2.ok());
  ASSERT_TRUE(flows(*pub, {&*sub, &*sub2}));
  EXPECT_EQ(daemon.stop(SIGTERM), 0);
  EXPECT_TRUE(sub->closed());
  const std::array<std::byte, 8> m{};
  EXPECT_EQ(pub->publish(m).code(), Errc::kDaemonUnavailable) << "no daemon to re-open the topic with";
  EXPECT_FALSE(sub->take(10ms));
  ASSERT_TRUE(daemon.start());
  EXPECT_TRUE(flows(*pub, {&*sub, &*sub2})) << "no flow after the daemon restarted";
  EXPECT_FALSE(sub->closed());
  const auto stats = toml::parse(daemon.statistics());
  EXPECT_EQ(stats["topic"][0]["name"].value<std::string>(), "lost/topic");
  EXPECT_EQ(stats["topic"][0]["publishers"].value<int64_t>(), 1);
  EXPECT_EQ(stats["topic"][0]["subscribers"].value<int64_t>(), 2);
  pub = Publisher(), sub = Subscriber(), sub2 = Subscriber();
  const auto after = toml::parse(daemon.statistics());
  const toml::array* people = after["participant"].as_array();
  ASSERT_NE(people, nullptr);
  for (const toml::node& p : *people) {
    const toml::node_view<const toml::node> v{p};
    if (v["name"].value<std::string>() == "test") {
      EXPECT_EQ(v["endpoints"].value<int64_t>(), 0) << "every re-opened endpoint was closed";
    }
  }
}

// The same when the topic is lost without being closed (a kill -9 and its segment gone): the reconnect at
// the next control call finds the new daemon without it, and the endpoints re-open.
TEST(DaemonTest, EndpointsReopenThemselvesWhenTheRestartedDaemonCannotAdoptTheirTopic) {
  TestDaemon daemon;
  Bus bus = daemon.connect();
  auto pub = bus.publisher("vanished/topic");
  auto sub = bus.subscriber("vanished/topic");
  ASSERT_TRUE(pub.ok() && sub.ok());
  ASSERT_TRUE(flows(*pub, {&*sub}));
  EXPECT_EQ(daemon.stop(SIGKILL), 128 + SIGKILL);
  for (const auto& s : daemon.segments()) shm::Segment::remove(s);
  ASSERT_TRUE(daemon.start());
  // A control call: the Bus reconnects, and the new daemon does not know its endpoints' topic.
  ASSERT_TRUE(bus.daemon_statistics().ok());
  EXPECT_TRUE(flows(*pub, {&*sub})) << "no flow after the daemon restarted without the topic";
  const auto stats = toml::parse(daemon.statistics());
  EXPECT_EQ(stats["topic"][0]["publishers"].value<int64_t>(), 1);
  EXPECT_EQ(stats["topic"][0]["subscribers"].value<int64_t>(), 1);
}

// A restarted daemon may shape a publisher's topic smaller than before: publish() must re-open first and
// check the size against the new topic, never copy into a slot shorter than the message.
TEST(DaemonTest, PublishReopensBeforeCheckingTheSizeOnARestartedDaemon) {
  TestDaemon daemon;
  Bus bus = daemon.connect();
  PublisherOptions big;
  big.topic.max_message_size = 1024;
  auto shaper = bus.publisher("shrunk/topic", big);
  auto pub = bus.publisher("shrunk/topic");  // no settings of its own: it takes the topic's
  ASSERT_TRUE(shaper.ok() && pub.ok());
  const std::vector<std::byte> message(1000, std::byte{0x5a});
  ASSERT_TRUE(pub->publish(message).ok());
  shaper = Publisher();
  EXPECT_EQ(daemon.stop(SIGTERM), 0);
  ASSERT_TRUE(daemon.start());
  PublisherOptions small;
  small.topic.max_message_size = 64;
  auto new_shaper = bus.publisher("shrunk/topic", small);  // the successor's topic is 64 bytes wide
  ASSERT_TRUE(new_shaper.ok()) << new_shaper.status().to_string();
  auto sub = bus.subscriber("shrunk/topic");
  ASSERT_TRUE(sub.ok());
  EXPECT_EQ(pub->publish(message).code(), Errc::kMessageTooLarge);
  EXPECT_EQ(pub->max_message_size(), 64u) << "re-opened on the new topic";
  const std::vector<std::byte> fits(64, std::byte{0x33});
  ASSERT_TRUE(pub->publish(fits).ok());
  Sample m = sub->take(5s);
  ASSERT_TRUE(m);
  EXPECT_EQ(m.size(), 64u);
  EXPECT_EQ(std::memcmp(m.data(), fits.data(), fits.size()), 0);
  const std::vector<std::span<const std::byte>> batch{fits, message};
  EXPECT_EQ(pub->publish_batch(batch).status().code(), Errc::kMessageTooLarge);
}

// A subscriber whose topic a publisher reshaped (the daemon reserved it a slot in the new topic) leaves
// before it followed: the daemon detaches the reservation and removes the topic nobody uses now. It used to
// do that while walking its topic table (a use after free, a crash under ASan), so it must still answer.
TEST(DaemonTest, SubscriberLeavingBeforeItFollowedAReshapeIsForgotten) {
  TestDaemon daemon;
  {
    Bus subscriber_bus = daemon.connect("leaver");
    auto sub = subscriber_bus.subscriber("reshape/leave");  // creates the topic with defaults
    ASSERT_TRUE(sub.ok()) << sub.status().to_string();
    {
      Bus publisher_bus = daemon.connect("reshaper");
      PublisherOptions o;
      o.topic.max_message_size = 100000;
      auto pub = publisher_bus.publisher("reshape/leave", o);
      ASSERT_TRUE(pub.ok()) << pub.status().to_string();
    }  // the publisher leaves; the new topic holds only the subscriber's reservation
  }    // and the subscriber's connection closes without its having re-opened
  const auto deadline = std::chrono::steady_clock::now() + 10s;
  while (!daemon.segments().empty() && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(10ms);
  EXPECT_TRUE(daemon.segments().empty()) << "both shapes of the topic are removed";
  Bus bus = daemon.connect();
  auto again = bus.publisher("reshape/leave");
  EXPECT_TRUE(again.ok()) << "the daemon still serves: " << again.status().to_string();
  EXPECT_EQ(kill(daemon.pid(), 0), 0);
}

// A Bus with a 2 s control timeout (long enough for a loaded machine once the daemon runs again) that made
// `call` while the daemon was stopped (SIGSTOP): the call times out, and the daemon, continued, answers it
// late. Returns the Bus, which meets the late answer at its next call.
template <typename Call>
std::optional<Bus> bus_after_a_late_call(TestDaemon& daemon, Call call) {
  BusOptions o;
  o.name = "impatient";
  o.control_timeout = 2s;
  auto bus = Bus::connect(o);
  EXPECT_TRUE(bus.ok()) << bus.status().to_string();
  if (!bus.ok() || kill(daemon.pid(), SIGSTOP) != 0) return std::nullopt;
  const Status late = call(*bus);
  EXPECT_EQ(kill(daemon.pid(), SIGCONT), 0);
  EXPECT_EQ(late.code(), Errc::kTimeout) << late.to_string();
  return std::move(bus).value();
}

// A daemon that answers after the caller's timeout: the late answer is skipped, not taken for the next
// request's (which left the connection one answer behind, every call failing, for good), and the subscriber
// the late open created after all is closed again.
TEST(DaemonTest, AnAnswerAfterTheTimeoutIsSkippedAndALateOpenClosed) {
  TestDaemon daemon;
  auto bus = bus_after_a_late_call(daemon, [](Bus& b) { return b.subscriber("late/answer").status(); });
  ASSERT_TRUE(bus);
  auto sub = bus->subscriber("late/answer");
  ASSERT_TRUE(sub.ok()) << "the next call gets its own answer: " << sub.status().to_string();
  auto pub = bus->publisher("late/answer");
  ASSERT_TRUE(pub.ok()) << pub.status().to_string();
  const std::array<std::byte, 8> m{std::byte{42}};
  ASSERT_TRUE(pub->publish(m).ok());
  Sample got = sub->take(5s);
  ASSERT_TRUE(got);
  EXPECT_EQ(got.data()[0], std::byte{42});
  const auto stats = stats_of(daemon);
  EXPECT_EQ(stats["topic"][0]["subscribers"].value<int64_t>(), 1) << "the late open's subscriber is closed";
  const auto statistics = bus->daemon_statistics();
  EXPECT_TRUE(statistics.ok()) << statistics.status().to_string();
}

// The first control call after a daemon restart is a close: it reconnects, the endpoint is reclaimed from
// the new daemon and then closed. (It was unregistered before the close, so the new daemon kept it as an
// orphan of this live process: a subscriber slot, on a lossless topic a gate, held until the process exits.)
TEST(DaemonTest, AnEndpointClosedFirstAfterADaemonRestartIsClosedNotOrphaned) {
  TestDaemon daemon;
  Bus bus = daemon.connect();
  auto pub = bus.publisher("restart/close");
  auto sub = bus.subscriber("restart/close");
  ASSERT_TRUE(pub.ok() && sub.ok());
  EXPECT_EQ(daemon.stop(SIGKILL), 128 + SIGKILL);
  ASSERT_TRUE(daemon.start());  // adopts the topic from shared memory, its endpoints as orphans
  *sub = Subscriber();          // the close is the first call to reach the new daemon
  int64_t subscribers = -1;
  const auto deadline = std::chrono::steady_clock::now() + 5s;
  do {
    const auto stats = stats_of(daemon);
    subscribers = stats["topic"][0]["subscribers"].value_or<int64_t>(-1);
    if (subscribers == 0) break;
    std::this_thread::sleep_for(20ms);
  } while (std::chrono::steady_clock::now() < deadline);
  EXPECT_EQ(subscribers, 0) << "the closed subscriber is still held by the new daemon";
}

// The same for a work queue opened late: the producer endpoint that the timed-out open created after all is
// closed with the next call, and the queue nobody uses is gone.
TEST(DaemonTest, ALateQueueOpenIsClosedAtTheNextCall) {
  TestDaemon daemon;
  auto bus = bus_after_a_late_call(daemon, [](Bus& b) { return b.queue_producer("late/queue").status(); });
  ASSERT_TRUE(bus);
  auto other =
      bus->publisher("late/other");  // the next call: it meets the late answer and closes its producer
  ASSERT_TRUE(other.ok()) << other.status().to_string();
  int64_t endpoints = -1;
  const auto stats = stats_of(daemon);
  if (const toml::array* queues = stats["queue"].as_array()) {
    endpoints = 0;
    for (const toml::node& q : *queues) {
      const toml::node_view<const toml::node> v{q};
      if (v["name"].value<std::string>() == "late/queue") endpoints += v["endpoints"].value_or<int64_t>(0);
    }
  }
  EXPECT_EQ(endpoints, 0) << "the late producer still holds the queue";
}

TEST(DaemonTest, RestartAfterKill9RemovesWhatDeadProcessesLeft) {
  TestDaemon daemon;
  ChildProcess loaner({TEST_PEER_PATH, "loan", "crash/topic"});
  ASSERT_EQ(loaner.read_line(), "loaned");
  EXPECT_EQ(daemon.stop(SIGKILL), 128 + SIGKILL);
  loaner.kill(SIGKILL);
  loaner.wait();
  EXPECT_EQ(daemon.segments().size(), 1u) << "kill -9 leaves the segment behind";
  ASSERT_TRUE(daemon.start());
  const auto deadline = std::chrono::steady_clock::now() + 5s;
  while (!daemon.segments().empty() && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(10ms);
  EXPECT_TRUE(daemon.segments().empty()) << "the next daemon found the publisher dead and removed its topic";
  Bus bus = daemon.connect();
  EXPECT_TRUE(bus.publisher("crash/topic").ok());
}

// kill -9 of the daemon under load: established topics keep flowing; a restarted daemon adopts them, clients
// reconnect by themselves, and new endpoints join the same topics (no split brain).
TEST(DaemonTest, Kill9OfTheDaemonUnderLoadIsSurvived) {
  TestDaemon daemon;
  Bus bus = daemon.connect();
  PublisherOptions o;
  o.topic.policy = Policy::kLossless;
  auto pub = bus.publisher("survive/topic", o);
  ASSERT_TRUE(pub.ok());
  ChildProcess remote({TEST_PEER_PATH, "subscribe", "survive/topic", "3000", "20"});
  ASSERT_EQ(remote.read_line(), "ready");
  auto send = [&](uint64_t i) {
    std::array<std::byte, 64> m{};
    std::memcpy(m.data(), &i, sizeof i);
    std::memcpy(m.data() + 8, &i, sizeof i);  // test_peer's pattern starts at byte 16
    ASSERT_TRUE(pub->publish(m).ok());
  };
  for (uint64_t i = 0; i < 1000; ++i) send(i);
  EXPECT_EQ(daemon.stop(SIGKILL), 128 + SIGKILL);
  for (uint64_t i = 1000; i < 2000; ++i) send(i);  // no daemon: the data path does not need it
  ASSERT_TRUE(daemon.start());
  for (uint64_t i = 2000; i < 3000; ++i) send(i);
  const std::string r = remote.read_line(60);
  EXPECT_EQ(field(r, "received"), 3000u) << r;
  EXPECT_EQ(field(r, "order_errors"), 0u) << r;
  // A newcomer after the restart joins the adopted topic and hears the old publisher.
  auto late = bus.subscriber("survive/topic");  // reconnects to the new daemon first
  ASSERT_TRUE(late.ok()) << late.status().to_string();
  send(3000);
  EXPECT_TRUE(late->take(5s));
  const auto stats = toml::parse(daemon.statistics());
  EXPECT_EQ(stats["topic"][0]["name"].value<std::string>(), "survive/topic");
  EXPECT_EQ(stats["topic"][0]["publishers"].value<int64_t>(), 1);
  EXPECT_EQ(daemon.segments().size(), 1u);
}

TEST(DaemonTest, UnusedTopicsAreRemoved) {
  TestDaemon daemon;
  Bus bus = daemon.connect();
  {
    auto pub = bus.publisher("short/lived");
    ASSERT_TRUE(pub.ok());
    EXPECT_EQ(daemon.segments().size(), 1u);
  }
  const auto deadline = std::chrono::steady_clock::now() + 5s;
  while (!daemon.segments().empty() && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(10ms);
  EXPECT_TRUE(daemon.segments().empty());
}

TEST(DaemonTest, BadConfigIsRefusedNamingTheLine) {
  TestDaemon daemon;
  const std::string path = daemon.runtime_dir() + "/bad.toml";
  { std::ofstream(path) << "[defaults]\nmax_message_size = -5\n"; }
  const auto r = run_process({SHMBUSD_PATH, "--instance", daemon.instance() + "b", "--runtime-dir",
                              daemon.runtime_dir(), "--config", path},
                             10);
  EXPECT_EQ(r.status, 2);
}

TEST(DaemonTest, ConfigRulesSetTopicSettings) {
  TestDaemon daemon(
      "[defaults]\ndepth = 32\n[[topic]]\npattern = \"camera/**\"\nmax_message_size = 65536\n"
      "policy = \"lossless\"\ndepth = 4\n");
  Bus bus = daemon.connect();
  auto cam = bus.publisher("camera/front/left");
  ASSERT_TRUE(cam.ok());
  EXPECT_EQ(cam->max_message_size(), 65536u);
  PublisherOptions lossy;
  lossy.topic.policy = Policy::kLossy;
  EXPECT_EQ(bus.publisher("camera/rear", lossy).status().code(), Errc::kIncompatibleSettings);
  auto other = bus.publisher("imu");
  ASSERT_TRUE(other.ok());
  const auto s = stats_of(daemon);
  bool seen = false;
  for (const auto& t : *s["topic"].as_array()) {
    if (t.as_table()->at("name").value<std::string>() == "imu") {
      EXPECT_EQ(t.as_table()->at("depth").value<int64_t>(), 32);
      seen = true;
    }
  }
  EXPECT_TRUE(seen);
}

// kill -9 of a subscriber that holds messages of a lossless topic: the daemon notices within a second, its
// cursor stops gating, the blocked publisher moves on, and the held slots count returns to zero.
TEST(ReclaimTest, KilledSubscriberHoldingMessagesIsReclaimed) {
  TestDaemon daemon;
  Bus bus = daemon.connect();
  PublisherOptions o;
  o.topic.policy = Policy::kLossless;
  o.topic.depth = 8;
  o.full_timeout = 100ms;
  auto pub = bus.publisher("reclaim/sub", o);
  ASSERT_TRUE(pub.ok());
  auto survivor = bus.subscriber("reclaim/sub");
  ASSERT_TRUE(survivor.ok());
  ChildProcess holder({TEST_PEER_PATH, "hold", "reclaim/sub", "3"});
  ASSERT_EQ(holder.read_line(), "ready");
  for (uint64_t i = 0; i < 3; ++i) ASSERT_TRUE(pub->publish(std::as_bytes(std::span(&i, 1))).ok());
  ASSERT_EQ(holder.read_line(), "holding");
  // Fill the ring: the holder pins position 0, so 8 messages fit and the 9th times out.
  uint64_t sent = 3;
  for (; sent < 20; ++sent) {
    if (!pub->publish(std::as_bytes(std::span(&sent, 1))).ok()) break;
    ASSERT_TRUE(survivor->take(1s));  // the survivor keeps up
  }
  EXPECT_EQ(sent, 8u);
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(survivor->take(1s));
  auto before = stats_of(daemon);
  EXPECT_EQ(before["topic"][0]["slots_in_use"].value<int64_t>(), 8);
  EXPECT_EQ(before["topic"][0]["subscribers"].value<int64_t>(), 2);
  holder.kill(SIGKILL);
  EXPECT_EQ(holder.wait(), 128 + SIGKILL);
  const auto deadline = std::chrono::steady_clock::now() + 1s;
  bool flowing = false;
  while (!flowing && std::chrono::steady_clock::now() < deadline) {
    flowing = pub->publish(std::as_bytes(std::span(&sent, 1))).ok();
  }
  EXPECT_TRUE(flowing) << "the publisher moved on within 1 s of the kill";
  ASSERT_TRUE(survivor->take(1s));
  EXPECT_FALSE(survivor->try_take());  // caught up: its cursor is published
  auto after = stats_of(daemon);
  EXPECT_EQ(after["topic"][0]["subscribers"].value<int64_t>(), 1);
  EXPECT_EQ(after["topic"][0]["slots_in_use"].value<int64_t>(), 0) << "held slots returned";
}

// The writer's statistics as `stats` shows them: a live loan counts while it is out, and messages count
// every message, also those packed several to a slot by publish_batch (then head, in slots, falls behind).
TEST(StatsTest, LoansAndPackedMessagesAreCountedExactly) {
  TestDaemon daemon;
  Bus bus = daemon.connect();
  PublisherOptions o;
  o.topic.max_message_size = 256;
  auto sub = bus.subscriber("stats/writer", {.topic = o.topic});
  auto pub = bus.publisher("stats/writer", o);
  ASSERT_TRUE(sub.ok() && pub.ok());
  for (int round = 0; round < 2; ++round) {
    auto loan = pub->loan();
    ASSERT_TRUE(loan.ok());
    EXPECT_EQ(stats_of(daemon)["topic"][0]["loaned"].value<int64_t>(), 1) << "round " << round;
    loan->set_size(8);
    pub->publish(std::move(loan).value());
    EXPECT_EQ(stats_of(daemon)["topic"][0]["loaned"].value<int64_t>(), 0) << "round " << round;
  }
  EXPECT_EQ(stats_of(daemon)["topic"][0]["messages"].value<int64_t>(), 2);
  {
    auto abandoned = pub->loan();
    ASSERT_TRUE(abandoned.ok());
    EXPECT_EQ(stats_of(daemon)["topic"][0]["loaned"].value<int64_t>(), 1);
  }
  EXPECT_EQ(stats_of(daemon)["topic"][0]["loaned"].value<int64_t>(), 0) << "an abandoned loan is not counted";
  const std::array<std::byte, 16> m{};
  const std::vector<std::span<const std::byte>> batch(10, std::span<const std::byte>(m));
  auto n = pub->publish_batch(batch);
  ASSERT_TRUE(n.ok());
  EXPECT_EQ(*n, 10u);
  ASSERT_TRUE(pub->publish(std::span<const std::byte>(m)).ok());  // one more, after packing
  EXPECT_EQ(stats_of(daemon)["topic"][0]["messages"].value<int64_t>(), 13);
  EXPECT_EQ(stats_of(daemon)["topic"][0]["loaned"].value<int64_t>(), 0);
  EXPECT_EQ(pub->published(), 13u);
  int taken = 0;
  while (sub->try_take()) ++taken;
  EXPECT_EQ(taken, 13);
}

TEST(ReclaimTest, PublisherKilledMidLoanIsReclaimedAndOthersFlow) {
  TestDaemon daemon;
  Bus bus = daemon.connect();
  PublisherOptions two;
  two.topic.max_publishers = 2;
  auto sub = bus.subscriber("reclaim/pub", {.topic = two.topic});
  ASSERT_TRUE(sub.ok());
  ChildProcess loaner({TEST_PEER_PATH, "loan", "reclaim/pub"});
  ASSERT_EQ(loaner.read_line(), "loaned");
  auto other = bus.publisher("reclaim/pub");
  ASSERT_TRUE(other.ok());
  EXPECT_EQ(bus.publisher("reclaim/pub").status().code(), Errc::kExhausted) << "both rings in use";
  auto before = stats_of(daemon);
  EXPECT_EQ(before["topic"][0]["loaned"].value<int64_t>(), 1);
  loaner.kill(SIGKILL);
  loaner.wait();
  // Within a second the dead publisher's ring is free again and a new publisher can take it.
  const auto deadline = std::chrono::steady_clock::now() + 1s;
  Result<Publisher> replacement = Status{Errc::kExhausted, ""};
  while (!replacement.ok() && std::chrono::steady_clock::now() < deadline) {
    (void)sub->try_take();
    replacement = bus.publisher("reclaim/pub");
  }
  ASSERT_TRUE(replacement.ok()) << replacement.status().to_string();
  auto after = stats_of(daemon);
  EXPECT_EQ(after["topic"][0]["loaned"].value<int64_t>(), 0);
  EXPECT_EQ(after["topic"][0]["publishers"].value<int64_t>(), 2);
  const std::string text = "still flowing";
  ASSERT_TRUE(other->publish(std::as_bytes(std::span(text.data(), text.size()))).ok());
  ASSERT_TRUE(replacement->publish(std::as_bytes(std::span(text.data(), text.size()))).ok());
  EXPECT_TRUE(sub->take(1s));
  EXPECT_TRUE(sub->take(1s));
}

}  // namespace
}  // namespace shmbus::test

namespace shmbus::test {
namespace {

// A participant that writes garbage into shared memory it can reach is detected and fenced off (its
// connection closed, its endpoints reclaimed); the daemon and the other participants keep working.
void expect_fenced(const char* what) {
  TestDaemon daemon;
  Bus bus = daemon.connect();
  auto pub = bus.publisher("hostile/topic");
  auto sub = bus.subscriber("hostile/topic");
  ASSERT_TRUE(pub.ok() && sub.ok());
  ChildProcess scribbler({TEST_PEER_PATH, "scribble", "hostile/topic", what});
  ASSERT_EQ(scribbler.read_line(), "scribbled");
  const auto deadline = std::chrono::steady_clock::now() + 3s;
  int64_t subscribers = -1, publishers = -1;
  while (std::chrono::steady_clock::now() < deadline) {
    while (sub->try_take()) {
    }
    const auto doc = toml::parse(daemon.statistics());
    subscribers = doc["topic"][0]["subscribers"].value<int64_t>().value_or(-1);
    publishers = doc["topic"][0]["publishers"].value<int64_t>().value_or(-1);
    if (subscribers == 1 && publishers == 1) break;
    std::this_thread::sleep_for(20ms);
  }
  EXPECT_EQ(subscribers, 1) << what << ": the scribbler's subscriber was fenced off";
  EXPECT_EQ(publishers, 1) << what << ": the scribbler's publisher was fenced off";
  const std::string text = "after";
  ASSERT_TRUE(pub->publish(std::as_bytes(std::span(text.data(), text.size()))).ok());
  Sample m = sub->take(2s);
  for (int i = 0; i < 10 && m && m.size() != text.size(); ++i) m = sub->take(2s);
  ASSERT_TRUE(m) << "survivors keep flowing";
  EXPECT_EQ(std::string(reinterpret_cast<const char*>(m.data()), m.size()), text);
}

TEST(HostileTest, CursorBeyondTheHeadIsFenced) {
  expect_fenced("cursor");
}
TEST(HostileTest, HeadRunningBackwardsAndBadSizesAreFenced) {
  expect_fenced("head");
}

}  // namespace
}  // namespace shmbus::test

namespace shmbus::test {
namespace {

TEST(SupervisionTest, DaemonStartsRestartsAndStopsConfiguredProcesses) {
  pid_t first = -1;
  {
    TestDaemon daemon("[[process]]\nname = \"helper\"\ncommand = [\"" TEST_PEER_PATH
                      "\", \"subscribe\", \"supervised/topic\", \"1000000\", \"60\"]\n");
    auto process = [&]() -> std::pair<int64_t, int64_t> {  // pid, restarts
      const auto doc = toml::parse(daemon.statistics());
      const auto* p = doc["process"][0].as_table();
      if (!p || p->at("state").value<std::string>() != "running") return {-1, -1};
      return {p->at("pid").value<int64_t>().value_or(-1), p->at("restarts").value<int64_t>().value_or(-1)};
    };
    auto wait_running = [&](int64_t not_pid) {
      const auto deadline = std::chrono::steady_clock::now() + 5s;
      for (;;) {
        auto [pid, restarts] = process();
        if (pid > 0 && pid != not_pid) return std::pair{pid, restarts};
        if (std::chrono::steady_clock::now() > deadline) return std::pair<int64_t, int64_t>{-1, -1};
        std::this_thread::sleep_for(20ms);
      }
    };
    auto [pid, restarts] = wait_running(-1);
    ASSERT_GT(pid, 0);
    EXPECT_EQ(restarts, 0);
    first = static_cast<pid_t>(pid);
    // The supervised program is a bus client of this instance: it shows up as a subscriber.
    const auto deadline = std::chrono::steady_clock::now() + 5s;
    while (run_process({SHMBUS_CLI_PATH, "list"}).out.find("supervised/topic") == std::string::npos &&
           std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(20ms);
    }
    EXPECT_NE(run_process({SHMBUS_CLI_PATH, "list"}).out.find("helper"), std::string::npos);
    kill(first, SIGKILL);
    auto [again, restarts_after] = wait_running(pid);
    EXPECT_GT(again, 0) << "restarted after kill -9";
    EXPECT_EQ(restarts_after, 1);
    first = static_cast<pid_t>(again);
  }
  // The daemon stopped its child on SIGTERM.
  EXPECT_TRUE(kill(first, 0) != 0 && errno == ESRCH);
}

}  // namespace
}  // namespace shmbus::test

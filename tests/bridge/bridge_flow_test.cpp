// Messages from a publisher on host A to subscribers on host B through two real bridges over real TCP:
// volume with checksums, only subscribed topics crossing, and a subscriber that starts before the publisher.
#include <gtest/gtest.h>

#include <thread>
#include <vector>

#include "bridge/wire_format.h"
#include "common_messages.h"
#include "support/bridge_fixture.h"
#include "support/process_stat.h"

namespace shmbus::test {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

// Lossless end to end: lossless topics on both hosts and a bridge that waits for its peer instead of
// dropping.
const char* kLosslessRules = R"(
[[rule]]
pattern = "flow/**"
direction = "both"
policy = "lossless"
depth = 1024
)";

class BridgeFlowTest : public BridgeTest {
 protected:
  void start_pair(const std::string& rules, const std::string& network = "lossless = true") {
    make_hosts(2, {{0, 1}});
    if (IsSkipped()) return;
    ASSERT_TRUE(host(0).start_bridge(config(0, {}, {1}, rules, network)));
    ASSERT_TRUE(host(1).start_bridge(config(1, {0}, {}, rules, network)));
  }
};

TEST_P(BridgeFlowTest, HundredThousandMessagesArriveIntactInOrderAndCounted) {
  start_pair(kLosslessRules);
  if (IsSkipped()) return;
  constexpr uint64_t kCount = 100000;
  Bus bus_b = host(1).connect("receiver");
  auto sub = bus_b.subscriber("flow/data", {.max_held_samples = 64});
  ASSERT_TRUE(sub.ok()) << sub.status().to_string();
  Bus bus_a = host(0).connect("sender");
  PublisherOptions po{
      .topic = {.max_message_size = sizeof(Numbered), .depth = 1024, .policy = Policy::kLossless},
      .full_timeout = 5000ms};
  auto pub = bus_a.publisher("flow/data", po);
  ASSERT_TRUE(pub.ok()) << pub.status().to_string();
  // Remote interest shows up locally as a subscriber: the bridge's.
  ASSERT_TRUE(wait_until([&] { return pub->subscribers() > 0; })) << "the subscription never reached host A";

  uint64_t received = 0, bad = 0, out_of_order = 0;
  std::thread receiver([&] {
    auto last_progress = Clock::now();
    while (received < kCount && Clock::now() - last_progress < 20s) {
      Sample m = sub->take(100ms);
      if (!m) continue;
      Numbered n;
      if (!read_numbered(m.bytes(), &n)) {
        ++bad;
      } else if (n.number != received + 1) {
        ++out_of_order;
      }
      ++received;
      last_progress = Clock::now();
    }
  });
  for (uint64_t i = 1; i <= kCount; ++i) {
    const Numbered m = numbered(i);
    Status s;
    while ((s = pub->publish(std::as_bytes(std::span(&m, 1)))).code() == Errc::kTimeout) {
    }
    ASSERT_TRUE(s.ok()) << s.to_string();
  }
  receiver.join();
  EXPECT_EQ(received, kCount);
  EXPECT_EQ(bad, 0u);
  EXPECT_EQ(out_of_order, 0u);
  EXPECT_TRUE(
      host(1).wait_stats([&](const toml::table& s) { return stat(s, "in", "messages") == int64_t(kCount); }));
  const toml::table in = host(1).bridge_stats();
  EXPECT_EQ(stat(in, "in", "gaps"), 0);
  EXPECT_EQ(stat(in, "in", "bytes"), int64_t(kCount * sizeof(Numbered)));
  EXPECT_EQ(stat(in, "in", "malformed"), 0);
  // Waited for, as B's: the statistics document is published every stats interval, and a run can end
  // inside one (the last document then shows an earlier count).
  EXPECT_TRUE(host(0).wait_stats([&](const toml::table& s) {
    return stat(s, "out", "messages") == int64_t(kCount);
  })) << "A's bridge sent "
      << stat(host(0).bridge_stats(), "out", "messages");
}

TEST_P(BridgeFlowTest, OnlySubscribedTopicsCrossAndNamesNeverPrefixMatch) {
  start_pair(R"(
[[rule]]
pattern = "t/**"
policy = "lossless"
)");
  if (IsSkipped()) return;
  constexpr int kCount = 200;
  Bus bus_b = host(1).connect("receiver");
  auto sub = bus_b.subscriber("t/a");
  ASSERT_TRUE(sub.ok());
  Bus bus_a = host(0).connect("sender");
  PublisherOptions po{.topic = {.max_message_size = 1000, .depth = 256, .policy = Policy::kLossless},
                      .full_timeout = 5000ms};
  auto pub_a = bus_a.publisher("t/a", po), pub_ab = bus_a.publisher("t/ab", po),
       pub_other = bus_a.publisher("t/other", po);
  ASSERT_TRUE(pub_a.ok() && pub_ab.ok() && pub_other.ok());
  ASSERT_TRUE(wait_until([&] { return pub_a->subscribers() > 0; }));
  const uint64_t wire_before = topology_->tx_bytes(0, 1);
  for (int i = 0; i < kCount; ++i) {
    for (auto [p, fill] : {std::pair{&*pub_a, 'a'}, std::pair{&*pub_ab, 'b'}, std::pair{&*pub_other, 'o'}}) {
      const std::string text(1000, fill);
      ASSERT_TRUE(p->publish(std::as_bytes(std::span(text.data(), text.size()))).ok());
    }
  }
  int got = 0, wrong = 0;
  while (got < kCount) {
    Sample m = sub->take(10s);
    if (!m) break;
    ++got;
    wrong += m.size() != 1000 || static_cast<char>(m.bytes()[0]) != 'a';
  }
  EXPECT_EQ(got, kCount);
  EXPECT_EQ(wrong, 0);
  EXPECT_FALSE(sub->take(300ms)) << "more than what was published on t/a arrived";
  // The bridge on A never even subscribed locally to what nobody on B wants.
  EXPECT_EQ(pub_ab->subscribers(), 0u);
  EXPECT_EQ(pub_other->subscribers(), 0u);
  EXPECT_TRUE(host(1).wait_stats([&](const toml::table& s) { return stat(s, "in", "messages") == kCount; }));
  // A's document too is published every stats interval: wait for the one that counts everything.
  EXPECT_TRUE(host(0).wait_stats([&](const toml::table& s) { return stat(s, "out", "messages") == kCount; }));
  const toml::table out = host(0).bridge_stats();
  EXPECT_EQ(stat(out, "out", "messages"), kCount);
  EXPECT_EQ(stat(out, "out", "bytes"), kCount * 1000);
  EXPECT_EQ(stat(out, "out", "remote_topics"), 1);
  if (topology_->uses_namespaces()) {
    // On the wire: one topic's 200 KB plus framing and TCP/IP overhead, not the three topics' 600 KB.
    const uint64_t sent = topology_->tx_bytes(0, 1) - wire_before;
    EXPECT_GE(sent, uint64_t{kCount} * 1000);
    EXPECT_LT(sent, uint64_t{kCount} * 1000 * 3 / 2) << "bytes on the wire: " << sent;
  }
}

// Sizes around the batch bound (wire format 2: small messages share a ZeroMQ message, one that does not fit
// in kMaxBatchBytes travels alone, after the batch before it): every message arrives whole, in order. The
// publisher publishes a cycle at a time so that batches form.
TEST_P(BridgeFlowTest, MessagesOfEverySizeAroundTheBatchBoundArriveWholeAndInOrder) {
  start_pair(R"(
[[rule]]
pattern = "flow/**"
policy = "lossless"
depth = 64
max_message_size = 262144
)",
             "lossless = true");
  if (IsSkipped()) return;
  const std::size_t fits = bridge::kMaxBatchBytes - bridge::kBatchHeaderSize - bridge::kRecordHeaderSize;
  const std::vector<std::size_t> sizes = {0, 1, 100, 4096, fits, fits + 1, 100000, 262144, 7};
  constexpr int kCycles = 60;
  const TopicSettings topic{.max_message_size = 262144, .depth = 64, .policy = Policy::kLossless};
  Bus bus_b = host(1).connect("receiver");
  auto sub = bus_b.subscriber("flow/sizes", {.topic = topic});
  ASSERT_TRUE(sub.ok()) << sub.status().to_string();
  Bus bus_a = host(0).connect("sender");
  auto pub = bus_a.publisher("flow/sizes", {.topic = topic, .full_timeout = 5000ms});
  ASSERT_TRUE(pub.ok()) << pub.status().to_string();
  ASSERT_TRUE(wait_until([&] { return pub->subscribers() > 0; })) << "the subscription never reached host A";
  // Message i: its size from the cycle, every byte derived from i and its offset.
  auto byte_of = [](uint64_t i, std::size_t at) { return static_cast<std::byte>((i * 131 + at * 7) & 0xff); };
  const uint64_t total = kCycles * sizes.size();
  uint64_t received = 0, wrong = 0;
  std::thread receiver([&] {
    auto last_progress = Clock::now();
    while (received < total && Clock::now() - last_progress < 20s) {
      Sample m = sub->take(100ms);
      if (!m) continue;
      const uint64_t i = received++;
      bool ok = m.size() == sizes[i % sizes.size()];
      for (std::size_t at = 0; ok && at < m.size(); ++at) ok = m.bytes()[at] == byte_of(i, at);
      wrong += ok ? 0 : 1;
      last_progress = Clock::now();
    }
  });
  std::vector<std::byte> buf(262144);
  for (uint64_t i = 0; i < total; ++i) {
    const std::size_t n = sizes[i % sizes.size()];
    for (std::size_t at = 0; at < n; ++at) buf[at] = byte_of(i, at);
    Status st;
    while ((st = pub->publish(std::span<const std::byte>(buf.data(), n))).code() == Errc::kTimeout) {
    }
    ASSERT_TRUE(st.ok()) << st.to_string();
  }
  receiver.join();
  EXPECT_EQ(received, total);
  EXPECT_EQ(wrong, 0u) << "messages of the wrong size or content, or out of order";
  EXPECT_TRUE(
      host(1).wait_stats([&](const toml::table& s) { return stat(s, "in", "messages") == int64_t(total); }));
  const toml::table in = host(1).bridge_stats();
  EXPECT_EQ(stat(in, "in", "gaps"), 0);
  EXPECT_EQ(stat(in, "in", "malformed"), 0);
  EXPECT_EQ(stat(in, "in", "too_large"), 0);
}

TEST_P(BridgeFlowTest, SubscriberStartedBeforeTheRemotePublisherGetsTheFirstMessage) {
  start_pair(kLosslessRules);
  if (IsSkipped()) return;
  Bus bus_b = host(1).connect("early-subscriber");
  auto sub = bus_b.subscriber("flow/late");
  ASSERT_TRUE(sub.ok());
  // The subscription travels to A before any publisher exists there: A's bridge subscribes locally.
  Bus bus_a = host(0).connect("late-publisher");
  ASSERT_TRUE(wait_until([&] {
    auto doc = bus_a.daemon_statistics();
    return doc.ok() && doc->find("name = 'flow/late'") != std::string::npos;
  })) << "host A never saw the remote subscription";
  auto pub = bus_a.publisher("flow/late", {.topic = {.max_message_size = sizeof(Numbered)}});
  ASSERT_TRUE(pub.ok());
  for (uint64_t i = 1; i <= 50; ++i) {  // immediately: no waiting for subscribers
    const Numbered m = numbered(i);
    ASSERT_TRUE(pub->publish(std::as_bytes(std::span(&m, 1))).ok());
  }
  for (uint64_t i = 1; i <= 50; ++i) {
    Sample m = sub->take(10s);
    ASSERT_TRUE(m) << "message " << i << " never arrived";
    Numbered n;
    ASSERT_TRUE(read_numbered(m.bytes(), &n));
    EXPECT_EQ(n.number, i);
  }
}

// idle_spin_us: both bridges' threads poll instead of sleeping for a while after each message. Bursts, and
// single messages spaced inside and beyond the spin (so that both threads fall asleep and must be woken),
// all arrive whole and in order; the bridges use CPU while they spin and almost none once it ran out; and
// a spinning bridge still stops at once. (CPU bounds are generous: 10 ms ticks, a loaded machine.)
TEST_P(BridgeFlowTest, SpinningBridgesCarryBurstsAndSpacedMessagesAndStopPromptly) {
  start_pair(kLosslessRules, "lossless = true\nidle_spin_us = 300000");
  if (IsSkipped()) return;
  Bus bus_b = host(1).connect("receiver");
  auto sub = bus_b.subscriber("flow/spin", {.max_held_samples = 64});
  ASSERT_TRUE(sub.ok()) << sub.status().to_string();
  Bus bus_a = host(0).connect("sender");
  auto pub = bus_a.publisher(
      "flow/spin",
      {.topic = {.max_message_size = sizeof(Numbered), .depth = 1024, .policy = Policy::kLossless},
       .full_timeout = 5000ms});
  ASSERT_TRUE(pub.ok()) << pub.status().to_string();
  ASSERT_TRUE(wait_until([&] { return pub->subscribers() > 0; })) << "the subscription never reached host A";
  uint64_t sent = 0, received = 0, wrong = 0;
  // Each burst fits in both hosts' topics; everything sent arrives before the next.
  auto send_and_receive = [&](int n) {
    for (int i = 0; i < n; ++i) {
      const Numbered m = numbered(++sent);
      if (!pub->publish(std::as_bytes(std::span(&m, 1))).ok()) return false;
    }
    while (received < sent) {
      Sample m = sub->take(10s);
      if (!m) return false;
      Numbered got;
      wrong += !read_numbered(m.bytes(), &got) || got.number != ++received;
    }
    return true;
  };
  for (int round = 0; round < 6; ++round) {
    ASSERT_TRUE(send_and_receive(500)) << "round " << round << ": " << received << " of " << sent;
    std::this_thread::sleep_for(round % 2 ? 5ms : 400ms);  // inside the spin, or past it: asleep
    ASSERT_TRUE(send_and_receive(1)) << "round " << round << ": " << received << " of " << sent;
  }
  EXPECT_EQ(received, sent);
  EXPECT_EQ(wrong, 0u) << "messages damaged or out of order";
  auto bridges_cpu_over = [&](std::chrono::milliseconds interval) {
    const double before = cpu_seconds(host(0).bridge_pid()) + cpu_seconds(host(1).bridge_pid());
    std::this_thread::sleep_for(interval);
    return cpu_seconds(host(0).bridge_pid()) + cpu_seconds(host(1).bridge_pid()) - before;
  };
  // Spinning: every bridge has a thread that polls (runnable) instead of sleeping. Sampled, not timed: on a
  // loaded machine a spinner that yields gets little CPU time, but it stays runnable all the same.
  auto share_both_runnable = [&](std::chrono::milliseconds interval) {
    int samples = 0, runnable = 0;
    for (const auto end = Clock::now() + interval; Clock::now() < end; ++samples) {
      runnable += has_runnable_thread(host(0).bridge_pid()) && has_runnable_thread(host(1).bridge_pid());
      std::this_thread::sleep_for(2ms);
    }
    return samples ? static_cast<double>(runnable) / samples : 0.0;
  };
  ASSERT_TRUE(send_and_receive(1));
  EXPECT_GE(share_both_runnable(150ms), 0.8) << "the bridges did not spin after a message";
  std::this_thread::sleep_for(400ms);  // the spin runs out
  EXPECT_LT(bridges_cpu_over(1000ms), 0.25) << "idle bridges kept spinning";
  const auto stopping = Clock::now();
  EXPECT_EQ(host(1).stop_bridge(), 0);
  EXPECT_EQ(host(0).stop_bridge(), 0);
  EXPECT_LT(Clock::now() - stopping, 5s) << "spinning bridges were slow to stop";
}

INSTANTIATE_TEST_SUITE_P(Net, BridgeFlowTest, ::testing::Values(Net::kNamespaces, Net::kLoopback), net_name);

}  // namespace
}  // namespace shmbus::test

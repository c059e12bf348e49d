// Three hosts in a triangle, every bridge configured `both` ways with both others: messages reach every
// subscriber exactly once although each is offered along two paths and relayed back towards its origin.
#include <gtest/gtest.h>

#include <map>
#include <thread>

#include "common_messages.h"
#include "support/bridge_fixture.h"

namespace shmbus::test {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

class BridgeTopologyTest : public BridgeTest {};

TEST_P(BridgeTopologyTest, TriangleDeliversEveryMessageExactlyOnce) {
  make_hosts(3, {{0, 1}, {1, 2}, {0, 2}});
  if (IsSkipped()) return;
  const std::string rules = R"(
[[rule]]
pattern = "tri/*"
direction = "both"
policy = "lossless"
depth = 256
)";
  for (int i = 0; i < 3; ++i) {
    std::vector<int> others;
    for (int j = 0; j < 3; ++j) {
      if (j != i) others.push_back(j);
    }
    ASSERT_TRUE(host(i).start_bridge(config(i, others, others, rules, "lossless = true")));
  }
  constexpr uint64_t kCount = 2000;
  const std::vector<std::string> topics = {"tri/a", "tri/b", "tri/c"};  // host i publishes topics[i]
  std::vector<Bus> buses;
  for (int i = 0; i < 3; ++i) buses.push_back(host(i).connect("triangle"));
  // Every host subscribes to every topic, its own included.
  std::vector<std::vector<Subscriber>> subs(3);
  for (int i = 0; i < 3; ++i) {
    for (const auto& t : topics) {
      auto s = buses[i].subscriber(t, {.max_held_samples = 64});
      ASSERT_TRUE(s.ok()) << s.status().to_string();
      subs[i].push_back(std::move(s).value());
    }
  }
  std::vector<Publisher> pubs;
  for (int i = 0; i < 3; ++i) {
    PublisherOptions po{
        .topic = {.max_message_size = sizeof(Numbered), .depth = 256, .policy = Policy::kLossless},
        .full_timeout = 5000ms};
    auto p = buses[i].publisher(topics[i], po);
    ASSERT_TRUE(p.ok()) << p.status().to_string();
    pubs.push_back(std::move(p).value());
  }
  // Our local subscriber plus our bridge's (one serves both peers): two subscribers each.
  const auto deadline = Clock::now() + 20s;
  for (auto& p : pubs) {
    while (p.subscribers() < 2 && Clock::now() < deadline) std::this_thread::sleep_for(5ms);
    ASSERT_GE(p.subscribers(), 2u) << p.topic() << ": the peers' subscriptions never arrived";
  }
  std::this_thread::sleep_for(300ms);  // let every bridge subscribe along every path, relays included

  // counts[host][topic][number]: how often each message arrived where.
  std::vector<std::vector<std::vector<uint8_t>>> counts(
      3, std::vector<std::vector<uint8_t>>(3, std::vector<uint8_t>(kCount + 1)));
  std::atomic<uint64_t> bad{0};
  std::vector<std::thread> receivers;
  for (int i = 0; i < 3; ++i) {
    for (int t = 0; t < 3; ++t) {
      receivers.emplace_back([&, i, t] {
        auto last = Clock::now();
        uint64_t got = 0;
        // Past kCount: keep listening a while for duplicates.
        while (Clock::now() - last < (got >= kCount ? 1500ms : 20000ms)) {
          Sample m = subs[i][t].take(50ms);
          if (!m) continue;
          Numbered n;
          if (!read_numbered(m.bytes(), &n) || n.number == 0 || n.number > kCount) {
            ++bad;
          } else {
            ++counts[i][t][n.number];
          }
          ++got;
          last = Clock::now();
        }
      });
    }
  }
  std::vector<std::thread> publishers;
  for (int i = 0; i < 3; ++i) {
    publishers.emplace_back([&, i] {
      for (uint64_t n = 1; n <= kCount; ++n) {
        const Numbered m = numbered(n);
        while (pubs[i].publish(std::as_bytes(std::span(&m, 1))).code() == Errc::kTimeout) {
        }
      }
    });
  }
  for (auto& t : publishers) t.join();
  for (auto& t : receivers) t.join();
  EXPECT_EQ(bad.load(), 0u);
  for (int i = 0; i < 3; ++i) {
    for (int t = 0; t < 3; ++t) {
      uint64_t missing = 0, duplicated = 0;
      for (uint64_t n = 1; n <= kCount; ++n) {
        missing += counts[i][t][n] == 0;
        duplicated += counts[i][t][n] > 1;
      }
      EXPECT_EQ(missing, 0u) << "host " << host(i).name() << " topic " << topics[t];
      EXPECT_EQ(duplicated, 0u) << "host " << host(i).name() << " topic " << topics[t];
    }
  }
  // Loops were really there and really cut: copies of other origins' messages arrived along second paths
  // (relayed) and copies of our own came back; all were suppressed.
  int64_t duplicates = 0, own = 0, relayed = 0;
  for (int i = 0; i < 3; ++i) {
    const toml::table s = host(i).bridge_stats();
    duplicates += stat(s, "in", "duplicates");
    own += stat(s, "in", "own_origin");
    relayed += stat(s, "out", "relayed");
  }
  EXPECT_GT(relayed, 0);
  EXPECT_GT(duplicates + own, 0);
}

INSTANTIATE_TEST_SUITE_P(Net, BridgeTopologyTest, ::testing::Values(Net::kNamespaces, Net::kLoopback),
                         net_name);

}  // namespace
}  // namespace shmbus::test

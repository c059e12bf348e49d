// Recovery without manual action: a peer bridge killed outright and restarted, a daemon restarted on either
// side. Messages flow again and the far side's subscription is replayed.
#include <gtest/gtest.h>

#include <atomic>
#include <optional>
#include <thread>

#include "common_messages.h"
#include "support/bridge_fixture.h"

namespace shmbus::test {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

const char* kRules = R"(
[[rule]]
pattern = "rec/**"
)";

// Publishes numbered messages every 2 ms on host A from `first` on, until destroyed.
class TickingPublisher {
 public:
  TickingPublisher(BridgeHost& host, uint64_t first) : next_(first) {
    thread_ = std::thread([this, &host] {
      Bus bus = host.connect("ticker");
      auto pub = bus.publisher("rec/tick", {.topic = {.max_message_size = sizeof(Numbered)}});
      if (!pub) return;
      while (!stop_) {
        const Numbered m = numbered(next_);
        if (pub->publish(std::as_bytes(std::span(&m, 1))).ok()) ++next_;
        std::this_thread::sleep_for(2ms);
      }
    });
  }
  ~TickingPublisher() {
    stop_ = true;
    thread_.join();
  }
  uint64_t next() const { return next_; }

 private:
  std::atomic<bool> stop_{false};
  std::atomic<uint64_t> next_;
  std::thread thread_;
};

// Waits for a message numbered above `after`; returns its number, 0 on timeout.
uint64_t progress(Subscriber& sub, uint64_t after, std::chrono::seconds limit = 20s) {
  const auto deadline = Clock::now() + limit;
  while (Clock::now() < deadline) {
    Sample m = sub.take(100ms);
    Numbered n;
    if (m && read_numbered(m.bytes(), &n) && n.number > after) return n.number;
  }
  return 0;
}

class BridgeRecoveryTest : public BridgeTest {};

TEST_P(BridgeRecoveryTest, FlowResumesAfterPeerBridgeAndDaemonRestarts) {
  make_hosts(2, {{0, 1}});
  if (IsSkipped()) return;
  const std::string config_a = config(0, {}, {1}, kRules), config_b = config(1, {0}, {}, kRules);
  ASSERT_TRUE(host(0).start_bridge(config_a));
  ASSERT_TRUE(host(1).start_bridge(config_b));
  auto ticker = std::make_unique<TickingPublisher>(host(0), 1);
  auto bus_b = std::make_unique<Bus>(host(1).connect("receiver"));
  auto sub = bus_b->subscriber("rec/tick");
  ASSERT_TRUE(sub.ok());
  uint64_t seen = progress(*sub, 0);
  ASSERT_GT(seen, 0u) << "nothing flowed before any restart";

  // 1. The sending side's bridge dies without a goodbye and comes back: B's XSUB reconnects and replays.
  host(0).stop_bridge(SIGKILL);
  ASSERT_TRUE(host(0).start_bridge(config_a));
  seen = progress(*sub, ticker->next());
  ASSERT_GT(seen, 0u) << "no flow after the sending bridge restarted";

  // 2. The receiving side's bridge dies and comes back: it finds the local subscriber and subscribes again.
  host(1).stop_bridge(SIGKILL);
  ASSERT_TRUE(host(1).start_bridge(config_b));
  seen = progress(*sub, ticker->next());
  ASSERT_GT(seen, 0u) << "no flow after the receiving bridge restarted";

  // 3. The receiving side's daemon restarts: its clients (bridge included) lose it and reconnect.
  sub = Subscriber();
  bus_b.reset();
  host(1).stop_daemon();
  ASSERT_TRUE(host(1).start_daemon());
  bus_b = std::make_unique<Bus>(host(1).connect("receiver-again"));
  sub = bus_b->subscriber("rec/tick");
  ASSERT_TRUE(sub.ok());
  seen = progress(*sub, ticker->next());
  ASSERT_GT(seen, 0u) << "no flow after the receiving daemon restarted";

  // 4. The sending side's daemon restarts, and its publisher with it.
  const uint64_t resume = ticker->next() + 1000;
  ticker.reset();
  host(0).stop_daemon();
  ASSERT_TRUE(host(0).start_daemon());
  ticker = std::make_unique<TickingPublisher>(host(0), resume);
  seen = progress(*sub, resume - 1);
  ASSERT_GT(seen, 0u) << "no flow after the sending daemon restarted";

  const toml::table s = host(1).bridge_stats();
  EXPECT_EQ(s["peer"][0]["state"].value_or(std::string()), "connected");
  EXPECT_EQ(stat(s, "in", "malformed"), 0);
}

// A peer subscribes to a topic whose subscriber slots are all taken: the bridge cannot subscribe locally at
// first, and ZeroMQ never announces that subscription again. It retries, and the topic flows once a slot is
// free.
TEST_P(BridgeRecoveryTest, ALocalSubscribeThatFailedIsRetriedUntilTheTopicFlows) {
  make_hosts(2, {{0, 1}});
  if (IsSkipped()) return;
  ASSERT_TRUE(host(0).start_bridge(config(0, {}, {1}, kRules)));
  ASSERT_TRUE(host(1).start_bridge(config(1, {0}, {}, kRules)));
  const TopicSettings one_subscriber{.max_message_size = sizeof(Numbered), .max_subscribers = 1};
  Bus bus_a = host(0).connect("sender");
  auto pub = bus_a.publisher("rec/full", {.topic = one_subscriber});
  auto squatter = std::make_optional(bus_a.subscriber("rec/full", {.topic = one_subscriber}));
  ASSERT_TRUE(pub.ok() && squatter->ok());
  Bus bus_b = host(1).connect("receiver");
  auto sub = bus_b.subscriber("rec/full");
  ASSERT_TRUE(sub.ok()) << sub.status().to_string();
  ASSERT_TRUE(host(0).wait_stats([](const toml::table& s) { return stat(s, "out", "remote_topics") == 1; }))
      << "B's subscription never reached A's bridge";
  squatter.reset();  // a slot is free now
  bool crossed = false;
  for (uint64_t n = 1; n <= 1000 && !crossed; ++n) {  // 10 s at most
    const Numbered m = numbered(n);
    (void)pub->publish(std::as_bytes(std::span(&m, 1)));
    crossed = static_cast<bool>(sub->take(10ms));
  }
  EXPECT_TRUE(crossed) << "the topic never flowed once its slot was free";
}

INSTANTIATE_TEST_SUITE_P(Net, BridgeRecoveryTest, ::testing::Values(Net::kNamespaces, Net::kLoopback),
                         net_name);

}  // namespace
}  // namespace shmbus::test

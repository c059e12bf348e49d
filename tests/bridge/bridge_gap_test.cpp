// Loss accounting end to end with real losses: a lossy topic with a tiny ring on A, published in bursts, laps
// the sending bridge's own local subscriber. The bridge numbers every message published after it subscribed
// (Outbound::drain skips the numbers of what it lost), so B's bridge sees the losses as sequence gaps. Read
// through `shmbus stats --json`, as an operator would, the books must balance exactly:
//   B delivered + B gaps == published on A, and A's local drops == B's gaps.
// Exact because the first message (it opens B's stream: losses before it would not count) and the last one
// (losses after it would never show) are made to cross, and the network side is lossless (lossless = true,
// nothing dropped at the high-water mark, send_dropped stays 0).
#include <gtest/gtest.h>

#include <atomic>
#include <thread>

#include "common_messages.h"
#include "support/bridge_fixture.h"

namespace shmbus::test {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

// This host's bridge entry of `shmbus stats --json` (empty table if absent or unreadable).
toml::table bridge_json(const BridgeHost& host) {
  const ProcessResult r = host.cli({"stats", "--json"});
  if (r.status != 0) return {};
  toml::table doc;
  try {
    doc = parse_json(r.out);
  } catch (const std::exception& e) {
    ADD_FAILURE() << e.what() << " in\n" << r.out;
    return {};
  }
  if (const toml::array* bridges = doc["bridge"].as_array()) {
    for (const toml::node& b : *bridges) {
      if (b.as_table() && (*b.as_table())["name"].value_or(std::string()) == host.name())
        return *b.as_table();
    }
  }
  return {};
}

class BridgeGapTest : public BridgeTest {};

TEST_P(BridgeGapTest, LocalLossesOnTheSendingSideArriveAsExactGaps) {
  make_hosts(2, {{0, 1}});
  if (IsSkipped()) return;
  ASSERT_TRUE(host(0).start_bridge(config(0, {}, {1}, R"(
[[rule]]
pattern = "gap/**"
)",
                                          "lossless = true")));
  // B's local topic is lossless and deep: whatever B's bridge delivers reaches B's subscriber.
  ASSERT_TRUE(host(1).start_bridge(config(1, {0}, {}, R"(
[[rule]]
pattern = "gap/**"
policy = "lossless"
depth = 4096
)",
                                          "lossless = true")));
  Bus bus_b = host(1).connect("receiver");
  auto sub = bus_b.subscriber("gap/burst", {.max_held_samples = 64});
  ASSERT_TRUE(sub.ok()) << sub.status().to_string();
  // The tiny lossy ring on A: a burst laps any reader that is not faster than the publisher.
  Bus bus_a = host(0).connect("sender");
  auto pub = bus_a.publisher(
      "gap/burst", {.topic = {.max_message_size = sizeof(Numbered), .depth = 4, .policy = Policy::kLossy}});
  ASSERT_TRUE(pub.ok()) << pub.status().to_string();
  ASSERT_TRUE(wait_until([&] { return pub->subscribers() > 0; })) << "the subscription never reached A";

  std::atomic<uint64_t> received{0}, last{0}, bad{0}, out_of_order{0};
  std::atomic<bool> stop{false};
  std::thread receiver([&] {
    while (!stop) {
      Sample m = sub->take(100ms);
      if (!m) continue;
      Numbered n;
      if (!read_numbered(m.bytes(), &n)) {
        ++bad;
      } else {
        if (n.number <= last) ++out_of_order;
        last = n.number;
      }
      ++received;
    }
  });
  struct JoinAtExit {
    std::atomic<bool>& stop;
    std::thread& t;
    ~JoinAtExit() {
      stop = true;
      t.join();
    }
  } join_at_exit{stop, receiver};

  uint64_t published = 0, publish_errors = 0;
  auto publish_one = [&] {
    const Numbered m = numbered(++published);
    publish_errors += !pub->publish(std::as_bytes(std::span(&m, 1))).ok();  // lossy: never blocks
  };
  // Publishes one message on its own and waits for it on B: nothing follows to overwrite it on A.
  auto cross_one = [&](const char* what) {
    publish_one();
    ASSERT_TRUE(wait_until([&] { return last == published; })) << "the " << what << " message never crossed";
  };

  ASSERT_NO_FATAL_FAILURE(cross_one("first"));
  // Five bursts (more if the bridge has lost nothing yet; one nearly always suffices), each closed by one
  // message that crosses, so that every loss lies between two delivered messages.
  int64_t gaps = 0;
  for (int burst = 0; burst < 10 && (burst < 5 || gaps == 0); ++burst) {
    for (int i = 0; i < 20000; ++i) publish_one();
    ASSERT_EQ(publish_errors, 0u);
    ASSERT_NO_FATAL_FAILURE(cross_one("closing"));
    const uint64_t delivered = received;
    ASSERT_TRUE(wait_until([&] {
      const toml::table b = bridge_json(host(1));
      gaps = stat(b, "in", "gaps");
      return stat(b, "in", "messages") == int64_t(delivered);
    })) << "B's statistics never caught up with the "
        << delivered << " messages B's subscriber received";
  }

  const toml::table b = bridge_json(host(1));
  ASSERT_FALSE(b.empty()) << "no bridge entry for b in `shmbus stats --json`";
  const int64_t in_messages = stat(b, "in", "messages"), in_gaps = stat(b, "in", "gaps");
  // A publishes its statistics on its own clock: wait until they cover what B received.
  toml::table a;
  EXPECT_TRUE(wait_until([&] {
    a = bridge_json(host(0));
    return stat(a, "out", "messages") >= in_messages;
  })) << "A's statistics never caught up with B's";
  SCOPED_TRACE("published " + std::to_string(published) + ", B delivered " + std::to_string(in_messages) +
               ", B gaps " + std::to_string(in_gaps) + ", A out " +
               std::to_string(stat(a, "out", "messages")) + ", A local_dropped " +
               std::to_string(stat(a, "out", "local_dropped")));
  EXPECT_GT(in_gaps, 0) << "10 bursts of 20000 into a 4-slot ring never lapped the bridge";
  // The exact relation: every number the sending bridge gave out was either delivered or counted missing.
  EXPECT_EQ(in_messages + in_gaps, int64_t(published));
  EXPECT_EQ(int64_t(received.load()), in_messages)
      << "B's subscriber got other than what B's bridge delivered";
  EXPECT_EQ(bad.load(), 0u);
  EXPECT_EQ(out_of_order.load(), 0u);
  // The same losses seen from the sending side: counted there as local drops, never as network drops.
  EXPECT_EQ(stat(a, "out", "messages"), in_messages);
  EXPECT_EQ(stat(a, "out", "local_dropped"), in_gaps);
  EXPECT_EQ(stat(a, "out", "send_dropped"), 0);
  for (const char* clean : {"duplicates", "malformed", "publish_failed", "stale_epoch"})
    EXPECT_EQ(stat(b, "in", clean), 0) << clean;
  // Per stream: one stream (this topic from A), numbered from 1 with every published message.
  const toml::array* streams = b["stream"].as_array();
  ASSERT_TRUE(streams && streams->size() == 1) << "expected exactly one stream on B";
  const toml::node_view<const toml::node> s{(*streams)[0]};
  EXPECT_EQ(s["topic"].value_or(std::string()), "gap/burst");
  EXPECT_EQ(s["delivered"].value_or<int64_t>(-1), in_messages);
  EXPECT_EQ(s["missing"].value_or<int64_t>(-1), in_gaps);
  EXPECT_EQ(s["last_sequence"].value_or<int64_t>(-1), int64_t(published));
}

INSTANTIATE_TEST_SUITE_P(Net, BridgeGapTest, ::testing::Values(Net::kNamespaces, Net::kLoopback), net_name);

}  // namespace
}  // namespace shmbus::test

// What the rules do end to end: a prefix remap (A's local name -> a wire name -> B's local name, payload
// intact), and direction (an `out` rule on A lets A's messages out but never B's in, while a `both` rule on
// the same link carries B's messages to A, so that the absence is not vacuous).
#include <gtest/gtest.h>

#include <thread>

#include "common_messages.h"
#include "support/bridge_fixture.h"

namespace shmbus::test {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

const PublisherOptions kLossless{
    .topic = {.max_message_size = sizeof(Numbered), .depth = 256, .policy = Policy::kLossless},
    .full_timeout = 5000ms};

void publish_numbered(Publisher& pub, uint64_t first, uint64_t count) {
  for (uint64_t n = first; n < first + count; ++n) {
    const Numbered m = numbered(n);
    ASSERT_TRUE(pub.publish(std::as_bytes(std::span(&m, 1))).ok()) << "message " << n;
  }
}

// Expects messages first..first+count-1 on `sub`, intact and in order.
void expect_numbered(Subscriber& sub, uint64_t first, uint64_t count) {
  for (uint64_t n = first; n < first + count; ++n) {
    Sample m = sub.take(10s);
    ASSERT_TRUE(m) << "message " << n << " never arrived on " << sub.topic();
    Numbered got;
    ASSERT_TRUE(read_numbered(m.bytes(), &got)) << "message " << n << " arrived corrupted";
    ASSERT_EQ(got.number, n);
  }
}

class BridgeMappingTest : public BridgeTest {};

TEST_P(BridgeMappingTest, PrefixRemapCarriesALocalNameToTheRemappedNameOnTheOtherSide) {
  make_hosts(2, {{0, 1}});
  if (IsSkipped()) return;
  // A's robot/pose/X goes on the wire as fleet/a/pose/X and lands on B as remote/a/pose/X.
  ASSERT_TRUE(host(0).start_bridge(config(0, {}, {1}, R"(
[[rule]]
pattern = "pose/**"
direction = "out"
local_prefix = "robot/"
remote_prefix = "fleet/a/"
)",
                                          "lossless = true")));
  ASSERT_TRUE(host(1).start_bridge(config(1, {0}, {}, R"(
[[rule]]
pattern = "pose/**"
direction = "in"
local_prefix = "remote/a/"
remote_prefix = "fleet/a/"
policy = "lossless"
depth = 256
)",
                                          "lossless = true")));
  constexpr uint64_t kCount = 500;
  Bus bus_b = host(1).connect("receiver");
  auto remapped = bus_b.subscriber("remote/a/pose/arm");
  // The names of the other stages must carry nothing on B.
  auto as_on_a = bus_b.subscriber("robot/pose/arm");
  auto as_on_wire = bus_b.subscriber("fleet/a/pose/arm");
  ASSERT_TRUE(remapped.ok() && as_on_a.ok() && as_on_wire.ok());
  Bus bus_a = host(0).connect("sender");
  auto pub = bus_a.publisher("robot/pose/arm", kLossless);
  ASSERT_TRUE(pub.ok()) << pub.status().to_string();
  // B's interest in remote/a/pose/arm reached A as a local subscription to robot/pose/arm.
  ASSERT_TRUE(wait_until([&] { return pub->subscribers() > 0; }))
      << "the remapped subscription never reached A";

  ASSERT_NO_FATAL_FAILURE(publish_numbered(*pub, 1, kCount));
  ASSERT_NO_FATAL_FAILURE(expect_numbered(*remapped, 1, kCount));
  EXPECT_FALSE(remapped->take(300ms)) << "more arrived than was published";
  EXPECT_FALSE(as_on_a->take(10ms)) << "A's local name leaked onto B";
  EXPECT_FALSE(as_on_wire->take(10ms)) << "the wire name leaked onto B";

  // The counters and the stream name agree: one remote topic on A, one stream on B under B's local name.
  EXPECT_EQ(stat(host(0).bridge_stats(), "out", "remote_topics"), 1);
  EXPECT_TRUE(host(1).wait_stats([&](const toml::table& s) {
    return stat(s, "in", "messages") == int64_t(kCount) &&
           s["stream"][0]["topic"].value_or(std::string()) == "remote/a/pose/arm";
  })) << "B's statistics never showed the stream under remote/a/pose/arm";
}

// First match wins both ways. With the example configuration's rules on B, site A's robot/arm/pose arrives
// as robot/arm/pose (rule 1), so a subscriber on B's remote/site-b/robot/arm/pose (which rule 2 maps to that
// same wire topic) can receive nothing: B does not subscribe upstream for it (that only fed robot/arm/pose
// and opened and closed a publisher there at every discovery), while rule 2 still serves other topics.
TEST_P(BridgeMappingTest, ALocalTopicShadowedByAnEarlierRuleIsNotSubscribedUpstream) {
  make_hosts(2, {{0, 1}});
  if (IsSkipped()) return;
  ASSERT_TRUE(host(0).start_bridge(config(0, {}, {1}, R"(
[[rule]]
pattern = "**"
direction = "out"
)",
                                          "lossless = true")));
  ASSERT_TRUE(host(1).start_bridge(config(1, {0}, {}, R"(
[[rule]]
pattern = "robot/*/pose"
direction = "both"
policy = "lossless"
depth = 256
[[rule]]
pattern = "**"
direction = "in"
local_prefix = "remote/site-b/"
remote_prefix = ""
policy = "lossless"
depth = 256
)",
                                          "lossless = true")));
  Bus bus_b = host(1).connect("receiver");
  auto shadowed = bus_b.subscriber("remote/site-b/robot/arm/pose");
  auto remapped = bus_b.subscriber("remote/site-b/camera/x");
  ASSERT_TRUE(shadowed.ok() && remapped.ok());
  Bus bus_a = host(0).connect("sender");
  auto pose = bus_a.publisher("robot/arm/pose", kLossless);
  auto camera = bus_a.publisher("camera/x", kLossless);
  ASSERT_TRUE(pose.ok() && camera.ok());
  // One discovery on B found both subscribers; the subscription it sent for camera/x crossed.
  ASSERT_TRUE(wait_until([&] { return camera->subscribers() > 0; })) << "rule 2's subscription never crossed";
  std::this_thread::sleep_for(500ms);  // ten discoveries more
  EXPECT_EQ(pose->subscribers(), 0u) << "B subscribed upstream for a topic it cannot deliver to";
  ASSERT_NO_FATAL_FAILURE(publish_numbered(*camera, 1, 100));
  ASSERT_NO_FATAL_FAILURE(expect_numbered(*remapped, 1, 100));
}

TEST_P(BridgeMappingTest, OutOnlyRuleNeverLetsTheOtherSidesPublicationsIn) {
  make_hosts(2, {{0, 1}});
  if (IsSkipped()) return;
  // Both bridges receive from each other. On A, dir/** is out only; ctl/** (the control) goes both ways.
  const char* rules_a = R"(
[[rule]]
pattern = "dir/**"
direction = "out"
[[rule]]
pattern = "ctl/**"
direction = "both"
policy = "lossless"
depth = 256
)";
  const char* rules_b = R"(
[[rule]]
pattern = "dir/**"
direction = "both"
policy = "lossless"
depth = 256
[[rule]]
pattern = "ctl/**"
direction = "both"
policy = "lossless"
depth = 256
)";
  ASSERT_TRUE(host(0).start_bridge(config(0, {1}, {1}, rules_a, "lossless = true")));
  ASSERT_TRUE(host(1).start_bridge(config(1, {0}, {0}, rules_b, "lossless = true")));
  constexpr uint64_t kCount = 300;
  Bus bus_a = host(0).connect("a");
  Bus bus_b = host(1).connect("b");
  auto a_dir_in = bus_a.subscriber("dir/b2a", {.max_held_samples = 64});
  auto a_ctl_in = bus_a.subscriber("ctl/b2a", {.max_held_samples = 64});
  auto b_dir_in = bus_b.subscriber("dir/a2b", {.max_held_samples = 64});
  ASSERT_TRUE(a_dir_in.ok() && a_ctl_in.ok() && b_dir_in.ok());
  auto b_dir_out = bus_b.publisher("dir/b2a", kLossless);
  auto b_ctl_out = bus_b.publisher("ctl/b2a", kLossless);
  auto a_dir_out = bus_a.publisher("dir/a2b", kLossless);
  ASSERT_TRUE(b_dir_out.ok() && b_ctl_out.ok() && a_dir_out.ok());
  ASSERT_TRUE(wait_until([&] { return b_ctl_out->subscribers() > 0 && a_dir_out->subscribers() > 0; }))
      << "subscriptions never crossed (control B->A: " << b_ctl_out->subscribers()
      << ", out-only A->B: " << a_dir_out->subscribers() << ")";

  // The `out` rule does carry A's messages out...
  ASSERT_NO_FATAL_FAILURE(publish_numbered(*a_dir_out, 1, kCount));
  ASSERT_NO_FATAL_FAILURE(expect_numbered(*b_dir_in, 1, kCount));
  // ...but of B's messages on both topics, published interleaved, only the control reaches A.
  for (uint64_t n = 1; n <= kCount; ++n) {
    ASSERT_NO_FATAL_FAILURE(publish_numbered(*b_dir_out, n, 1));
    ASSERT_NO_FATAL_FAILURE(publish_numbered(*b_ctl_out, n, 1));
  }
  ASSERT_NO_FATAL_FAILURE(expect_numbered(*a_ctl_in, 1, kCount));
  int leaked = 0;
  while (a_dir_in->take(500ms)) ++leaked;
  EXPECT_EQ(leaked, 0) << "B's publications on an out-only topic of A reached A";
  // A never even asked: B's bridge holds no local subscription to dir/b2a and A received nothing unasked.
  EXPECT_EQ(b_dir_out->subscribers(), 0u);
  EXPECT_EQ(stat(host(1).bridge_stats(), "out", "remote_topics"), 1);  // ctl/b2a only
  const toml::table a_stats = host(0).bridge_stats();
  ASSERT_TRUE(a_stats["in"]["unselected"].is_integer()) << "A's statistics were not read";
  EXPECT_EQ(stat(a_stats, "in", "unselected"), 0);
  EXPECT_TRUE(host(0).wait_stats([&](const toml::table& s) {
    return stat(s, "in", "messages") == int64_t(kCount);
  })) << "A's bridge delivered "
      << stat(host(0).bridge_stats(), "in", "messages") << " messages, expected " << kCount
      << " (the control only)";
}

INSTANTIATE_TEST_SUITE_P(Net, BridgeMappingTest, ::testing::Values(Net::kNamespaces, Net::kLoopback),
                         net_name);

}  // namespace
}  // namespace shmbus::test

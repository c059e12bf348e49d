// Three hosts in a triangle, every bridge configured `both` ways with both others: messages reach every
// subscriber exactly once although each is offered along two paths and relayed back towards its origin.
#include <gtest/gtest.h>
#include <zmq.h>

#include <map>
#include <set>
#include <thread>

#include "bridge/wire_format.h"
#include "common_messages.h"
#include "support/bridge_fixture.h"
#include "support/fake_peer.h"

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

// The moment a mesh gets a second, faster path, made deterministic with two fake peers (raw ZeroMQ XPUBs in
// this process) carrying one origin's topic to a real bridge: the slow path (a relay) carries 1..29, the
// fast one (a direct link that just subscribed) starts at 40 and overtakes it; then the slow path catches
// up with 30..60. Every message arrives once: 30..39 late, 40..60 from the slow path suppressed. (The CI run
// of the triangle above lost such a block when the tracker kept only the highest sequence.)
TEST(BridgePathTest, AFasterPathJoiningLateLosesNothingTheSlowerOneStillCarries) {
  auto topology = Topology::loopback(1);
  BridgeHost b(*topology, 0, "b");
  FakePeer slow_path, fast_path;
  std::string peers;
  for (const FakePeer* path : {&slow_path, &fast_path}) {
    ASSERT_FALSE(path->endpoint().empty()) << "cannot bind a fake peer on loopback";
    peers += "[[peer]]\nendpoint = \"" + path->endpoint() + "\"\n";
  }
  ASSERT_TRUE(b.start_bridge("name = \"b\"\n" + b.bus_section() +
                             "[network]\nstats_interval_ms = 100\ndiscovery_interval_ms = 20\n" + peers +
                             "[[rule]]\npattern = \"mesh/**\"\n"));
  Bus bus = b.connect("receiver");
  auto sub = bus.subscriber("mesh/t", {.topic = {.depth = 256}});
  ASSERT_TRUE(sub.ok()) << sub.status().to_string();
  for (void* fake : {slow_path.socket(), fast_path.socket()}) {  // the bridge subscribes along both paths
    char buf[300];
    const int n = zmq_recv(fake, buf, sizeof buf, 0);
    ASSERT_EQ(std::string(buf, static_cast<std::size_t>(std::max(n, 0))), std::string("\1mesh/t\0", 8));
  }
  const std::string topic("mesh/t\0", 7);
  auto send = [&](void* path, uint64_t first, uint64_t last) {
    for (uint64_t seq = first; seq <= last; ++seq) {
      const Numbered m = numbered(seq);
      const bridge::WireRecord record{.sequence = seq, .payload = std::as_bytes(std::span(&m, 1))};
      const std::vector<std::byte> batch =
          bridge::encode_batch({.origin_id = 77, .origin_epoch = 1}, std::span(&record, 1));
      zmq_send(path, topic.data(), topic.size(), ZMQ_SNDMORE);
      zmq_send(path, batch.data(), batch.size(), 0);
    }
  };
  std::multiset<uint64_t> got;
  auto receive = [&](std::size_t count) {
    while (got.size() < count) {
      Sample m = sub->take(10s);
      if (!m) return false;
      Numbered n;
      if (!read_numbered(m.bytes(), &n)) return false;
      got.insert(n.number);
    }
    return true;
  };
  void* slow = slow_path.socket();
  void* fast = fast_path.socket();
  send(slow, 1, 29);
  ASSERT_TRUE(receive(29));
  send(fast, 40, 60);
  ASSERT_TRUE(receive(50)) << "the fast path's messages did not arrive";
  send(slow, 30, 60);
  ASSERT_TRUE(receive(60)) << "the slow path's 30..39 were lost";
  EXPECT_FALSE(sub->take(300ms)) << "a copy was delivered twice";
  for (uint64_t seq = 1; seq <= 60; ++seq) EXPECT_EQ(got.count(seq), 1u) << "sequence " << seq;
  EXPECT_TRUE(b.wait_stats([](const toml::table& s) {
    return stat(s, "in", "messages") == 60 && stat(s, "in", "gaps") == 10 && stat(s, "in", "late") == 10 &&
           stat(s, "in", "gaps_filled") == 10 && stat(s, "in", "duplicates") == 21;
  })) << "in: messages "
      << stat(b.bridge_stats(), "in", "messages") << ", gaps " << stat(b.bridge_stats(), "in", "gaps")
      << ", late " << stat(b.bridge_stats(), "in", "late") << ", duplicates "
      << stat(b.bridge_stats(), "in", "duplicates");
}

// A relayed topic whose lossless local topic is full (its subscriber never takes): the bridge waits
// full_timeout once a batch, as the path without relaying does, not once a record (a batch of 256 records
// held the inbound thread, and a stop, for 256 timeouts).
TEST(BridgePathTest, AFullRelayedTopicHoldsTheBridgeOneTimeoutABatchNotOneARecord) {
  auto topology = Topology::loopback(1);
  BridgeHost b(*topology, 0, "b");
  FakePeer origin;
  ASSERT_FALSE(origin.endpoint().empty()) << "cannot bind a fake peer on loopback";
  ASSERT_TRUE(b.start_bridge("name = \"b\"\n" + b.bus_section() + "[network]\nbind = " + b.bind_list() +
                             "\nfull_timeout_ms = 200\ndiscovery_interval_ms = 20\nrelay = true\n"
                             "[[peer]]\nendpoint = \"" +
                             origin.endpoint() +
                             "\"\n[[rule]]\npattern = \"mesh/**\"\npolicy = \"lossless\"\ndepth = 2\n"));
  Bus bus = b.connect("stuck");
  auto stuck = bus.subscriber("mesh/t");  // never takes: the topic is full after two messages
  ASSERT_TRUE(stuck.ok()) << stuck.status().to_string();
  // A downstream peer that wants mesh/t: what arrives from the origin is relayed to it.
  void* context = zmq_ctx_new();
  void* downstream = zmq_socket(context, ZMQ_XSUB);
  const int linger = 0;
  zmq_setsockopt(downstream, ZMQ_LINGER, &linger, sizeof linger);
  std::string bind = b.bind_list();  // ["tcp://127.0.0.1:PORT"]
  bind = bind.substr(2, bind.find('"', 2) - 2);
  ASSERT_EQ(zmq_connect(downstream, bind.c_str()), 0) << bind;
  const std::string subscribe("\1mesh/t\0", 8);
  zmq_send(downstream, subscribe.data(), subscribe.size(), 0);
  char buf[300];
  const int n = zmq_recv(origin.socket(), buf, sizeof buf, 0);  // the bridge subscribed upstream
  ASSERT_EQ(std::string(buf, static_cast<std::size_t>(std::max(n, 0))), subscribe);
  ASSERT_TRUE(b.wait_stats([](const toml::table& s) { return stat(s, "out", "remote_topics") >= 1; }))
      << "the downstream subscription never reached the bridge";

  std::vector<Numbered> messages;
  std::vector<bridge::WireRecord> records;
  for (uint64_t seq = 1; seq <= 256; ++seq) messages.push_back(numbered(seq));
  for (uint64_t seq = 1; seq <= 256; ++seq) {
    records.push_back({.sequence = seq, .payload = std::as_bytes(std::span(&messages[seq - 1], 1))});
  }
  const std::vector<std::byte> batch = bridge::encode_batch({.origin_id = 77, .origin_epoch = 1}, records);
  const std::string topic("mesh/t\0", 7);
  zmq_send(origin.socket(), topic.data(), topic.size(), ZMQ_SNDMORE);
  zmq_send(origin.socket(), batch.data(), batch.size(), 0);
  ASSERT_TRUE(b.wait_stats([](const toml::table& s) { return stat(s, "in", "publish_failed") > 0; }))
      << "the full topic never timed out";
  const auto start = Clock::now();
  EXPECT_EQ(b.stop_bridge(SIGTERM), 0) << "the bridge did not stop (killed after 20 s)";
  EXPECT_LT(Clock::now() - start, 10s);
  zmq_close(downstream);
  zmq_ctx_term(context);
}

}  // namespace
}  // namespace shmbus::test

// The `shmbus` command line against a real daemon.
#include <gtest/gtest.h>

#include <optional>
#include <thread>

#include <toml++/toml.h>

#include "support/test_daemon.h"

namespace shmbus::test {
namespace {

TEST(CliTest, SubPrintsWhatPubSends) {
  TestDaemon daemon;
  ChildProcess sub({SHMBUS_CLI_PATH, "sub", "demo", "--count", "3", "--timeout", "20"});
  // The subscriber is attached once the topic shows one subscriber.
  for (int i = 0; i < 1000 && run_process({SHMBUS_CLI_PATH, "list"}).out.find("demo ") == std::string::npos;
       ++i) {
  }
  const auto pub = run_process({SHMBUS_CLI_PATH, "pub", "demo", "hello", "--count", "3"});
  EXPECT_EQ(pub.status, 0);
  EXPECT_EQ(sub.read_all(20), "hello\nhello\nhello\n");
  EXPECT_EQ(sub.wait(), 0);
}

TEST(CliTest, PubFromStdinAndJsonAndHexFormats) {
  TestDaemon daemon;
  ChildProcess json({SHMBUS_CLI_PATH, "sub", "lines", "--count", "2", "--format", "json", "--timeout", "20"});
  ChildProcess hex({SHMBUS_CLI_PATH, "sub", "lines", "--count", "2", "--format", "hex", "--timeout", "20"});
  for (int i = 0; i < 1000; ++i) {
    const auto list = run_process({SHMBUS_CLI_PATH, "list"}).out;
    if (list.find("lines                           0     2") != std::string::npos) break;
  }
  const auto pub = run_process({SHMBUS_CLI_PATH, "pub", "lines", "-"}, 20, "one\n\"two\"\n");
  EXPECT_EQ(pub.status, 0);
  const std::string j1 = json.read_line(), j2 = json.read_line();
  EXPECT_NE(j1.find("\"data\":\"one\""), std::string::npos) << j1;
  EXPECT_NE(j2.find("\"data\":\"\\\"two\\\"\""), std::string::npos) << j2;
  EXPECT_NE(j1.find("\"sequence\":1"), std::string::npos);
  EXPECT_EQ(hex.read_line(), "6f6e65");
}

// A batch of small messages shares slots (shm/packed_slot.h): the publisher, the subscriber and `stats` count
// messages, not slots.
TEST(CliTest, StatsCountPackedBatchMessagesNotSlots) {
  TestDaemon daemon;
  Bus bus = daemon.connect("stats-packed");
  PublisherOptions o;
  o.topic.max_message_size = 1024;
  o.topic.policy = Policy::kLossless;  // only a lossless ring packs
  auto made = bus.publisher("stats/packed", o);
  auto sub = bus.subscriber("stats/packed");
  ASSERT_TRUE(made.ok() && sub.ok());
  std::optional<Publisher> pub(std::move(made).value());
  std::vector<std::span<const std::byte>> batch(70, std::as_bytes(std::span("abcd", 4)));
  ASSERT_EQ(pub->publish_batch(batch).value(), 70u);
  ASSERT_TRUE(pub->publish(std::as_bytes(std::span("efgh", 4))).ok());
  EXPECT_EQ(pub->published(), 71u);
  for (uint64_t i = 1; i <= 71; ++i) {
    auto m = sub->take(std::chrono::seconds(1));
    ASSERT_TRUE(m) << i;
    EXPECT_EQ(m.sequence(), i);
  }
  const auto r = run_process({SHMBUS_CLI_PATH, "stats", "--json"});
  ASSERT_EQ(r.status, 0);
  EXPECT_NE(r.out.find("\"messages\" : 71"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("\"published\" : 71"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("\"bytes\" : 284"), std::string::npos) << r.out;
  // The publisher leaves; its drained ring is freed and retired: the topic still counts 71 messages. An empty
  // poll publishes the subscriber's cursor (it moved less than a quarter ring), so the daemon sees it
  // drained.
  EXPECT_FALSE(sub->try_take());
  pub.reset();
  std::string after;
  for (int i = 0; i < 100; ++i) {  // up to 10 s (liveness)
    after = run_process({SHMBUS_CLI_PATH, "stats", "--json"}).out;
    if (after.find("\"published\"") == std::string::npos) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  EXPECT_EQ(after.find("\"published\""), std::string::npos) << "the ring was not freed\n" << after;
  EXPECT_NE(after.find("\"messages\" : 71"), std::string::npos) << after;
}

TEST(CliTest, StatsJsonIsMachineReadable) {
  TestDaemon daemon;
  Bus bus = daemon.connect("stats-test");
  auto pub = bus.publisher("stats/topic");
  auto sub = bus.subscriber("stats/topic");
  ASSERT_TRUE(pub.ok() && sub.ok());
  for (int i = 0; i < 50; ++i) ASSERT_TRUE(pub->publish(std::as_bytes(std::span("abcd", 4))).ok());
  for (int i = 0; i < 50; ++i) ASSERT_TRUE(sub->take(std::chrono::seconds(1)));
  const auto r = run_process({SHMBUS_CLI_PATH, "stats", "--json"});
  ASSERT_EQ(r.status, 0);
  EXPECT_NE(r.out.find("\"name\" : \"stats/topic\""), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("\"messages\" : 50"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("\"name\" : \"stats-test\""), std::string::npos) << r.out;
  // What the issue asks per topic (bytes, drops, queue depth, publish->take latency) and per participant.
  for (const char* key : {"\"bytes\" : 200", "\"drops\" : 0", "\"slots_in_use\"", "\"latency_p50_ns\"",
                          "\"latency_p99_ns\"", "\"pid\" : ", "\"uid\" : "}) {
    EXPECT_NE(r.out.find(key), std::string::npos) << key << " missing in\n" << r.out;
  }
  const auto text = run_process({SHMBUS_CLI_PATH, "stats"});
  EXPECT_EQ(text.status, 0);
  EXPECT_NE(text.out.find("stats/topic"), std::string::npos);
  const auto hz = run_process({SHMBUS_CLI_PATH, "hz", "stats/topic", "--count", "1"});
  EXPECT_EQ(hz.status, 0);
  EXPECT_NE(hz.out.find("msg/s"), std::string::npos);
}

TEST(CliTest, PubRateSpacesTheMessages) {
  TestDaemon daemon;
  ChildProcess sub({SHMBUS_CLI_PATH, "sub", "rate/topic", "--count", "5"});
  Bus bus = daemon.connect();
  for (int i = 0; i < 500 && bus.daemon_statistics().value().find("rate/topic") == std::string::npos; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  const auto start = std::chrono::steady_clock::now();
  const auto pub =
      run_process({SHMBUS_CLI_PATH, "pub", "rate/topic", "tick", "--count", "5", "--rate", "20"});
  const auto took = std::chrono::steady_clock::now() - start;
  EXPECT_EQ(pub.status, 0);
  EXPECT_EQ(sub.read_all(30), "tick\ntick\ntick\ntick\ntick\n");
  // 5 messages at 20 Hz take at least 4 periods (generous: a liveness-style lower bound, not a timing check).
  EXPECT_GE(took, std::chrono::milliseconds(150));
}

TEST(CliTest, NoDaemonIsOneLineAndNonZeroFast) {
  const auto start = std::chrono::steady_clock::now();
  const auto r = run_process(
      {SHMBUS_CLI_PATH, "--instance", "nobody-here", "--runtime-dir", "/tmp/shmbus-none", "list"});
  EXPECT_EQ(r.status, 1);
  EXPECT_TRUE(r.out.empty());
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(5));
  const auto bad = run_process({SHMBUS_CLI_PATH, "pub", "bad topic", "x"});
  EXPECT_NE(bad.status, 0);
}

}  // namespace
}  // namespace shmbus::test

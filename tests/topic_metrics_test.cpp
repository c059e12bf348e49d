// Queueing metrics of topic subscribers in `shmbus stats`, through a real daemon: a publisher at a steady
// rate and a slower subscriber in another process (fork), so that a backlog builds. The checks are generous
// on purpose (the daemon samples every 100 ms; machines are loaded): the figures exist and have the right
// sign.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <string>
#include <thread>
#include <vector>

#include "shmbus/bus.h"
#include "support/test_daemon.h"

namespace shmbus::test {
namespace {

using namespace std::chrono_literals;

constexpr const char* kTopic = "metrics/slow";
constexpr int kMessages = 1000;

TopicSettings settings() {
  TopicSettings s;
  s.max_message_size = 64;
  s.depth = 2048;  // room for the whole backlog: the publisher never waits for the subscriber
  s.policy = Policy::kLossless;
  s.max_publishers = 2;
  return s;
}

// Every number that follows `"key" : ` in a JSON document.
std::vector<double> json_numbers(const std::string& json, const std::string& key) {
  std::vector<double> out;
  const std::string needle = "\"" + key + "\" : ";
  for (std::size_t at = json.find(needle); at != std::string::npos; at = json.find(needle, at + 1)) {
    out.push_back(std::strtod(json.c_str() + at + needle.size(), nullptr));
  }
  return out;
}

// The subscriber process: takes each message, then works 5 ms on it (five times the publishing interval).
int slow_subscriber(const TestDaemon& daemon, int ready_fd) {
  Bus bus = daemon.connect("slow-subscriber");
  SubscriberOptions o;
  o.topic = settings();
  auto sub = bus.subscriber(kTopic, o);
  if (!sub.ok()) return 2;
  if (write(ready_fd, "r", 1) != 1) return 3;
  for (int taken = 0; taken < kMessages;) {
    Sample s = sub->take(10s);
    if (!s) return 4;
    ++taken;
    std::this_thread::sleep_for(5ms);
  }
  return 0;
}

TEST(TopicMetricsTest, StatsReportQueueingMetricsOfABackloggedSubscriber) {
  TestDaemon daemon;
  int ready[2];
  ASSERT_EQ(pipe(ready), 0);
  // Fork before this process creates a Bus (and its threads).
  const pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    close(ready[0]);
    int rc = 99;
    try {
      rc = slow_subscriber(daemon, ready[1]);
    } catch (...) {
    }
    _exit(rc);
  }
  close(ready[1]);
  char byte = 0;
  ASSERT_EQ(read(ready[0], &byte, 1), 1) << "the subscriber process did not attach";
  close(ready[0]);

  Bus bus = daemon.connect("steady-publisher");
  PublisherOptions o;
  o.topic = settings();
  auto pub = bus.publisher(kTopic, o);
  ASSERT_TRUE(pub.ok()) << pub.status().to_string();
  const char payload[16] = "queueing";
  auto next = std::chrono::steady_clock::now();
  for (int i = 0; i < kMessages; ++i) {
    ASSERT_TRUE(pub->publish(std::as_bytes(std::span(payload))).ok());
    next += 1ms;
    std::this_thread::sleep_until(next);
  }
  std::this_thread::sleep_for(300ms);  // a few more daemon samples with the backlog standing

  const auto json = run_process({SHMBUS_CLI_PATH, "stats", "--json"});
  ASSERT_EQ(json.status, 0);
  const auto arrival = json_numbers(json.out, "arrival_rate");  // the topic's and the subscriber's
  ASSERT_EQ(arrival.size(), 2u) << json.out;
  for (double lambda : arrival) EXPECT_GT(lambda, 0.0) << json.out;
  const auto queue_length = json_numbers(json.out, "queue_length");
  ASSERT_EQ(queue_length.size(), 1u) << json.out;
  EXPECT_GT(queue_length[0], 0.0) << json.out;
  const auto waiting = json_numbers(json.out, "waiting_time_s");
  ASSERT_EQ(waiting.size(), 1u) << json.out;
  EXPECT_GT(waiting[0], 0.0) << json.out;
  const auto backlog = json_numbers(json.out, "backlog");
  ASSERT_EQ(backlog.size(), 1u) << json.out;
  EXPECT_GT(backlog[0], 0.0) << json.out;
  const auto little = json_numbers(json.out, "littles_law_error");
  ASSERT_EQ(little.size(), 1u) << json.out;
  EXPECT_GE(little[0], 0.0);
  EXPECT_LE(little[0], 1.0);
  EXPECT_EQ(json_numbers(json.out, "littles_law_lambda_w").size(), 1u) << json.out;
  EXPECT_EQ(json_numbers(json.out, "service_rate").size(), 1u) << json.out;
  EXPECT_EQ(json_numbers(json.out, "utilisation").size(), 1u) << json.out;
  EXPECT_EQ(json_numbers(json.out, "late_wakeups").size(), 1u) << json.out;  // its value: pubsub_test

  const auto text = run_process({SHMBUS_CLI_PATH, "stats"});
  ASSERT_EQ(text.status, 0);
  EXPECT_NE(text.out.find("LITTLE_ERR"), std::string::npos) << text.out;
  EXPECT_NE(text.out.find("LATE_WAKEUPS"), std::string::npos) << text.out;
  EXPECT_NE(text.out.find(kTopic), std::string::npos) << text.out;

  // The subscriber would need seconds more to drain its backlog: stop it.
  kill(child, SIGKILL);
  int status = 0;
  waitpid(child, &status, 0);
  EXPECT_TRUE(WIFSIGNALED(status) || (WIFEXITED(status) && WEXITSTATUS(status) == 0));
}

}  // namespace
}  // namespace shmbus::test

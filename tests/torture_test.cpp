// Crash torture: while a survivor publisher streams to a survivor subscriber on a lossless and a lossy topic,
// victims of every kind (publishers mid-publish, subscribers mid-take, holders of samples, publishers
// mid-loan, publishers blocked on a full ring, subscribers asleep on a futex) are started, reach that state
// (each says so), and are kill -9'd at a random moment within the next 5 ms. After every round: the daemon
// has reaped the victim (the endpoint counts are back to the survivors') and both survivor publishers are
// still publishing. At the end: the survivors got every message of each other, in order; the topic's
// accounting (slots in use, loans, endpoints) is back to its baseline; nothing is left in /dev/shm.
// Rounds: $SHMBUS_TORTURE_ROUNDS (default 200; the manual long mode is 1000).
#include <gtest/gtest.h>
#include <signal.h>

#include <toml++/toml.h>
#include <cstdlib>
#include <random>
#include <thread>

#include "support/peer_output.h"
#include "support/test_daemon.h"

namespace shmbus::test {
namespace {

using namespace std::chrono_literals;

int rounds() {
  const char* env = std::getenv("SHMBUS_TORTURE_ROUNDS");
  return env ? std::max(1, std::atoi(env)) : 200;
}

const toml::table* topic_stats(const toml::table& doc, const std::string& name) {
  if (const auto* topics = doc["topic"].as_array()) {
    for (const auto& t : *topics) {
      if (t.as_table()->at("name").value<std::string>() == name) return t.as_table();
    }
  }
  return nullptr;
}

std::string policy_of(const std::string& topic) {
  return topic == "torture/lossy" ? "lossy" : "lossless";
}

int64_t stat(const toml::table* t, const char* key) {
  return t ? t->at(key).value<int64_t>().value_or(-1) : -1;
}

// Messages published so far by the active publishers of `topic`, from the daemon's statistics.
int64_t published(const toml::table& doc, const std::string& topic) {
  const toml::table* t = topic_stats(doc, topic);
  int64_t total = 0;
  if (t && t->at("publisher").as_array()) {
    for (const auto& p : *t->at("publisher").as_array()) {
      if (p.as_table()->at("state").value<std::string>() == "active")
        total += p.as_table()->at("published").value<int64_t>().value_or(0);
    }
  }
  return total;
}

// Endpoints a topic has in the statistics (0 when the daemon dropped the topic: nobody uses it).
int64_t endpoints(const toml::table& doc, const std::string& topic, const char* kind) {
  const toml::table* t = topic_stats(doc, topic);
  return t ? stat(t, kind) : 0;
}

TEST(TortureTest, SurvivorsKeepFlowingAndNothingLeaks) {
  TestDaemon daemon(
      "[defaults]\ndepth = 16\n[[topic]]\npattern = \"torture/lossless\"\npolicy = \"lossless\"\n"
      "max_message_size = 256\n[[topic]]\npattern = \"torture/lossy\"\npolicy = \"lossy\"\n"
      "max_message_size = 256\n[[topic]]\npattern = \"torture/stalled\"\npolicy = \"lossless\"\n");
  const std::vector<std::string> topics = {"torture/lossless", "torture/lossy"};
  std::vector<std::unique_ptr<ChildProcess>> subscribers, publishers;
  for (const auto& topic : topics) {
    subscribers.push_back(std::make_unique<ChildProcess>(
        std::vector<std::string>{TEST_PEER_PATH, "subscribe", topic, "1000000000", "5", "4242"}));
    ASSERT_EQ(subscribers.back()->read_line(), "ready");
  }
  for (const auto& topic : topics) {
    publishers.push_back(std::make_unique<ChildProcess>(std::vector<std::string>{
        TEST_PEER_PATH, "publish", topic, "0", "200", policy_of(topic), "1", "4242"}));
  }
  std::mt19937 random(12345);
  const int total = rounds();
  int kills = 0;
  int64_t last_published[2] = {0, 0};
  for (int round = 0; round < total; ++round) {
    const std::string topic = topics[random() % topics.size()];
    std::vector<std::string> argv;
    std::vector<std::string> expect;      // the victim's lines saying it reached its state
    std::unique_ptr<ChildProcess> stall;  // case 4: what keeps the ring full; it goes after the victim
    switch (random() % 6) {
      case 0:  // mid-publish
        argv = {TEST_PEER_PATH, "publish", topic, "100000000", "200", policy_of(topic)},
        expect = {"publishing"};
        break;
      case 1:  // mid-take
        argv = {TEST_PEER_PATH, "subscribe", topic, "1000000", "5"}, expect = {"ready"};
        break;
      case 2:  // holding messages
        argv = {TEST_PEER_PATH, "hold", topic, "3"}, expect = {"ready", "holding"};
        break;
      case 3:  // mid-loan
        argv = {TEST_PEER_PATH, "loan", topic}, expect = {"loaned"};
        break;
      case 4:  // lossless publisher blocked on a full ring: a subscriber that takes one message, then nothing
        stall = std::make_unique<ChildProcess>(
            std::vector<std::string>{TEST_PEER_PATH, "hold", "torture/stalled", "1"});
        ASSERT_EQ(stall->read_line(), "ready");
        argv = {TEST_PEER_PATH, "block", "torture/stalled"}, expect = {"blocked"};
        break;
      case 5:  // a subscriber asleep on the futex of a quiet topic
        argv = {TEST_PEER_PATH, "subscribe", "torture/quiet", "1", "30"}, expect = {"ready"};
        break;
    }
    setenv("SHMBUS_TEST_PEER_ANNOUNCE", "1", 1);
    ChildProcess victim(argv);
    unsetenv("SHMBUS_TEST_PEER_ANNOUNCE");
    for (const auto& line : expect) {
      const std::string got = victim.read_line(10);
      ASSERT_EQ(got.substr(0, line.size()), line)
          << "round " << round << ": the victim did not reach its state";
    }
    std::this_thread::sleep_for(std::chrono::microseconds(random() % 5000));
    victim.kill(SIGKILL);
    ASSERT_EQ(victim.wait(10), 128 + SIGKILL) << "round " << round;
    ++kills;
    if (stall) stall->kill(SIGKILL), stall->wait(10);
    // Back to the survivors: one publisher and one subscriber per topic, none on the others; and the
    // survivors publish on. The daemon reaps a dead participant when its connection closes: poll, 10 s at
    // most.
    std::string state;
    const auto deadline = std::chrono::steady_clock::now() + 10s;
    for (;;) {
      const auto doc = toml::parse(daemon.statistics());
      bool baseline = endpoints(doc, "torture/quiet", "subscribers") == 0 &&
                      endpoints(doc, "torture/stalled", "publishers") == 0 &&
                      endpoints(doc, "torture/stalled", "subscribers") == 0;
      state.clear();
      for (std::size_t i = 0; i < topics.size(); ++i) {
        const int64_t pubs = endpoints(doc, topics[i], "publishers"),
                      subs = endpoints(doc, topics[i], "subscribers");
        const int64_t now = published(doc, topics[i]);
        baseline = baseline && pubs == 1 && subs == 1 && now > last_published[i];
        state += topics[i] + ": " + std::to_string(pubs) + " publishers, " + std::to_string(subs) +
                 " subscribers, published " + std::to_string(now) + " (before " +
                 std::to_string(last_published[i]) + "); ";
      }
      if (baseline) {
        for (std::size_t i = 0; i < topics.size(); ++i) last_published[i] = published(doc, topics[i]);
        break;
      }
      ASSERT_LT(std::chrono::steady_clock::now(), deadline) << "round " << round << ": " << state;
      std::this_thread::sleep_for(5ms);
    }
  }
  // Stop the survivor publishers; their subscribers drain and report after 5 s of silence.
  std::vector<std::string> sent;
  for (auto& p : publishers) {
    p->kill(SIGTERM);
    sent.push_back(p->read_line(30));
    EXPECT_EQ(p->wait(30), 0);
  }
  std::this_thread::sleep_for(1s);  // victims' leftovers reaped, survivors drained
  const auto doc = toml::parse(daemon.statistics());
  for (const auto& topic : topics) {
    const toml::table* t = topic_stats(doc, topic);
    ASSERT_NE(t, nullptr) << topic;
    EXPECT_EQ(stat(t, "subscribers"), 1) << topic << ": only the survivor remains";
    EXPECT_EQ(stat(t, "publishers"), 0) << topic;
    EXPECT_EQ(stat(t, "loaned"), 0) << topic;
    EXPECT_EQ(stat(t, "slots_in_use"), 0) << topic;
  }
  for (std::size_t i = 0; i < topics.size(); ++i) {
    const std::string got = subscribers[i]->read_line(60);
    EXPECT_EQ(field(got, "order_errors"), 0u) << topics[i] << ": " << got;
    EXPECT_EQ(field(got, "corrupt"), 0u) << topics[i] << ": " << got;
    if (topics[i] == "torture/lossless") {
      EXPECT_EQ(field(got, "received"), field(sent[i], "published")) << got << " / " << sent[i];
      EXPECT_EQ(field(got, "checksum"), field(sent[i], "checksum")) << got << " / " << sent[i];
      EXPECT_EQ(field(got, "gaps"), 0u) << got;
    } else {
      EXPECT_GT(field(got, "received"), 0u) << got;
    }
    EXPECT_EQ(subscribers[i]->wait(30), 0);
  }
  RecordProperty("rounds", total);
  RecordProperty("kills", kills);
  std::printf("torture: %d rounds, %d kill -9; lossless survivor received %s\n", total, kills,
              sent.empty() ? "?" : sent[0].c_str());
  const auto deadline = std::chrono::steady_clock::now() + 5s;
  while (!daemon.segments().empty() && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(10ms);
  EXPECT_TRUE(daemon.segments().empty()) << "no segment outlives its last endpoint";
}

}  // namespace
}  // namespace shmbus::test

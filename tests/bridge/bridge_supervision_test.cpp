// A bridge run by the daemon ([[process]] in shmbusd's configuration): it shows in `shmbus list` with its
// pid, and when it is killed outright the daemon starts a new one, across which messages flow again.
#include <gtest/gtest.h>
#include <signal.h>

#include <optional>
#include <sstream>
#include <thread>

#include "common_messages.h"
#include "support/bridge_fixture.h"

namespace shmbus::test {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

const char* kRules = R"(
[[rule]]
pattern = "sup/**"
policy = "lossless"
depth = 1024
)";

// Probe messages carry numbers from here on; counted messages stay below.
constexpr uint64_t kProbeBase = 1'000'000'000;

struct Listed {
  int64_t pid = -1;
  std::string state;
  int64_t restarts = -1;
};

// The row of supervised process `name` in `shmbus list` (columns PROCESS PID STATE RESTARTS).
std::optional<Listed> listed(const BridgeHost& host, const std::string& name) {
  std::istringstream in(host.cli({"list"}).out);
  bool in_section = false;
  for (std::string line; std::getline(in, line);) {
    std::istringstream words(line);
    std::string first;
    words >> first;
    if (first == "PROCESS") {
      in_section = true;
    } else if (in_section && first == name) {
      Listed l;
      if (words >> l.pid >> l.state >> l.restarts) return l;
    }
  }
  return std::nullopt;
}

// Waits until `shmbus list` shows `name` running with a pid other than `not_pid`.
std::optional<Listed> wait_running(const BridgeHost& host, const std::string& name, int64_t not_pid,
                                   std::chrono::seconds limit = 10s) {
  const auto deadline = Clock::now() + limit;
  while (Clock::now() < deadline) {
    auto l = listed(host, name);
    if (l && l->state == "running" && l->pid > 0 && l->pid != not_pid) return l;
    std::this_thread::sleep_for(50ms);
  }
  return std::nullopt;
}

void publish(Publisher& pub, uint64_t number) {
  const Numbered m = numbered(number);
  Status s;
  while ((s = pub.publish(std::as_bytes(std::span(&m, 1)))).code() == Errc::kTimeout) {
  }
  ASSERT_TRUE(s.ok()) << s.to_string();
}

// Probes until a message crosses (the route A -> B is up), lets stragglers arrive, then sends `count`
// numbered messages from `first` and expects exactly those on B, intact and in order.
void expect_flow(Publisher& pub, Subscriber& sub, uint64_t first, uint64_t count, const char* when) {
  bool crossed = false;
  for (uint64_t i = 0; i < 2000 && !crossed; ++i) {  // 20 s at most
    const Numbered probe = numbered(kProbeBase + i);
    (void)pub.publish(std::as_bytes(std::span(&probe, 1)));  // may time out while the bridge is away
    crossed = static_cast<bool>(sub.take(10ms));
  }
  ASSERT_TRUE(crossed) << "no probe crossed " << when;
  while (sub.take(300ms)) {
  }
  for (uint64_t n = first; n < first + count; ++n) ASSERT_NO_FATAL_FAILURE(publish(pub, n));
  uint64_t expected = first, bad = 0;
  while (expected < first + count) {
    Sample m = sub.take(10s);
    ASSERT_TRUE(m) << when << ": message " << expected << " never arrived";
    Numbered got;
    if (!read_numbered(m.bytes(), &got)) {
      ++bad;
      continue;
    }
    if (got.number >= kProbeBase) continue;  // a late probe
    ASSERT_EQ(got.number, expected) << when << ": lost or reordered";
    ++expected;
  }
  EXPECT_EQ(bad, 0u) << when << ": corrupted messages";
}

class BridgeSupervisionTest : public BridgeTest {};

TEST_P(BridgeSupervisionTest, DaemonRestartsAKilledBridgeAndFlowResumes) {
  make_hosts(2, {{0, 1}});
  if (IsSkipped()) return;
  // A's daemon, restarted with a configuration that runs A's bridge. B's bridge is started by the test.
  const std::string bridge_config =
      host(0).write_bridge_config(config(0, {}, {1}, kRules, "lossless = true"));
  host(0).stop_daemon();
  ASSERT_TRUE(host(0).start_daemon("[[process]]\nname = \"bridge-a\"\ncommand = [\"" SHMBUS_BRIDGE_PATH
                                   "\", \"--config\", \"" +
                                   bridge_config + "\", \"--log-level\", \"warn\"]\n"));
  ASSERT_TRUE(host(1).start_bridge(config(1, {0}, {}, kRules, "lossless = true")));

  const auto first = wait_running(host(0), "bridge-a", -1);
  ASSERT_TRUE(first) << "the supervised bridge never showed as running in `shmbus list`:\n"
                     << host(0).cli({"list"}).out;
  EXPECT_EQ(first->restarts, 0);
  // The listed pid is the bridge's own: it is the pid in the statistics the bridge publishes.
  EXPECT_TRUE(host(0).wait_stats([&](const toml::table& s) {
    return stat(s, "bridge", "pid") == first->pid;
  })) << "the bridge's statistics never named pid "
      << first->pid;

  Bus bus_b = host(1).connect("receiver");
  auto sub = bus_b.subscriber("sup/data", {.max_held_samples = 64});
  ASSERT_TRUE(sub.ok()) << sub.status().to_string();
  Bus bus_a = host(0).connect("sender");
  auto pub = bus_a.publisher(
      "sup/data",
      {.topic = {.max_message_size = sizeof(Numbered), .depth = 1024, .policy = Policy::kLossless},
       .full_timeout = 1000ms});
  ASSERT_TRUE(pub.ok()) << pub.status().to_string();
  ASSERT_NO_FATAL_FAILURE(expect_flow(*pub, *sub, 1, 1000, "before the kill"));

  // kill -9: no goodbye to the daemon, the peer or the local bus.
  ASSERT_EQ(kill(static_cast<pid_t>(first->pid), SIGKILL), 0);
  const auto second = wait_running(host(0), "bridge-a", first->pid);
  ASSERT_TRUE(second) << "the daemon did not restart the bridge within 10 s:\n" << host(0).cli({"list"}).out;
  EXPECT_EQ(second->restarts, 1);
  EXPECT_TRUE(kill(static_cast<pid_t>(first->pid), 0) != 0 && errno == ESRCH)
      << "the killed bridge was not reaped";
  EXPECT_TRUE(
      host(0).wait_stats([&](const toml::table& s) { return stat(s, "bridge", "pid") == second->pid; }));
  ASSERT_NO_FATAL_FAILURE(expect_flow(*pub, *sub, 1001, 1000, "after the restart"));
}

INSTANTIATE_TEST_SUITE_P(Net, BridgeSupervisionTest, ::testing::Values(Net::kNamespaces, Net::kLoopback),
                         net_name);

}  // namespace
}  // namespace shmbus::test

// Validators and decoders: topic names, patterns, configuration, control records.
#include <gtest/gtest.h>
#include <sched.h>

#include <chrono>
#include <cstring>
#include <thread>
#include <vector>

#include "bus/control_protocol.h"
#include "bus/stamp_clock.h"
#include "daemon/daemon_config.h"
#include "shm/topic_segment_layout.h"
#include "shmbus/topic_name.h"
#include "shmbus/topic_pattern.h"

namespace shmbus {
namespace {

TEST(TopicNameTest, AcceptsHierarchicalNames) {
  for (const char* ok : {"a", "robot/arm/pose", "A-b_c.d/0", "x/y/z/w/v"}) {
    EXPECT_TRUE(validate_topic_name(ok).ok()) << ok;
  }
}

TEST(TopicNameTest, RejectsBadNamesWithAReason) {
  for (const char* bad : {"", "/a", "a/", "a//b", "a b", "a/*", "ü", "a\nb"}) {
    const Status s = validate_topic_name(bad);
    EXPECT_EQ(s.code(), Errc::kInvalidTopic) << bad;
    EXPECT_FALSE(s.message().empty());
  }
  EXPECT_EQ(validate_topic_name(std::string(256, 'a')).code(), Errc::kInvalidTopic);
  EXPECT_TRUE(validate_topic_name(std::string(255, 'a')).ok());
}

TEST(TopicPatternTest, MatchesOneAndManyLevels) {
  EXPECT_TRUE(topic_matches("robot/*/pose", "robot/arm/pose"));
  EXPECT_FALSE(topic_matches("robot/*/pose", "robot/arm/left/pose"));
  EXPECT_TRUE(topic_matches("robot/**", "robot/arm/left/pose"));
  EXPECT_TRUE(topic_matches("robot/**", "robot"));
  EXPECT_TRUE(topic_matches("**/pose", "a/b/pose"));
  EXPECT_FALSE(topic_matches("a", "ab"));
  EXPECT_TRUE(topic_matches("**", "anything/at/all"));
  EXPECT_FALSE(validate_topic_pattern("a/b*").ok());
  EXPECT_TRUE(validate_topic_pattern("a/**/b/*").ok());
  // Many '**' stay fast (no exponential backtracking).
  std::string p, t;
  for (int i = 0; i < 60; ++i) p += "**/", t += "x/";
  EXPECT_FALSE(topic_matches(p + "y", t + "z"));
}

TEST(DaemonConfigTest, ParsesTheDocumentedExample) {
  auto c = daemon::parse_daemon_config(daemon::kExampleConfig, "example");
  ASSERT_TRUE(c.ok()) << c.status().to_string();
  ASSERT_EQ(c->topics.size(), 1u);
  EXPECT_EQ(c->topics[0].pattern, "camera/**");
  EXPECT_EQ(*c->topics[0].settings.max_message_size, 4194304u);
  EXPECT_EQ(*c->topics[0].settings.policy, Policy::kLossless);
}

TEST(DaemonConfigTest, ErrorsNameTheLine) {
  auto c = daemon::parse_daemon_config("log_level = \"info\"\n[defaults]\ndepth = \"deep\"\n", "x.toml");
  ASSERT_FALSE(c.ok());
  EXPECT_NE(c.status().message().find("x.toml:3"), std::string::npos) << c.status().message();
  auto bad_syntax = daemon::parse_daemon_config("a = [\n", "y.toml");
  ASSERT_FALSE(bad_syntax.ok());
  EXPECT_NE(bad_syntax.status().message().find("y.toml:"), std::string::npos);
  auto unknown = daemon::parse_daemon_config("\n\nfoo = 1\n", "z.toml");
  ASSERT_FALSE(unknown.ok());
  EXPECT_NE(unknown.status().message().find("z.toml:3: unknown key 'foo'"), std::string::npos);
  EXPECT_FALSE(daemon::parse_daemon_config("[[topic]]\npattern = \"a*\"\n", "p").ok());
  EXPECT_FALSE(daemon::parse_daemon_config("[defaults]\npolicy = \"sometimes\"\n", "p").ok());
  auto who =
      daemon::parse_daemon_config("[defaults]\n\nallow_publish = [\"user:no-such-user-here\"]\n", "a.toml");
  ASSERT_FALSE(who.ok());
  EXPECT_NE(who.status().message().find("a.toml:3"), std::string::npos) << who.status().message();
  EXPECT_NE(who.status().message().find("no such user"), std::string::npos);
  EXPECT_FALSE(daemon::parse_daemon_config("[defaults]\nallow_subscribe = [\"uid:x\"]\n", "p").ok());
  // A float where an integer belongs is an error naming the line, never a conversion (toml++ 3.3 converts
  // 1e24 to int64_t with undefined behaviour; found by the daemon_config fuzzer).
  for (const char* value : {"1e24", "-1e300", "5.0", "nan", "inf"}) {
    auto f = daemon::parse_daemon_config(std::string("\nmax_participants = ") + value + "\n", "f.toml");
    ASSERT_FALSE(f.ok()) << value;
    EXPECT_NE(f.status().message().find("f.toml:2: 'max_participants' must be an integer"), std::string::npos)
        << f.status().message();
  }
  EXPECT_TRUE(daemon::parse_daemon_config(
                  "[defaults]\nallow_subscribe = [\"*\", \"uid:7\", \"gid:0\", \"user:root\"]\n", "p")
                  .ok());
  // Well-formed but impossible topic values are refused at load, naming their line, not at every open of a
  // topic they apply to.
  const std::pair<const char*, const char*> impossible[] = {
      {"depth = 48", "'depth' must be a power of two in 2..1048576"},
      {"depth = 1", "'depth' must be a power of two"},
      {"max_message_size = 0", "'max_message_size' must be 1.."},
      {"max_message_size = 300000000", "'max_message_size' must be 1.."},
      {"max_publishers = 0", "'max_publishers' must be 1..64"},
      {"max_subscribers = 1000", "'max_subscribers' must be 1..256"},
      {"depth = 8\nhistory = 7", "'history' must be at most depth - 2 = 6"}};
  for (const auto& [settings, error] : impossible) {
    for (const std::string section : {"[defaults]", "[[topic]]\npattern = \"a/**\""}) {
      auto t = daemon::parse_daemon_config(section + "\n" + settings + "\n", "t.toml");
      ASSERT_FALSE(t.ok()) << settings;
      EXPECT_NE(t.status().message().find("t.toml:"), std::string::npos) << t.status().message();
      EXPECT_NE(t.status().message().find(error), std::string::npos) << t.status().message();
    }
  }
  EXPECT_TRUE(
      daemon::parse_daemon_config("[defaults]\ndepth = 8\nhistory = 6\nmax_publishers = 64\n", "p").ok());
  EXPECT_FALSE(daemon::load_daemon_config("/").ok()) << "a directory is not a config file";
}

// Publish stamps extrapolated from the TSC stay with steady_clock (the subscriber's clock for latency) and
// never go backwards; across idle gaps and moves between CPUs too. The bound is generous (10 us): the stamp
// is meant to be within tens of nanoseconds, but a preempted test thread may be descheduled between the two
// reads.
TEST(StampClockTest, FollowsSteadyClockAndNeverDecreases) {
  cpu_set_t allowed;
  ASSERT_EQ(sched_getaffinity(0, sizeof allowed, &allowed), 0);
  std::vector<int> cpus;
  for (int c = 0; c < CPU_SETSIZE; ++c)
    if (CPU_ISSET(c, &allowed)) cpus.push_back(c);
  // Restores the thread's CPUs when the test ends, pass or fail.
  struct Restore {
    cpu_set_t set;
    ~Restore() { sched_setaffinity(0, sizeof set, &set); }
  } restore{allowed};
  auto steady = [] {
    return static_cast<int64_t>(std::chrono::steady_clock::now().time_since_epoch().count());
  };
  uint64_t previous = 0;
  int64_t worst = 0, close = 0, samples = 0;
  for (int round = 0; round < 8; ++round) {
    // Each round on the next allowed CPU: a TSC skew between CPUs would show here.
    cpu_set_t one;
    CPU_ZERO(&one);
    CPU_SET(cpus[static_cast<std::size_t>(round) % cpus.size()], &one);
    ASSERT_EQ(sched_setaffinity(0, sizeof one, &one), 0);
    const auto until = std::chrono::steady_clock::now() + std::chrono::milliseconds(20);
    while (std::chrono::steady_clock::now() < until) {
      const int64_t before = steady();
      const uint64_t stamp = detail::stamp_now_ns();
      const int64_t after = steady();
      ASSERT_GE(stamp, previous) << "stamps never decrease within a thread";
      previous = stamp;
      // Distance to the interval [before, after] the stamp was taken in.
      const int64_t s = static_cast<int64_t>(stamp);
      const int64_t off = s < before ? before - s : (s > after ? s - after : 0);
      worst = std::max(worst, off);
      close += off < 10'000;
      ++samples;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5 * (round % 4)));  // idle gaps re-anchor
  }
  EXPECT_GT(samples, 1000);
  EXPECT_GE(close * 100, samples * 99) << "worst " << worst << " ns";
}

TEST(ControlProtocolTest, RejectsMalformedRecords) {
  using namespace detail;
  RecordType type{};
  OpenRequest r{};
  r.header = make_header(RecordType::kOpenPublisher, sizeof r, 1);
  EXPECT_TRUE(check_record(&r, sizeof r, &type).ok());
  EXPECT_EQ(type, RecordType::kOpenPublisher);
  EXPECT_EQ(check_record(&r, sizeof r - 1, &type).code(), Errc::kProtocolError);
  EXPECT_EQ(check_record(&r, 3, &type).code(), Errc::kProtocolError);
  auto bad = r;
  bad.header.magic = 0;
  EXPECT_EQ(check_record(&bad, sizeof bad, &type).code(), Errc::kProtocolError);
  bad = r;
  bad.header.version = 99;
  EXPECT_NE(check_record(&bad, sizeof bad, &type).message().find("version 99"), std::string::npos);
  bad = r;
  bad.header.type = 77;
  EXPECT_EQ(check_record(&bad, sizeof bad, &type).code(), Errc::kProtocolError);
  char field[4] = {'a', 'b', 'c', 'd'};
  EXPECT_FALSE(read_string(field, sizeof field).has_value());
}

TEST(TopicGeometryTest, RefusesAbsurdSizesAndInconsistentHeaders) {
  std::string error;
  EXPECT_FALSE(shm::compute_topic_geometry(0, 8, 1, 1, &error));
  EXPECT_FALSE(shm::compute_topic_geometry(64, 6, 1, 1, &error)) << "depth must be a power of two";
  EXPECT_FALSE(shm::compute_topic_geometry(256u << 20, 1u << 20, 64, 256, &error));
  EXPECT_NE(error.find("MiB"), std::string::npos);
  auto g = shm::compute_topic_geometry(64, 8, 2, 2, &error);
  ASSERT_TRUE(g);
  std::vector<std::byte> memory(g->segment_size + 64);
  auto* base =
      reinterpret_cast<std::byte*>((reinterpret_cast<uintptr_t>(memory.data()) + 63) & ~uintptr_t{63});
  shm::initialize_topic_segment(base, *g, 1, shm::kPolicyLossy, 0, "t", 0);
  EXPECT_TRUE(shm::validate_topic_header(*shm::topic_header(base), g->segment_size, &error));
  EXPECT_FALSE(shm::validate_topic_header(*shm::topic_header(base), g->segment_size - 1, &error));
  shm::topic_header(base)->rings_offset += 64;
  EXPECT_FALSE(shm::validate_topic_header(*shm::topic_header(base), g->segment_size, &error));
}

}  // namespace
}  // namespace shmbus

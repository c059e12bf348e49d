// A segment cut short (ftruncate) by one participant kills nobody: not its peers, not the daemon
// (shm/truncation_guard.h, TopicRegistry::retire_if_cut_short).
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <toml++/toml.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <initializer_list>
#include <ostream>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include "shm/segment.h"
#include "shm/truncation_guard.h"
#include "shm/work_queue_layout.h"
#include "shmbus/bus.h"
#include "shmbus/work_queue.h"
#include "support/durable_queue_file.h"
#include "support/process_stat.h"
#include "support/scratch_dir.h"
#include "support/test_daemon.h"
#include "support/word_bytes.h"

namespace shmbus::test {
namespace {

using namespace std::chrono_literals;

// Another process cuts the shared-memory object `name` to `bytes`; true if it could.
bool cut_in_another_process(const std::string& name, off_t bytes) {
  const pid_t child = fork();
  if (child == 0) {
    const int fd = shm_open(name.c_str(), O_RDWR, 0);
    _exit(fd >= 0 && ftruncate(fd, bytes) == 0 ? 0 : 1);
  }
  int status = 0;
  return child > 0 && waitpid(child, &status, 0) == child && WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

int64_t topics_cut_short(const TestDaemon& daemon) {
  const auto doc = toml::parse(daemon.statistics());
  return doc["topics_cut_short"].value_or(int64_t{-1});
}

// How far a segment is cut, and who meets the cut first.
struct Cut {
  off_t bytes;        // one page (the header survives, the rings do not) or nothing
  bool daemon_first;  // the daemon's tick (it grows the segment back and closes the topic), or the publisher
};
// For gtest's test names and messages (else it prints the struct's bytes, padding included).
void PrintTo(const Cut& cut, std::ostream* out) {
  *out << "{" << cut.bytes << " bytes, " << (cut.daemon_first ? "daemon" : "publisher") << " first}";
}

// Removes a shared-memory object at the end of the scope, pass or fail.
struct SegmentRemovedAtExit {
  std::string name;
  ~SegmentRemovedAtExit() { shm::Segment::remove(name); }
};

// True once `pid` is in the stopped state (SIGSTOP delivered), within 5 s.
bool wait_stopped(pid_t pid) {
  for (int i = 0; i < 500; ++i) {
    if (process_state(pid) == 'T') return true;
    std::this_thread::sleep_for(10ms);
  }
  return false;
}

// The daemon stopped (SIGSTOP) until the end of the scope.
class DaemonStopped {
 public:
  explicit DaemonStopped(pid_t pid) : pid_(pid) { kill(pid_, SIGSTOP); }
  ~DaemonStopped() { kill(pid_, SIGCONT); }
  DaemonStopped(const DaemonStopped&) = delete;
  DaemonStopped& operator=(const DaemonStopped&) = delete;

 private:
  pid_t pid_;
};

// Either way nobody dies: a publisher that writes into a lost page first has its mapping replaced, reads the
// topic as closed and re-opens it; a daemon that sees the cut first grows the segment back and closes the
// topic, so the clients never fault. The daemon retires the topic and makes it anew on the next open; the
// subscriber re-opens too, and messages flow again, in order, on a new segment.
class TruncationTest : public ::testing::TestWithParam<Cut> {};

TEST_P(TruncationTest, ATopicCutShortKillsNeitherItsUsersNorTheDaemonAndComesBackOnANewSegment) {
  const Cut cut = GetParam();
  TestDaemon daemon;
  // A short control timeout: cut to nothing, the publisher meets the cut at its first look at the header and
  // re-opens at once, which waits for the stopped daemon.
  auto connected = Bus::connect({.instance = daemon.instance(),
                                 .runtime_dir = daemon.runtime_dir(),
                                 .name = "test",
                                 .control_timeout = std::chrono::milliseconds(500)});
  ASSERT_TRUE(connected.ok()) << connected.status().to_string();
  Bus bus = std::move(connected).value();
  const TopicSettings topic{.max_message_size = 4096, .depth = 64, .policy = Policy::kLossless};
  auto sub = bus.subscriber<uint64_t>("cut/short", {.topic = topic});
  auto pub = bus.publisher<uint64_t>("cut/short", {.topic = topic});
  ASSERT_TRUE(sub.ok() && pub.ok());
  for (uint64_t v = 0; v < 5; ++v) ASSERT_TRUE(pub->publish(v).ok());
  for (uint64_t v = 0; v < 5; ++v) {
    auto m = sub->take(5s);
    ASSERT_TRUE(m);
    EXPECT_EQ(*m, v);
  }
  const std::vector<std::string> before = daemon.segments();
  ASSERT_EQ(before.size(), 1u);
  const uint64_t replaced_before = shm::replaced_mappings();
  uint64_t next = 1000;
  if (cut.daemon_first) {
    ASSERT_TRUE(cut_in_another_process(before[0], cut.bytes));
    for (int i = 0; i < 1000 && topics_cut_short(daemon) != 1; ++i) std::this_thread::sleep_for(10ms);
    ASSERT_EQ(topics_cut_short(daemon), 1);
  } else {
    const DaemonStopped stopped(daemon.pid());  // no tick until the publisher has met the cut
    ASSERT_TRUE(wait_stopped(daemon.pid()));
    ASSERT_TRUE(cut_in_another_process(before[0], cut.bytes));
    // Into a lost page (lost, the mapping replaced), or, cut to nothing, a re-open that times out.
    (void)pub->publish(next++);
    EXPECT_EQ(shm::replaced_mappings(), replaced_before + 1);
  }

  // Values one a millisecond until one arrives (liveness bound: 10 s).
  std::vector<uint64_t> received;
  const auto deadline = std::chrono::steady_clock::now() + 10s;
  while (received.empty() && std::chrono::steady_clock::now() < deadline) {
    (void)pub->publish(next++);  // may fail while the topic is made anew: a clear error, not a crash
    while (auto m = sub->try_take()) received.push_back(*m);
    std::this_thread::sleep_for(1ms);
  }
  ASSERT_FALSE(received.empty()) << "no message after the cut";
  for (int i = 0; i < 20; ++i) {
    ASSERT_TRUE(pub->publish(next++).ok());
    auto m = sub->take(5s);
    ASSERT_TRUE(m);
    received.push_back(*m);
  }
  EXPECT_GE(received.front(), 1000u);
  for (std::size_t i = 1; i < received.size(); ++i) EXPECT_EQ(received[i], received[i - 1] + 1) << i;
  EXPECT_EQ(received.back(), next - 1);

  if (cut.daemon_first) {
    EXPECT_EQ(shm::replaced_mappings(), replaced_before);  // grown back before any fault
  }
  EXPECT_EQ(kill(daemon.pid(), 0), 0) << "the daemon died";
  EXPECT_EQ(topics_cut_short(daemon), 1);
  const std::vector<std::string> after = daemon.segments();
  ASSERT_EQ(after.size(), 1u);
  EXPECT_NE(after[0], before[0]);  // made anew; the cut one is gone
}

INSTANTIATE_TEST_SUITE_P(Cuts, TruncationTest,
                         ::testing::Values(Cut{4096, false}, Cut{0, false}, Cut{4096, true}, Cut{0, true}),
                         [](const auto& info) {
                           return std::string(info.param.bytes == 0 ? "ToNothing" : "ToOnePage") +
                                  (info.param.daemon_first ? "DaemonFirst" : "PublisherFirst");
                         });

int64_t stat_of(const TestDaemon& daemon, const char* key) {
  return toml::parse(daemon.statistics())[key].value_or(int64_t{-1});
}
void wait_for_cut_queue(const TestDaemon& daemon) {
  for (int i = 0; i < 1000 && stat_of(daemon, "queues_cut_short") != 1; ++i)
    std::this_thread::sleep_for(10ms);
}

// A work queue's segment cut short: the daemon survives, grows it back and closes the queue (calls fail with
// kClosed, nobody dies); opened again, the queue is new and empty and works.
TEST(QueueTruncationTest, AQueueSegmentCutShortIsClosedAndOpensAgainEmpty) {
  TestDaemon daemon;
  Bus bus = daemon.connect();
  auto producer = bus.queue_producer("jobs/cut");
  auto consumer = bus.queue_consumer("jobs/cut");
  ASSERT_TRUE(producer.ok() && consumer.ok());
  for (uint64_t v = 1; v <= 3; ++v) ASSERT_TRUE(producer->send(bytes_of(v)).ok());
  const std::vector<std::string> before = daemon.segments();
  ASSERT_EQ(before.size(), 1u);
  ASSERT_TRUE(cut_in_another_process(before[0], 0));
  wait_for_cut_queue(daemon);
  ASSERT_EQ(stat_of(daemon, "queues_cut_short"), 1);
  const uint64_t v = 4;
  EXPECT_EQ(producer->send(bytes_of(v)).code(), Errc::kClosed);
  EXPECT_EQ(consumer->receive(100ms).status().code(), Errc::kClosed);
  EXPECT_EQ(kill(daemon.pid(), 0), 0) << "the daemon died";

  auto again = bus.queue_producer("jobs/cut");
  auto reader = bus.queue_consumer("jobs/cut");
  ASSERT_TRUE(again.ok() && reader.ok()) << again.status().to_string();
  ASSERT_TRUE(again->send(bytes_of(v)).ok());
  auto d = reader->receive(5s);
  ASSERT_TRUE(d.ok()) << d.status().to_string();
  EXPECT_EQ(value_of(d->bytes()), 4u);  // the three sent before the cut went with it
  EXPECT_TRUE(d->ack().ok());
}

// A durable queue's file cut short while it is open: the daemon closes the queue and makes it anew at once
// from a copy of the file, as after a crash: the entries it still holds whole come back in order, the rest
// are counted.
TEST(QueueTruncationTest, ADurableFileCutShortWhileOpenIsRecoveredAtOnce) {
  const ScratchDir scratch("shmbus-cut");
  const std::string& data_dir = scratch.path();
  {
    TestDaemon daemon("data_dir = \"" + data_dir + "\"\n");
    Bus bus = daemon.connect();
    QueueProducerOptions po;
    po.queue.durable = true;
    po.queue.capacity = 32;
    po.queue.max_message_size = 64;
    auto producer = bus.queue_producer("orders/cut", po);
    ASSERT_TRUE(producer.ok()) << producer.status().to_string();
    for (uint64_t i = 1; i <= 20; ++i) ASSERT_TRUE(producer->send(bytes_of(i)).ok());
    const std::string file = data_dir + "/" + daemon.instance() + "/queue%3Aorders%2Fcut.queue";
    const auto layout = read_queue_layout(file);
    ASSERT_TRUE(layout) << file;
    // Another process cuts it in the middle of the 11th entry: entries 1..10 stay whole.
    const auto cut_at = static_cast<off_t>(layout->entry(10) + 8);
    const pid_t child = fork();
    if (child == 0) _exit(truncate(file.c_str(), cut_at) == 0 ? 0 : 1);
    int status = 0;
    ASSERT_EQ(waitpid(child, &status, 0), child);
    ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    wait_for_cut_queue(daemon);
    ASSERT_EQ(stat_of(daemon, "queues_cut_short"), 1);
    // The daemon made the queue anew at once, from a copy of the file: the producer still maps the cut one,
    // which reads closed; opened again, it sends to the recovered queue.
    const uint64_t v = 21;
    EXPECT_EQ(producer->send(bytes_of(v)).code(), Errc::kClosed);
    auto again = bus.queue_producer("orders/cut");
    ASSERT_TRUE(again.ok()) << again.status().to_string();
    ASSERT_TRUE(again->send(bytes_of(v)).ok());

    auto consumer = bus.queue_consumer("orders/cut");
    ASSERT_TRUE(consumer.ok()) << consumer.status().to_string();
    const toml::table s = daemon.queue_statistics("orders/cut");
    EXPECT_EQ(s["recovered"].value_or(0LL), 10);
    EXPECT_EQ(s["recovered_corrupt"].value_or(0LL), 10) << "the lost entries are counted";
    for (const uint64_t i : std::initializer_list<uint64_t>{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 21}) {
      auto d = consumer->receive(5s);
      ASSERT_TRUE(d.ok()) << d.status().to_string();
      EXPECT_EQ(value_of(d->bytes()), i);
      EXPECT_TRUE(d->ack().ok());
    }
    EXPECT_EQ(kill(daemon.pid(), 0), 0) << "the daemon died";
  }
}

// The child of AFaultInAnUnguardedMappingStillKills, run before main in a fresh process (exec'd, so that
// its guard is the first of the process and the action it replaces is the default): a guarded segment
// installs the handler, then an access to another, unguarded mapping cut short raises SIGBUS.
const bool unguarded_fault_child = [] {
  const char* name = std::getenv("SHMBUS_TEST_UNGUARDED_FAULT");
  if (name == nullptr) return false;
  shm::Segment guarded = shm::Segment::create(std::string(name) + "-guarded", 8192, 0600);
  const int fd = shm_open(name, O_RDWR | O_CREAT | O_EXCL, 0600);
  if (fd < 0 || ftruncate(fd, 8192) != 0) _exit(2);
  auto* p = static_cast<volatile char*>(mmap(nullptr, 8192, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0));
  if (p == MAP_FAILED || ftruncate(fd, 0) != 0) _exit(3);
  p[4096] = 1;  // SIGBUS, which must kill
  _exit(0);
}();

// A SIGBUS outside every guarded mapping still takes the action there was before the guard (here the
// default: death by SIGBUS); the guard does not swallow other mappings' faults.
TEST(TruncationGuardTest, AFaultInAnUnguardedMappingStillKills) {
  const std::string name = "/shmbus-test-unguarded-" + std::to_string(getpid());
  const SegmentRemovedAtExit cleanup{name}, cleanup_guarded{name + "-guarded"};
  const pid_t child = fork();
  if (child == 0) {
    setenv("SHMBUS_TEST_UNGUARDED_FAULT", name.c_str(), 1);
    // A sanitizer would otherwise put its own SIGBUS handler first (and report this fault).
    for (const char* var : {"ASAN_OPTIONS", "TSAN_OPTIONS"}) {
      const char* options = std::getenv(var);
      setenv(var, (std::string(options ? options : "") + ":handle_sigbus=0").c_str(), 1);
    }
    execl("/proc/self/exe", "truncation_test", static_cast<char*>(nullptr));
    _exit(127);
  }
  int status = 0;
  ASSERT_EQ(waitpid(child, &status, 0), child);
  ASSERT_TRUE(WIFSIGNALED(status)) << "exit status " << status;
  EXPECT_EQ(WTERMSIG(status), SIGBUS);
}

// In this process, a guarded mapping cut short is replaced and its word written; reads see zeros and the
// word, and the segment can be grown back.
TEST(TruncationGuardTest, AGuardedMappingCutShortReadsAsZerosWithItsWord) {
  const std::string name = "/shmbus-test-guarded-" + std::to_string(getpid());
  const SegmentRemovedAtExit cleanup{name};
  {
    shm::Segment s = shm::Segment::create(name, 3 * 4096, 0600);
    s.set_truncation_word(8, 0xC105ED);
    s.data()[2 * 4096] = std::byte{7};
    ASSERT_TRUE(cut_in_another_process(name, 4096));
    EXPECT_EQ(s.current_size(), 4096u);
    EXPECT_FALSE(s.replaced());
    const uint64_t replaced_before = shm::replaced_mappings();
    EXPECT_EQ(static_cast<int>(s.data()[2 * 4096]), 0);  // faults, then reads the replacement
    EXPECT_TRUE(s.replaced());
    EXPECT_EQ(shm::replaced_mappings(), replaced_before + 1);
    uint32_t word = 0;
    std::memcpy(&word, s.data() + 8, sizeof word);
    EXPECT_EQ(word, 0xC105EDu);
    EXPECT_TRUE(s.restore_size());
    EXPECT_EQ(s.current_size(), 3u * 4096);
  }
}

// Threads that fault on one cut mapping at once: one replaces it (counted once), the others wait for that and
// go on; the word is written once, not wiped by a second replacement. Then the mapping is let go and a new
// segment guarded in its place (the table entry reused) is replaced on its own cut, with its own word.
TEST(TruncationGuardTest, ThreadsFaultingAtOnceReplaceTheMappingOnce) {
  const std::string name = "/shmbus-test-racing-" + std::to_string(getpid());
  const SegmentRemovedAtExit cleanup{name};
  for (uint32_t round = 1; round <= 2; ++round) {
    shm::Segment s = shm::Segment::create(name, 16 * 4096, 0600);
    s.set_truncation_word(4, round);
    ASSERT_TRUE(cut_in_another_process(name, 0));
    const uint64_t replaced_before = shm::replaced_mappings();
    std::atomic<int> at_start{0};
    std::atomic<uint64_t> sum{0};
    std::vector<std::thread> threads;
    for (int t = 0; t < 4; ++t) {
      threads.emplace_back([&, t] {
        at_start.fetch_add(1);
        while (at_start.load() < 4) {
        }
        const auto* page = reinterpret_cast<const volatile uint8_t*>(s.data() + (4 + 3 * t) * 4096);
        sum.fetch_add(page[0]);  // each its own lost page
      });
    }
    for (auto& th : threads) th.join();
    EXPECT_EQ(sum.load(), 0u);
    EXPECT_EQ(shm::replaced_mappings(), replaced_before + 1) << "round " << round;
    uint32_t word = 0;
    std::memcpy(&word, s.data() + 4, sizeof word);
    EXPECT_EQ(word, round);
    shm::Segment::remove(name);
  }
}

}  // namespace
}  // namespace shmbus::test

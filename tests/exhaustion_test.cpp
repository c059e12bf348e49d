// Resource exhaustion through a real daemon (issue 4.6): too many topics, publishers, subscribers or
// participants; shared memory (/dev/shm) or the durable queues' disk full; the daemon's descriptor limit
// reached. Each must be a clear error naming the cause (kExhausted), never a crash or a hang, and the daemon
// must keep serving and recover once the resource is freed.
//
// The /dev/shm and disk tests mount small tmpfs file systems (as root: the daemon's /dev/shm in a private
// mount namespace, the data directory with mount(2)); they skip, saying why, where mounting is not allowed.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "bus/control_protocol.h"
#include "shmbus/work_queue.h"
#include "support/process_stat.h"
#include "support/raw_control_socket.h"
#include "support/scratch_dir.h"
#include "support/test_daemon.h"
#include "support/word_bytes.h"

namespace shmbus::test {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

// Retries `attempt` (which returns true on success) until it succeeds or `limit` passes.
template <typename F>
bool eventually(F attempt, std::chrono::milliseconds limit = 10s) {
  const auto deadline = Clock::now() + limit;
  for (;;) {
    if (attempt()) return true;
    if (Clock::now() > deadline) return false;
    std::this_thread::sleep_for(20ms);
  }
}

// Publishes one message on `topic` and receives it on a fresh subscriber: the daemon still serves.
void expect_topic_works(Bus& bus, const std::string& topic) {
  PublisherOptions po;
  po.topic.max_message_size = 64;
  po.topic.depth = 8;
  po.topic.max_publishers = 1;
  po.topic.max_subscribers = 2;
  auto publisher = bus.publisher(topic, po);
  ASSERT_TRUE(publisher.ok()) << publisher.status().to_string();
  auto subscriber = bus.subscriber(topic);
  ASSERT_TRUE(subscriber.ok()) << subscriber.status().to_string();
  const uint64_t value = 42;
  ASSERT_TRUE(publisher->publish(bytes_of(value)).ok());
  Sample sample = subscriber->take(2s);
  ASSERT_TRUE(sample) << "no message on " << topic;
  EXPECT_EQ(sample.bytes().size(), sizeof value);
}

// A tmpfs of `size` mounted on a fresh directory for one test; unmounted and removed again, pass or fail.
class ScratchMount {
 public:
  explicit ScratchMount(const std::string& size)
      : dir_(std::filesystem::temp_directory_path() / ("shmbus-full-" + unique_suffix())) {
    std::filesystem::create_directories(dir_);
    if (mount("tmpfs", dir_.c_str(), "tmpfs", 0, ("size=" + size + ",mode=0755").c_str()) == 0) {
      mounted_ = true;
    } else {
      error_ = std::strerror(errno);
    }
  }
  ~ScratchMount() {
    if (mounted_ && umount2(dir_.c_str(), MNT_DETACH) != 0) {
      ADD_FAILURE() << "cannot unmount " << dir_ << ": " << std::strerror(errno);
    }
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }
  ScratchMount(const ScratchMount&) = delete;
  ScratchMount& operator=(const ScratchMount&) = delete;

  bool mounted() const { return mounted_; }
  const std::string& error() const { return error_; }
  const std::string& dir() const { return dir_; }

 private:
  std::string dir_;
  bool mounted_ = false;
  std::string error_;
};

// A client that says hello, then asks for statistics again and again and never reads them: once its socket
// is full, the daemon's send times out (1 s) and it disconnects that client. Before, each further request
// blocked the daemon's one thread for a second: another client's twenty calls, served in turn with them,
// took twenty seconds and more.
TEST(ExhaustionTest, AClientThatNeverReadsItsStatisticsIsDisconnectedNotWaitedFor) {
  TestDaemon daemon;
  const int fd = connect_raw_control(daemon.socket_path());
  ASSERT_GE(fd, 0);
  detail::HelloRequest hello{};
  hello.header = detail::make_header(detail::RecordType::kHello, sizeof hello, 1);
  ASSERT_EQ(send(fd, &hello, sizeof hello, MSG_NOSIGNAL), static_cast<ssize_t>(sizeof hello));
  detail::StatsRequest request{};
  request.header = detail::make_header(detail::RecordType::kStats, sizeof request, 2);
  int sent = 0;
  for (; sent < 300; ++sent) {
    if (send(fd, &request, sizeof request, MSG_DONTWAIT | MSG_NOSIGNAL) != sizeof request) break;
  }
  EXPECT_GT(sent, 50);
  const auto start = std::chrono::steady_clock::now();
  BusOptions o;
  o.control_timeout = 30s;
  auto bus = Bus::connect(o);
  ASSERT_TRUE(bus.ok()) << bus.status().to_string();
  for (int i = 0; i < 20; ++i) {  // served in turn with the flood: 20 s and more when each of its costs 1 s
    auto pub = bus->publisher("stats/neglected" + std::to_string(i));
    ASSERT_TRUE(pub.ok()) << pub.status().to_string();
  }
  EXPECT_LT(std::chrono::steady_clock::now() - start, 10s) << "the daemon kept waiting for the silent reader";
  // The neglectful client was disconnected (long before the hello deadline would matter: it said hello): its
  // socket reads the end after what was queued for it.
  char buffer[16384];
  const auto deadline = std::chrono::steady_clock::now() + 20s;
  ssize_t n = 1;
  while (n != 0 && std::chrono::steady_clock::now() < deadline) {
    n = recv(fd, buffer, sizeof buffer, MSG_DONTWAIT);
    if (n < 0) std::this_thread::sleep_for(10ms);
  }
  EXPECT_EQ(n, 0) << "still connected";
  close(fd);
}

// A connection that never says hello is closed after 10 s: silent connections cannot hold the participant
// places (max_participants) for ever and lock everyone else out.
TEST(ExhaustionTest, AConnectionThatNeverSaysHelloIsClosed) {
  TestDaemon daemon("max_participants = 2\n");
  const int silent = connect_raw_control(daemon.socket_path());
  ASSERT_GE(silent, 0);
  // The daemon may still count the connection TestDaemon checked it with: retry until that one is gone.
  BusOptions f;
  f.name = "first";
  auto first = Bus::connect(f);
  for (int i = 0; i < 100 && !first.ok(); ++i) {
    std::this_thread::sleep_for(20ms);
    first = Bus::connect(f);
  }
  ASSERT_TRUE(first.ok()) << first.status().to_string();
  BusOptions o;
  o.name = "second";
  EXPECT_EQ(Bus::connect(o).status().code(), Errc::kExhausted) << "the silent connection holds a place";
  char buffer[64];
  ssize_t n = -1;
  const auto deadline = std::chrono::steady_clock::now() + 30s;
  while (n != 0 && std::chrono::steady_clock::now() < deadline) {
    n = recv(silent, buffer, sizeof buffer, MSG_DONTWAIT);
    if (n < 0) std::this_thread::sleep_for(50ms);
  }
  EXPECT_EQ(n, 0) << "the silent connection is still open";
  close(silent);
  auto second = Bus::connect(o);
  EXPECT_TRUE(second.ok()) << "its place is free again: " << second.status().to_string();
}

// A hung daemon (stopped here) whose listen backlog is full: connecting times out after control_timeout
// with a clear error, instead of blocking in connect() for ever.
TEST(ExhaustionTest, ConnectingToAHungDaemonWithAFullBacklogTimesOut) {
  TestDaemon daemon;
  ASSERT_EQ(kill(daemon.pid(), SIGSTOP), 0);
  std::vector<int> waiting;
  for (int i = 0; i < 1000; ++i) {
    const int fd = connect_raw_control(daemon.socket_path(), SOCK_NONBLOCK);
    if (fd < 0) break;  // the backlog is full
    waiting.push_back(fd);
  }
  EXPECT_LT(waiting.size(), 1000u) << "the backlog never filled";
  BusOptions o;
  o.control_timeout = 300ms;
  const auto start = std::chrono::steady_clock::now();
  const Status s = Bus::connect(o).status();
  const auto took = std::chrono::steady_clock::now() - start;
  ASSERT_EQ(kill(daemon.pid(), SIGCONT), 0);
  for (int fd : waiting) close(fd);
  EXPECT_EQ(s.code(), Errc::kTimeout) << s.to_string();
  EXPECT_LT(took, 10s);
  Bus bus = daemon.connect();  // and the daemon serves again
}

TEST(ExhaustionTest, TooManyTopicsIsExhaustedNamingMaxTopics) {
  TestDaemon daemon("max_topics = 2\n");
  Bus bus = daemon.connect();
  std::optional<Publisher> first(bus.publisher("limits/one").value());
  auto second = bus.publisher("limits/two");
  ASSERT_TRUE(second.ok()) << second.status().to_string();
  const Status refused = bus.publisher("limits/three").status();
  EXPECT_EQ(refused.code(), Errc::kExhausted) << refused.to_string();
  EXPECT_NE(refused.message().find("max_topics"), std::string::npos) << refused.message();
  EXPECT_NE(refused.message().find('2'), std::string::npos) << refused.message();
  EXPECT_EQ(bus.subscriber("limits/three").status().code(), Errc::kExhausted);
  // Existing topics keep working; once a topic is gone its place is free again.
  auto subscriber = bus.subscriber("limits/two");
  ASSERT_TRUE(subscriber.ok()) << subscriber.status().to_string();
  ASSERT_TRUE(second->publish(bytes_of(uint64_t{7})).ok());
  EXPECT_TRUE(subscriber->take(2s));
  first.reset();
  EXPECT_TRUE(eventually([&] { return bus.publisher("limits/three").ok(); }))
      << "the freed topic's place was not given to a new topic";
}

TEST(ExhaustionTest, TooManyPublishersOrSubscribersIsExhaustedNamingTheLimit) {
  TestDaemon daemon;
  Bus bus = daemon.connect();
  PublisherOptions po;
  po.topic.max_publishers = 1;
  po.topic.max_subscribers = 2;
  auto publisher = bus.publisher("limits/endpoints", po);
  ASSERT_TRUE(publisher.ok()) << publisher.status().to_string();
  const Status no_publisher = bus.publisher("limits/endpoints").status();
  EXPECT_EQ(no_publisher.code(), Errc::kExhausted) << no_publisher.to_string();
  EXPECT_NE(no_publisher.message().find("max_publishers"), std::string::npos) << no_publisher.message();

  std::optional<Subscriber> one(bus.subscriber("limits/endpoints").value());
  auto two = bus.subscriber("limits/endpoints");
  ASSERT_TRUE(two.ok()) << two.status().to_string();
  const Status no_subscriber = bus.subscriber("limits/endpoints").status();
  EXPECT_EQ(no_subscriber.code(), Errc::kExhausted) << no_subscriber.to_string();
  EXPECT_NE(no_subscriber.message().find("max_subscribers"), std::string::npos) << no_subscriber.message();
  EXPECT_NE(no_subscriber.message().find("limits/endpoints"), std::string::npos) << no_subscriber.message();
  // Another participant is refused the same way; a freed slot is given out again.
  Bus other = daemon.connect("other");
  EXPECT_EQ(other.subscriber("limits/endpoints").status().code(), Errc::kExhausted);
  one.reset();
  auto three = other.subscriber("limits/endpoints");
  ASSERT_TRUE(three.ok()) << three.status().to_string();
  ASSERT_TRUE(publisher->publish(bytes_of(uint64_t{9})).ok());
  EXPECT_TRUE(three->take(2s));
  EXPECT_TRUE(two->take(2s));
}

TEST(ExhaustionTest, TooManyParticipantsGetExhaustedWithTheReasonNotAClosedConnection) {
  TestDaemon daemon("max_participants = 2\n");
  std::optional<Bus> first(daemon.connect("first"));
  Bus second = daemon.connect("second");
  const auto started = Clock::now();
  auto third = Bus::connect();
  const auto took = Clock::now() - started;
  ASSERT_FALSE(third.ok());
  EXPECT_EQ(third.status().code(), Errc::kExhausted) << third.status().to_string();
  EXPECT_NE(third.status().message().find("max_participants (2) reached"), std::string::npos)
      << third.status().message();
  EXPECT_LT(took, 2s) << "the refusal must come at once, not after the control timeout";
  // Refusing does not disturb the participants the daemon serves, and a freed place is given out again.
  expect_topic_works(second, "limits/participants");
  first.reset();
  EXPECT_TRUE(eventually([] { return Bus::connect().ok(); })) << "no place after a participant left";
}

TEST(ExhaustionTest, FullSharedMemoryIsAClearErrorAndTheDaemonKeepsServing) {
  // The daemon gets its own 4 MiB /dev/shm in a private mount namespace; clients map the segments through
  // the descriptors it passes, so they need not see it.
  const ProcessResult probe =
      run_process({"unshare", "-m", "sh", "-c", "mount -t tmpfs -o size=64k tmpfs /dev/shm"}, 30);
  if (probe.status != 0) {
    GTEST_SKIP() << "cannot mount a private /dev/shm (unshare -m + mount exited " << probe.status
                 << "; needs root / CAP_SYS_ADMIN)";
  }
  TestDaemon daemon(
      "", {"unshare", "-m", "sh", "-c", "mount -t tmpfs -o size=4m tmpfs /dev/shm && exec \"$0\" \"$@\""});
  Bus bus = daemon.connect();
  PublisherOptions big;
  big.topic.max_message_size = 1 << 20;
  big.topic.depth = 8;
  big.topic.max_publishers = 1;
  const Status topic = bus.publisher("limits/huge", big).status();
  EXPECT_EQ(topic.code(), Errc::kExhausted) << topic.to_string();
  EXPECT_NE(topic.message().find("limits/huge"), std::string::npos) << topic.message();
  EXPECT_NE(topic.message().find("/dev/shm is full"), std::string::npos) << topic.message();

  QueueProducerOptions huge_queue;
  huge_queue.queue.capacity = 4096;
  huge_queue.queue.max_message_size = 4096;
  const Status queue = bus.queue_producer("limits/huge-queue", huge_queue).status();
  EXPECT_EQ(queue.code(), Errc::kExhausted) << queue.to_string();
  EXPECT_NE(queue.message().find("limits/huge-queue"), std::string::npos) << queue.message();
  EXPECT_NE(queue.message().find("/dev/shm is full"), std::string::npos) << queue.message();

  // Nothing of the failed attempts holds memory: a topic that fits is served.
  expect_topic_works(bus, "limits/small");
  EXPECT_TRUE(daemon.statistics().find("limits/huge") == std::string::npos);
}

TEST(ExhaustionTest, FullDiskFailsDurableQueueCreationClearlyNotWithSigbusLater) {
  ScratchMount disk("256k");
  if (!disk.mounted()) {
    GTEST_SKIP() << "cannot mount a 256 KiB tmpfs on " << disk.dir() << " (" << disk.error()
                 << "; needs root / CAP_SYS_ADMIN)";
  }
  {
    TestDaemon daemon("data_dir = \"" + disk.dir() + "\"\n");
    Bus bus = daemon.connect();
    QueueProducerOptions large;
    large.queue.durable = true;
    large.queue.capacity = 256;
    large.queue.max_message_size = 4096;  // about 1 MiB: more than the disk holds
    const Status refused = bus.queue_producer("limits/durable-big", large).status();
    EXPECT_EQ(refused.code(), Errc::kExhausted) << refused.to_string();
    EXPECT_NE(refused.message().find("not enough disk space"), std::string::npos) << refused.message();
    EXPECT_NE(refused.message().find("limits/durable-big"), std::string::npos) << refused.message();
    // No empty file of the failed queue is left to be mistaken for a queue later.
    for (const auto& e : std::filesystem::recursive_directory_iterator(disk.dir())) {
      EXPECT_EQ(e.path().filename().string().find("durable-big"), std::string::npos) << e.path();
    }
    // The daemon lives on and serves a durable queue that fits.
    QueueProducerOptions small;
    small.queue.durable = true;
    small.queue.capacity = 4;
    small.queue.max_message_size = 64;
    auto producer = bus.queue_producer("limits/durable-small", small);
    ASSERT_TRUE(producer.ok()) << producer.status().to_string();
    ASSERT_TRUE(producer->send(bytes_of(uint64_t{5})).ok());
    auto consumer = bus.queue_consumer("limits/durable-small");
    ASSERT_TRUE(consumer.ok()) << consumer.status().to_string();
    auto delivery = consumer->receive(2s);
    ASSERT_TRUE(delivery.ok()) << delivery.status().to_string();
    EXPECT_TRUE(delivery->ack().ok());
  }
}

TEST(ExhaustionTest, DescriptorLimitRefusesClearlyWithoutSpinningAndRecovers) {
  TestDaemon daemon("", {"prlimit", "--nofile=32:32", "--"});
  std::vector<Bus> buses;
  Status refused;
  BusOptions options;
  options.control_timeout = 3000ms;
  for (int i = 0; i < 64 && refused.ok(); ++i) {
    const auto started = Clock::now();
    auto bus = Bus::connect(options);
    EXPECT_LT(Clock::now() - started, 5s) << "connect " << i << " hung";
    if (bus.ok()) {
      buses.push_back(std::move(bus).value());
    } else {
      refused = bus.status();
    }
  }
  ASSERT_FALSE(refused.ok()) << "64 participants fit under a limit of 32 descriptors?";
  EXPECT_GE(buses.size(), 10u);
  EXPECT_EQ(refused.code(), Errc::kExhausted) << refused.to_string();
  EXPECT_NE(refused.message().find("out of file descriptors"), std::string::npos) << refused.message();
  // A participant already served gets a clear error too when the daemon cannot open anything for it.
  const Status topic = buses.front().publisher("limits/no-fds").status();
  EXPECT_EQ(topic.code(), Errc::kExhausted) << topic.to_string();

  // Connections waiting in the backlog while no descriptor is left must not make the daemon spin.
  std::vector<int> waiting;
  for (int i = 0; i < 8; ++i) {
    const int fd = connect_raw_control(daemon.socket_path());
    if (fd >= 0) waiting.push_back(fd);
  }
  EXPECT_EQ(waiting.size(), 8u);
  std::this_thread::sleep_for(200ms);
  const double before = cpu_seconds(daemon.pid());
  std::this_thread::sleep_for(2s);
  const double used = cpu_seconds(daemon.pid()) - before;
  EXPECT_GE(before, 0);
  EXPECT_LT(used, 0.5) << "the daemon burned " << used << " s of CPU in 2 s at its descriptor limit";

  for (int fd : waiting) close(fd);
  buses.clear();
  EXPECT_TRUE(eventually([] { return Bus::connect().ok(); })) << "the daemon did not serve again";
  Bus bus = daemon.connect("after");
  expect_topic_works(bus, "limits/after-fds");
}

}  // namespace
}  // namespace shmbus::test

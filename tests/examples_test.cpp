// Every example runs against a real daemon and exits 0 (the README points users at them, so they must work),
// and the library itself never writes to stdout: a process doing everything with debug logging on leaves its
// stdout empty (logs go to stderr through spdlog).
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <string>

#include "shmbus/bus.h"
#include "shmbus/rpc.h"
#include "shmbus/work_queue.h"
#include "support/scratch_dir.h"
#include "support/test_daemon.h"

namespace shmbus::test {
namespace {

using namespace std::chrono_literals;

std::string example(const std::string& name) {
  return std::string(EXAMPLES_DIR) + "/example_" + name;
}

TEST(ExamplesTest, SelfContainedExamplesRunAndSucceed) {
  TestDaemon daemon;
  for (const char* name : {"typed_zero_copy", "camera_frames", "wait_set", "work_queue", "rpc", "async_epoll",
                           "async_asio", "async_rpc"}) {
    const auto r = run_process({example(name)}, 120);
    EXPECT_EQ(r.status, 0) << name << ":\n" << r.out;
    EXPECT_FALSE(r.out.empty()) << name << " printed nothing";
  }
}

TEST(ExamplesTest, PublisherAndSubscriberExamplesFlowInOrder) {
  TestDaemon daemon;
  ChildProcess subscriber({example("subscriber"), "100000"});
  const auto publisher = run_process({example("publisher"), "100000"}, 120);
  EXPECT_EQ(publisher.status, 0);
  const std::string out = subscriber.read_all(120);
  EXPECT_EQ(subscriber.wait(60), 0);
  EXPECT_NE(out.find("received 100000 messages in order"), std::string::npos) << out;
}

TEST(ExamplesTest, DurableQueueExampleKeepsJobsAcrossADaemonKill) {
  const ScratchDir data_dir("shmbus-ex");
  setenv("SHMBUS_DATA_DIR", data_dir.path().c_str(), 1);
  {
    TestDaemon daemon;
    EXPECT_EQ(run_process({example("durable_queue"), "send", "5"}).status, 0);
    ASSERT_EQ(daemon.stop(SIGKILL), 128 + SIGKILL);
    ASSERT_TRUE(daemon.start());
    const auto work = run_process({example("durable_queue"), "work"}, 60);
    EXPECT_EQ(work.status, 0);
    EXPECT_NE(work.out.find("5 jobs done"), std::string::npos) << work.out;
  }
  unsetenv("SHMBUS_DATA_DIR");
}

TEST(ExamplesTest, TheLibraryNeverWritesToStdout) {
  TestDaemon daemon;
  int out[2];
  ASSERT_EQ(pipe(out), 0);
  const pid_t child = fork();
  if (child == 0) {
    dup2(out[1], STDOUT_FILENO);
    close(out[0]);
    setenv("SHMBUS_LOG_LEVEL", "trace", 1);
    BusOptions nobody;
    nobody.instance = "nobody-here";
    (void)Bus::connect(nobody);  // the daemon-absent error path
    Bus bus = daemon.connect("quiet");
    (void)bus.publisher("bad//topic");
    auto pub = bus.publisher("quiet/topic");
    auto sub = bus.subscriber("quiet/topic");
    if (!pub || !sub) _exit(2);
    const std::string big(1 << 20, 'x');
    (void)pub->publish(std::as_bytes(std::span(big.data(), big.size())));  // too large
    (void)pub->publish(std::as_bytes(std::span("hi", 2)));
    (void)sub->take(1s);
    auto producer = bus.queue_producer("quiet/jobs");
    auto consumer = bus.queue_consumer("quiet/jobs");
    if (!producer || !consumer) _exit(3);
    (void)producer->send(std::as_bytes(std::span("job", 3)));
    if (auto d = consumer->receive(1s)) (void)d->reject(false);
    auto client = bus.client("quiet/nobody");
    if (client) (void)client->call(std::as_bytes(std::span("x", 1)), 50ms);
    (void)bus.daemon_statistics();
    std::fflush(stdout);
    _exit(0);
  }
  close(out[1]);
  std::string written;
  char buf[256];
  for (ssize_t n; (n = read(out[0], buf, sizeof buf)) > 0;) written.append(buf, static_cast<std::size_t>(n));
  close(out[0]);
  int status = 0;
  waitpid(child, &status, 0);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  EXPECT_EQ(written, "") << "the library wrote to stdout";
}

}  // namespace
}  // namespace shmbus::test

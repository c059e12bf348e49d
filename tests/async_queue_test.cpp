// The async API for work queues and RPC through a real daemon, across real processes (fork): EventSource's
// fd for a QueueConsumer, a Server and a Client; EventLoop callbacks for servers and consumers; coroutines
// that co_await deliveries and calls. Children are forked before the test starts any thread. Timings are
// generous liveness bounds, never performance claims.
#include <gtest/gtest.h>
#include <poll.h>
#include <sys/wait.h>
#include <unistd.h>

#include <csignal>
#include <cstring>
#include <functional>
#include <optional>
#include <set>
#include <thread>
#include <vector>

#include "shmbus/event_loop.h"
#include "shmbus/event_source.h"
#include "shmbus/rpc.h"
#include "shmbus/task.h"
#include "shmbus/work_queue.h"
#include "support/test_daemon.h"
#include "support/word_bytes.h"

namespace shmbus::test {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

// Message `index` of a producer: the index in the first 8 bytes, then bytes derived from it.
std::vector<std::byte> payload(uint64_t index) {
  std::vector<std::byte> p(8 + index % 200);
  std::memcpy(p.data(), &index, sizeof index);
  for (std::size_t k = 8; k < p.size(); ++k) p[k] = static_cast<std::byte>((index * 31 + k * 7) & 0xff);
  return p;
}
uint64_t checksum(std::span<const std::byte> bytes) {  // FNV-1a
  uint64_t h = 1469598103934665603ULL;
  for (std::byte b : bytes) h = (h ^ static_cast<uint8_t>(b)) * 1099511628211ULL;
  return h;
}

bool readable(int fd, std::chrono::milliseconds timeout) {
  pollfd p{fd, POLLIN, 0};
  return poll(&p, 1, static_cast<int>(timeout.count())) == 1;
}

// A forked child running `body` (its exit status), which first waits until the parent calls go(): the
// parent sets up (and starts threads) only after every fork.
class Child {
 public:
  explicit Child(const std::function<int()>& body) {
    int fds[2];
    if (pipe(fds) != 0) return;
    pid_ = fork();
    if (pid_ == 0) {
      close(fds[1]);
      char c;
      int rc = 98;
      if (read(fds[0], &c, 1) == 1) {
        rc = 99;
        try {
          rc = body();
        } catch (...) {
        }
      }
      _exit(rc);
    }
    close(fds[0]);
    go_fd_ = fds[1];
  }
  ~Child() {
    if (go_fd_ >= 0) close(go_fd_);
    if (pid_ > 0 && !reaped_) {
      kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
    }
  }
  void go() {
    const char c = 'g';
    EXPECT_EQ(write(go_fd_, &c, 1), 1);
  }
  int wait() {
    int status = 0;
    waitpid(pid_, &status, 0);
    reaped_ = true;
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  }

 private:
  pid_t pid_ = -1;
  int go_fd_ = -1;
  bool reaped_ = false;
};

// Sends messages [first, first + count) to `queue`, pausing now and then so that the consumer sleeps too.
int produce(const TestDaemon& daemon, const std::string& queue, uint64_t first, uint64_t count) {
  Bus b = daemon.connect("producer");
  QueueProducerOptions o;
  o.full_timeout = 30s;
  auto producer = b.queue_producer(queue, o);
  if (!producer) return 2;
  for (uint64_t i = first; i < first + count; ++i) {
    if (!producer->send(payload(i)).ok()) return 3;
    if (i % 97 == 0) std::this_thread::sleep_for(1ms);
  }
  return 0;
}

// What a consumer received: each index once, with the payload it was sent with.
struct Received {
  std::set<uint64_t> indexes;
  uint64_t duplicates = 0, corrupt = 0, sum = 0;
  void add(std::span<const std::byte> bytes) {
    const uint64_t index = value_of(bytes);
    const auto expected = payload(index);
    if (bytes.size() != expected.size() || std::memcmp(bytes.data(), expected.data(), bytes.size()) != 0)
      ++corrupt;
    if (!indexes.insert(index).second) ++duplicates;
    sum += checksum(bytes);
  }
};
uint64_t expected_sum(uint64_t first, uint64_t count) {
  uint64_t sum = 0;
  for (uint64_t i = first; i < first + count; ++i) sum += checksum(payload(i));
  return sum;
}

// (a) poll() on a consumer's fd wakes when another process sends; every message exactly once.
TEST(AsyncQueueTest, PollOnAConsumersFdWakesWhenAnotherProcessSends) {
  TestDaemon daemon;
  constexpr uint64_t kCount = 3000;
  Child producer([&] { return produce(daemon, "aq/poll", 0, kCount); });
  Bus bus = daemon.connect();
  auto consumer = bus.queue_consumer("aq/poll").value();
  auto source = EventSource::create().value();
  ASSERT_TRUE(source.add(consumer).ok());
  EXPECT_EQ(source.size(), 1u);
  EXPECT_FALSE(source.rearm());
  EXPECT_FALSE(readable(source.fd(), 50ms)) << "nothing sent yet";

  producer.go();
  Received got;
  int wakeups = 0;
  const auto deadline = Clock::now() + 60s;
  while (got.indexes.size() < kCount && Clock::now() < deadline) {
    ASSERT_TRUE(readable(source.fd(), 10s)) << "no wake-up after " << got.indexes.size() << " messages";
    ++wakeups;
    for (int batch = 0; batch < 50; ++batch) {  // a bounded batch: rearm keeps the fd readable if more wait
      auto d = consumer.try_receive();
      if (!d) {
        EXPECT_EQ(d.status().code(), Errc::kTimeout);
        break;
      }
      got.add(d->bytes());
      ASSERT_TRUE(d->ack().ok());
    }
    source.rearm();
  }
  EXPECT_EQ(producer.wait(), 0);
  EXPECT_EQ(got.indexes.size(), kCount);
  EXPECT_EQ(got.duplicates, 0u);
  EXPECT_EQ(got.corrupt, 0u);
  EXPECT_EQ(got.sum, expected_sum(0, kCount));
  EXPECT_LE(wakeups, static_cast<int>(kCount) + 2) << "a readiness without messages now and then at most";
  EXPECT_FALSE(source.rearm());
  EXPECT_FALSE(readable(source.fd(), 100ms)) << "drained and re-armed: quiet";
  auto empty = consumer.try_receive();
  ASSERT_FALSE(empty.ok());
  EXPECT_EQ(empty.status().code(), Errc::kTimeout);
}

// (b) One thread with an EventLoop serves a Server and a work-queue consumer (callbacks) while client and
// producer processes use them.
TEST(AsyncQueueTest, OneLoopThreadServesAServerAndAConsumerWhileOtherProcessesCall) {
  TestDaemon daemon;
  constexpr int kClients = 3;
  constexpr uint64_t kCalls = 300;
  constexpr uint64_t kJobs = 2000;
  std::vector<std::unique_ptr<Child>> children;
  for (uint64_t c = 0; c < kClients; ++c) {
    children.push_back(std::make_unique<Child>([&, c] {
      Bus b = daemon.connect("client");
      auto client = b.client("aq/double");
      if (!client) return 2;
      for (uint64_t i = 0; i < kCalls; ++i) {
        const uint64_t v = c * 1'000'000 + i;
        auto response = client->call(bytes_of(v), 30s);
        if (!response) return 3;
        uint64_t answer[2];
        if (response->bytes().size() != sizeof answer) return 4;
        std::memcpy(answer, response->bytes().data(), sizeof answer);
        if (answer[0] != v * 2 || answer[1] != checksum(bytes_of(v))) return 5;
      }
      return 0;
    }));
  }
  children.push_back(std::make_unique<Child>([&] { return produce(daemon, "aq/jobs", 0, kJobs); }));

  Bus bus = daemon.connect();
  auto server = bus.server("aq/double").value();
  auto consumer = bus.queue_consumer("aq/jobs").value();
  auto loop = EventLoop::create().value();
  uint64_t handled = 0;
  ASSERT_TRUE(loop.add(server,
                       [&](Request r) {
                         ASSERT_TRUE(r);
                         const uint64_t v = value_of(r.bytes());
                         const uint64_t answer[2] = {v * 2, checksum(r.bytes())};
                         ASSERT_TRUE(r.respond(std::as_bytes(std::span(answer))).ok());
                         ++handled;
                       })
                  .ok());
  Received jobs;
  ASSERT_TRUE(loop.add(consumer,
                       [&](Delivery d) {
                         ASSERT_TRUE(d);
                         jobs.add(d.bytes());
                         ASSERT_TRUE(d.ack().ok());
                       })
                  .ok());
  EXPECT_FALSE(loop.add(server, [](Request) {}).ok()) << "added twice";
  for (auto& c : children) c->go();
  const auto deadline = Clock::now() + 90s;
  while ((handled < kClients * kCalls || jobs.indexes.size() < kJobs) && Clock::now() < deadline) {
    loop.run_once(1000ms);
  }
  EXPECT_EQ(handled, kClients * kCalls);
  EXPECT_EQ(jobs.indexes.size(), kJobs);
  EXPECT_EQ(jobs.duplicates, 0u);
  EXPECT_EQ(jobs.corrupt, 0u);
  EXPECT_EQ(jobs.sum, expected_sum(0, kJobs));
  for (std::size_t i = 0; i < children.size(); ++i) EXPECT_EQ(children[i]->wait(), 0) << "child " << i;
  EXPECT_EQ(loop.run_once(200ms), 0u) << "all served: nothing left to do";
  loop.remove(server);
  loop.remove(consumer);
}

// Answers `value` with value * 3 until it gets ~0 (answered too).
int triple_server(const TestDaemon& daemon, const std::string& service) {
  Bus b = daemon.connect("server");
  auto server = b.server(service);
  if (!server) return 2;
  for (;;) {
    auto r = server->receive(60s);
    if (!r) return 3;
    const uint64_t v = value_of(r->bytes());
    const uint64_t answer = v == ~0ull ? v : v * 3;
    if (!r->respond(bytes_of(answer)).ok()) return 4;
    if (v == ~0ull) return 0;
  }
}

Task sequential_calls(EventLoop& loop, Client& client, uint64_t first, uint64_t count, uint64_t* correct,
                      int* finished) {
  for (uint64_t i = first; i < first + count; ++i) {
    const uint64_t v = i;
    Result<Response> r = co_await loop.call(client, bytes_of(v), 10s);
    if (r.ok() && value_of(r->bytes()) == v * 3) ++*correct;
  }
  ++*finished;
}

// (c) A coroutine makes 100 sequential calls to a server in another process; then several coroutines call
// through the same client at once.
TEST(AsyncQueueTest, CoroutineAwaitsSequentialCallsToAServerInAnotherProcess) {
  TestDaemon daemon;
  Child server([&] { return triple_server(daemon, "aq/triple"); });
  Bus bus = daemon.connect();
  auto client = bus.client("aq/triple").value();
  server.go();
  auto loop = EventLoop::create().value();

  uint64_t correct = 0;
  int finished = 0;
  loop.spawn(sequential_calls(loop, client, 0, 100, &correct, &finished));
  const auto deadline = Clock::now() + 60s;
  while (finished < 1 && Clock::now() < deadline) loop.run_once(1000ms);
  EXPECT_EQ(finished, 1);
  EXPECT_EQ(correct, 100u);
  EXPECT_EQ(loop.tasks(), 0u);

  // Four coroutines at once on one client: responses arrive interleaved and each goes to its own call.
  correct = 0;
  finished = 0;
  for (uint64_t c = 0; c < 4; ++c)
    loop.spawn(sequential_calls(loop, client, 1000 * (c + 1), 50, &correct, &finished));
  while (finished < 4 && Clock::now() < deadline) loop.run_once(1000ms);
  EXPECT_EQ(finished, 4);
  EXPECT_EQ(correct, 200u);
  EXPECT_EQ(client.late_responses(), 0u);

  EXPECT_TRUE(client.call(bytes_of(~0ull), 10s).ok());  // the blocking call still works beside the loop
  EXPECT_EQ(server.wait(), 0);
}

// co_await loop.call against a service without a server ends at its deadline (the loop's timer), and a
// coroutine awaiting deliveries gets them as they come.
TEST(AsyncQueueTest, CallTimesOutAtItsDeadlineAndReceiveAwaitsDeliveries) {
  TestDaemon daemon;
  constexpr uint64_t kCount = 500;
  Child producer([&] { return produce(daemon, "aq/awaited", 0, kCount); });
  Bus bus = daemon.connect();
  auto client = bus.client("aq/nobody").value();
  auto consumer = bus.queue_consumer("aq/awaited").value();
  auto loop = EventLoop::create().value();

  Result<Response> outcome = Status{Errc::kInternal, "not run"};
  Clock::duration took{};
  auto timed = [](EventLoop& loop, Client& client, Result<Response>* out, Clock::duration* took) -> Task {
    const auto start = Clock::now();
    *out = co_await loop.call(client, bytes_of(uint64_t{1}), 150ms);
    *took = Clock::now() - start;
  };
  loop.spawn(timed(loop, client, &outcome, &took));
  Received got;
  auto receiver = [](EventLoop& loop, QueueConsumer& consumer, Received* got, uint64_t count) -> Task {
    while (got->indexes.size() < count) {
      Delivery d = co_await loop.receive(consumer);
      if (!d) co_return;
      got->add(d.bytes());
      (void)d.ack();
    }
  };
  loop.spawn(receiver(loop, consumer, &got, kCount));
  producer.go();
  const auto deadline = Clock::now() + 60s;
  while (loop.tasks() > 0 && Clock::now() < deadline) loop.run_once(1000ms);
  EXPECT_EQ(loop.tasks(), 0u);
  ASSERT_FALSE(outcome.ok());
  EXPECT_EQ(outcome.status().code(), Errc::kTimeout) << outcome.status().to_string();
  EXPECT_GE(took, 150ms);
  EXPECT_LT(took, 5s);
  EXPECT_EQ(got.indexes.size(), kCount);
  EXPECT_EQ(got.duplicates, 0u);
  EXPECT_EQ(got.sum, expected_sum(0, kCount));
  EXPECT_EQ(producer.wait(), 0);
}

// (d) No readiness without traffic, none after a drain, and none from the late answer to a timed-out call.
TEST(AsyncQueueTest, NoSpuriousReadinessWithoutTraffic) {
  TestDaemon daemon;
  Bus bus = daemon.connect();
  auto consumer = bus.queue_consumer("quiet/jobs").value();
  auto producer = bus.queue_producer("quiet/jobs").value();
  auto server = bus.server("quiet/svc").value();
  auto client = bus.client("quiet/svc").value();
  auto source = EventSource::create().value();
  ASSERT_TRUE(source.add(consumer).ok());
  ASSERT_TRUE(source.add(server).ok());
  ASSERT_TRUE(source.add(client).ok());
  ASSERT_TRUE(source.add(client).ok()) << "adding twice is a no-op";
  EXPECT_EQ(source.size(), 3u);
  EXPECT_FALSE(source.rearm());
  EXPECT_FALSE(readable(source.fd(), 200ms));

  ASSERT_TRUE(producer.send(bytes_of(uint64_t{7})).ok());
  EXPECT_TRUE(readable(source.fd(), 5s));
  {
    auto d = consumer.try_receive();
    ASSERT_TRUE(d.ok());
    EXPECT_TRUE(d->ack().ok());
  }
  EXPECT_FALSE(source.rearm());
  EXPECT_FALSE(readable(source.fd(), 200ms)) << "no readiness storm after a drain";

  // A call the server answers after its deadline: the late response wakes the thread at most once, and
  // rearm() discards it instead of staying readable.
  auto call = client.call_async(bytes_of(uint64_t{5}), 100ms);
  ASSERT_TRUE(call.ok());
  EXPECT_TRUE(readable(source.fd(), 5s)) << "the request is ready for the server";
  auto request = server.try_receive();
  ASSERT_TRUE(request.ok());
  EXPECT_FALSE(client.poll(call.value()).has_value()) << "still pending";
  std::this_thread::sleep_for(150ms);
  auto outcome = client.poll(call.value());
  ASSERT_TRUE(outcome.has_value());
  EXPECT_EQ(outcome->status().code(), Errc::kTimeout);
  EXPECT_FALSE(call.value());
  ASSERT_TRUE(request->respond(bytes_of(uint64_t{10})).ok());
  source.rearm();  // may be readable once from the late response's commit
  EXPECT_FALSE(source.rearm());
  EXPECT_FALSE(readable(source.fd(), 200ms)) << "the late response does not keep the fd readable";
  EXPECT_EQ(client.late_responses(), 1u);

  auto loop = EventLoop::create().value();
  int calls = 0;
  ASSERT_TRUE(loop.add(consumer, [&](Delivery) { ++calls; }).ok());
  ASSERT_TRUE(loop.add(server, [&](Request) { ++calls; }).ok());
  EXPECT_EQ(loop.run_once(200ms), 0u);
  EXPECT_EQ(calls, 0);
}

// A coroutine that does not await its consumer now and then does not make the loop spin on its messages.
TEST(AsyncQueueTest, UnawaitedConsumerWithMessagesDoesNotSpinTheLoop) {
  TestDaemon daemon;
  Bus bus = daemon.connect();
  auto consumer = bus.queue_consumer("aq/later").value();
  auto producer = bus.queue_producer("aq/later").value();
  auto loop = EventLoop::create().value();
  int received = 0;
  auto once = [](EventLoop& loop, QueueConsumer& c, int* n) -> Task {
    Delivery d = co_await loop.receive(c);
    if (d) ++*n, (void)d.ack();
  };
  loop.spawn(once(loop, consumer, &received));  // registers the consumer, then ends after one message
  ASSERT_TRUE(producer.send(bytes_of(uint64_t{1})).ok());
  const auto deadline = Clock::now() + 10s;
  while (received == 0 && Clock::now() < deadline) loop.run_once(100ms);
  ASSERT_EQ(received, 1);
  for (uint64_t i = 0; i < 5; ++i) ASSERT_TRUE(producer.send(bytes_of(i)).ok());
  std::size_t rounds = 0;
  const auto end = Clock::now() + 300ms;
  while (Clock::now() < end) {
    loop.run_once(50ms);
    ++rounds;
  }
  EXPECT_LE(rounds, 12u) << "the loop spun on messages nobody awaits";
  loop.spawn(once(loop, consumer, &received));  // takes one of them at once
  EXPECT_EQ(received, 2);
}

// The daemon stops: a callback gets an empty Delivery, an awaiting coroutine an empty Request.
TEST(AsyncQueueTest, ClosedQueueEndsCallbackAndAwaitingCoroutine) {
  TestDaemon daemon;
  Bus bus = daemon.connect();
  auto consumer = bus.queue_consumer("aq/closing").value();
  auto server = bus.server("aq/closing-svc").value();
  auto loop = EventLoop::create().value();
  int empty_deliveries = 0;
  ASSERT_TRUE(loop.add(consumer, [&](Delivery d) { empty_deliveries += d ? 0 : 1; }).ok());
  bool got_empty_request = false;
  auto serve = [](EventLoop& loop, Server& s, bool* empty) -> Task {
    Request r = co_await loop.receive(s);
    *empty = !r;
  };
  loop.spawn(serve(loop, server, &got_empty_request));
  EXPECT_EQ(loop.run_once(50ms), 0u);
  daemon.stop();
  const auto deadline = Clock::now() + 10s;
  while ((empty_deliveries == 0 || loop.tasks() > 0) && Clock::now() < deadline) loop.run_once(100ms);
  EXPECT_EQ(empty_deliveries, 1);
  EXPECT_TRUE(got_empty_request);
  EXPECT_EQ(loop.tasks(), 0u);
  EXPECT_EQ(loop.run_once(300ms), 0u) << "a closed queue is reported once";
}

// (e) Destructors return promptly while the thread sleeps on queues, and destroy suspended coroutines.
// Watched queue endpoints, like subscribers, may be moved (the source follows them) or destroyed without
// remove() (the source forgets them, and never touches their memory again: ASan).
TEST(AsyncQueueTest, WatchedQueueEndpointsCanBeMovedOrDestroyedWithoutRemove) {
  TestDaemon daemon;
  Bus bus = daemon.connect();
  auto producer = bus.queue_producer("jobs/moved").value();
  auto source = EventSource::create().value();
  std::optional<QueueConsumer> doomed = bus.queue_consumer("jobs/moved").value();
  std::optional<Client> doomed_client = bus.client("svc/moved").value();
  QueueConsumer original = bus.queue_consumer("jobs/moved").value();
  ASSERT_TRUE(source.add(*doomed).ok());
  ASSERT_TRUE(source.add(*doomed_client).ok());
  ASSERT_TRUE(source.add(original).ok());
  ASSERT_EQ(source.size(), 3u);
  std::vector<QueueConsumer> owners;
  owners.push_back(std::move(original));
  doomed.reset();
  doomed_client.reset();
  EXPECT_EQ(source.size(), 1u);
  EXPECT_FALSE(source.rearm());
  ASSERT_TRUE(producer.send(bytes_of(uint64_t{9})).ok());
  ASSERT_TRUE(readable(source.fd(), 5s)) << "the moved consumer is no longer watched";
  auto d = owners[0].try_receive();
  ASSERT_TRUE(d.ok()) << d.status().to_string();
  EXPECT_EQ(value_of(d->bytes()), 9u);
  ASSERT_TRUE(d->ack().ok());
  EXPECT_FALSE(source.rearm());
  source.remove(owners[0]);  // found by the moved-to endpoint
  EXPECT_EQ(source.size(), 0u);
}

// A consumer served by an event loop re-claims its role from a daemon restarted after a kill -9 while
// nothing arrives: the source wakes for the queue's new daemon epoch, and the loop's rearm() re-claims.
TEST(AsyncQueueTest, AnIdleWatchedConsumerReclaimsItsRoleAfterADaemonCrash) {
  TestDaemon daemon;
  Bus bus = daemon.connect();
  auto consumer = bus.queue_consumer("jobs/idle-watched").value();
  auto source = EventSource::create().value();
  ASSERT_TRUE(source.add(consumer).ok());
  EXPECT_FALSE(source.rearm());
  ASSERT_EQ(daemon.stop(SIGKILL), 128 + SIGKILL);
  ASSERT_TRUE(daemon.start());
  int64_t endpoints = 0;
  for (int i = 0; i < 100 && endpoints != 1; ++i) {
    if (readable(source.fd(), 50ms)) {
      while (consumer.try_receive().ok()) {
      }
      (void)source.rearm();
    }
    endpoints = daemon.queue_statistics("jobs/idle-watched")["endpoints"].value_or(int64_t{0});
  }
  EXPECT_EQ(endpoints, 1) << "the watched consumer did not re-claim its role";
  auto producer = bus.queue_producer("jobs/idle-watched").value();
  ASSERT_TRUE(producer.send(bytes_of(uint64_t{3})).ok());
  ASSERT_TRUE(readable(source.fd(), 5s));
  auto d = consumer.try_receive();
  ASSERT_TRUE(d.ok()) << d.status().to_string();
  EXPECT_EQ(value_of(d->bytes()), 3u);
}

TEST(AsyncQueueTest, DestructorsReturnPromptly) {
  TestDaemon daemon;
  Bus bus = daemon.connect();
  auto consumer = bus.queue_consumer("aq/live").value();
  auto server = bus.server("aq/live-svc").value();
  auto client = bus.client("aq/live-svc").value();
  {
    auto source = EventSource::create().value();
    ASSERT_TRUE(source.add(consumer).ok());
    ASSERT_TRUE(source.add(server).ok());
    ASSERT_TRUE(source.add(client).ok());
    EXPECT_FALSE(source.rearm());        // the thread sleeps on the three queues now
    std::this_thread::sleep_for(100ms);  // and has certainly gone to sleep
    const auto start = Clock::now();
    { EventSource gone = std::move(source); }
    EXPECT_LT(Clock::now() - start, 2s);
  }
  int frames_destroyed = 0;
  struct Flag {
    int* count;
    ~Flag() { ++*count; }
  };
  auto receiver = [](EventLoop& loop, QueueConsumer& c, int* destroyed) -> Task {
    Flag flag{destroyed};
    Delivery d = co_await loop.receive(c);
  };
  auto caller = [](EventLoop& loop, Client& c, int* destroyed) -> Task {
    Flag flag{destroyed};
    Result<Response> r = co_await loop.call(c, bytes_of(uint64_t{3}), 60s);
  };
  {
    auto loop = EventLoop::create().value();
    loop.spawn(receiver(loop, consumer, &frames_destroyed));
    loop.spawn(caller(loop, client, &frames_destroyed));
    EXPECT_EQ(loop.run_once(50ms), 0u);  // the request waits for the server, which nobody runs
    EXPECT_EQ(loop.tasks(), 2u);
    const auto start = Clock::now();
    { EventLoop gone = std::move(loop); }
    EXPECT_LT(Clock::now() - start, 2s);
  }
  EXPECT_EQ(frames_destroyed, 2);
  // The abandoned call's request is still answered; its response is discarded as late.
  auto request = server.receive(1s);
  ASSERT_TRUE(request.ok());
  ASSERT_TRUE(request->respond(bytes_of(uint64_t{9})).ok());
  auto other = client.call_async(bytes_of(uint64_t{4}), 50ms);
  ASSERT_TRUE(other.ok());
  auto outcome = client.wait(other.value());
  EXPECT_EQ(outcome.status().code(), Errc::kTimeout);
  EXPECT_EQ(client.late_responses(), 1u);
}

}  // namespace
}  // namespace shmbus::test

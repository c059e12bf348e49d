// One thread, no busy-polling: an EventLoop serves an RPC service through a callback and a work queue through
// another, while a coroutine calls the service with `co_await loop.call(...)` and queues a job per answer.
// Everything is in one process for brevity; the server, the client or the consumer may as well live in
// other processes (each with its own loop, or blocking calls).
#include <shmbus/bus.h>
#include <shmbus/event_loop.h>
#include <shmbus/rpc.h>
#include <shmbus/work_queue.h>

#include <cinttypes>
#include <cstdint>
#include <cstdio>
#include <cstring>

namespace {

using namespace std::chrono_literals;

std::span<const std::byte> bytes_of(const uint64_t& v) {
  return std::as_bytes(std::span(&v, 1));
}
uint64_t value_of(std::span<const std::byte> b) {
  uint64_t v = 0;
  std::memcpy(&v, b.data(), std::min(b.size(), sizeof v));
  return v;
}

// Asks for the squares of 1..count, one call at a time, and queues a job with each answer.
shmbus::Task ask(shmbus::EventLoop& loop, shmbus::Client& squares, shmbus::QueueProducer& jobs,
                 uint64_t count, int* failures) {
  for (uint64_t i = 1; i <= count; ++i) {
    shmbus::Result<shmbus::Response> r = co_await loop.call(squares, bytes_of(i), 1s);
    if (!r) {
      std::fprintf(stderr, "call failed: %s\n", r.status().to_string().c_str());
      ++*failures;
      break;
    }
    const uint64_t square = value_of(r->bytes());
    std::printf("%" PRIu64 "^2 = %" PRIu64 "\n", i, square);
    if (!jobs.send(bytes_of(square)).ok()) ++*failures;
  }
  loop.stop();
}

}  // namespace

int main() {
  auto bus = shmbus::Bus::connect();
  if (!bus) return std::fprintf(stderr, "%s\n", bus.status().to_string().c_str()), 1;
  auto server = bus->server("example/square").value();
  auto client = bus->client("example/square").value();
  auto consumer = bus->queue_consumer("example/squares-log").value();
  auto producer = bus->queue_producer("example/squares-log").value();

  auto loop = shmbus::EventLoop::create().value();
  (void)loop.add(server, [](shmbus::Request r) {
    if (!r) return;  // the daemon stopped
    const uint64_t v = value_of(r.bytes());
    (void)r.respond(bytes_of(v * v));
  });
  uint64_t logged = 0;
  (void)loop.add(consumer, [&](shmbus::Delivery d) {
    if (!d) return;
    ++logged;
    (void)d.ack();
  });
  int failures = 0;
  constexpr uint64_t kCalls = 10;
  loop.spawn(ask(loop, client, producer, kCalls, &failures));
  loop.run_for(10s);                                                     // until the coroutine stops it
  for (int i = 0; i < 10 && logged < kCalls; ++i) loop.run_once(100ms);  // the last jobs
  std::printf("%" PRIu64 " jobs consumed, %d failure(s)\n", logged, failures);
  return failures == 0 && loop.tasks() == 0 ? 0 : 1;
}

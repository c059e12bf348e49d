// Work queue: a producer and two competing consumer processes. Each job goes to exactly one consumer and
// stays in the queue until that consumer acknowledges it; a consumer that fails a job rejects it and it is
// delivered again (to anyone), up to max_deliveries, then kept as a dead letter (`shmbus queue dead`).
// Urgent jobs (priority 9) overtake normal ones (0). Run with a daemon: example_work_queue [JOBS]
#include <shmbus/bus.h>
#include <shmbus/work_queue.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>

using namespace std::chrono_literals;

int consume(int id) {
  auto bus = shmbus::Bus::connect().value();
  auto jobs = bus.queue_consumer("example/jobs").value();
  int done = 0;
  for (;;) {
    auto job = jobs.receive(2s);  // highest priority first, oldest first within it
    if (!job) break;              // kTimeout: no more work
    uint64_t n = 0;
    std::memcpy(&n, job->bytes().data(), sizeof n);
    if (n % 10 == 3 && job->delivery_count() == 1) {
      (void)job->reject();  // fail it once: it comes back with delivery_count() == 2
      continue;
    }
    (void)job->ack();  // done: it leaves the queue
    ++done;
  }
  std::printf("consumer %d: %d jobs done\n", id, done);
  std::fflush(stdout);  // the child leaves with _exit
  return 0;
}

int main(int argc, char** argv) {
  const uint64_t count = argc > 1 ? std::strtoull(argv[1], nullptr, 10) : 1000;
  auto bus = shmbus::Bus::connect();
  if (!bus) return std::fprintf(stderr, "work_queue: %s\n", bus.status().to_string().c_str()), 1;
  shmbus::QueueProducerOptions options;
  options.queue.capacity = 256;      // jobs held at once: ready + in flight + dead letters
  options.queue.max_deliveries = 3;  // then a job becomes a dead letter
  auto producer = bus->queue_producer("example/jobs", options);
  if (!producer) return std::fprintf(stderr, "work_queue: %s\n", producer.status().to_string().c_str()), 1;
  for (int id = 1; id <= 2; ++id) {
    if (fork() == 0) _exit(consume(id));
  }
  for (uint64_t n = 0; n < count; ++n) {
    const uint32_t priority = n % 100 == 0 ? 9 : 0;
    if (auto s = producer->send(std::as_bytes(std::span(&n, 1)), priority); !s.ok()) {
      std::fprintf(stderr, "work_queue: %s\n", s.to_string().c_str());
    }
  }
  while (wait(nullptr) > 0) {
  }
  auto inspector = bus->queue_inspector("example/jobs").value();
  const shmbus::QueueInfo info = inspector.info();
  std::printf("sent %llu, acked %llu, redelivered %llu, dead letters %u\n",
              static_cast<unsigned long long>(count), static_cast<unsigned long long>(info.acked),
              static_cast<unsigned long long>(info.redelivered), info.dead_letters);
  return info.acked == count ? 0 : 1;
}

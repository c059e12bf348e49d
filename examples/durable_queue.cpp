// Durable queue: jobs that survive a crash of any process (the daemon included), a daemon restart and a
// reboot. `example_durable_queue send N` queues N jobs; `example_durable_queue work` takes and acknowledges
// what is there. Stop or kill -9 shmbusd in between, start it again (same --instance): the jobs are still
// there. The daemon keeps the file in <data_dir>/<instance>/ ($SHMBUS_DATA_DIR, default /var/lib/shmbus).
#include <shmbus/bus.h>
#include <shmbus/work_queue.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

using namespace std::chrono_literals;

int main(int argc, char** argv) {
  const std::string mode = argc > 1 ? argv[1] : "";
  auto bus = shmbus::Bus::connect();
  if (!bus) return std::fprintf(stderr, "durable_queue: %s\n", bus.status().to_string().c_str()), 1;
  shmbus::QueueSettings settings;
  settings.durable = true;
  settings.sync = shmbus::SyncPolicy::kAlways;  // each send and ack is on disk before it returns
  if (mode == "send") {
    const uint64_t count = argc > 2 ? std::strtoull(argv[2], nullptr, 10) : 10;
    auto producer = bus->queue_producer("example/durable", {.queue = settings});
    if (!producer)
      return std::fprintf(stderr, "durable_queue: %s\n", producer.status().to_string().c_str()), 1;
    for (uint64_t n = 1; n <= count; ++n) {
      if (auto s = producer->send(std::as_bytes(std::span(&n, 1))); !s.ok()) {
        return std::fprintf(stderr, "durable_queue: %s\n", s.to_string().c_str()), 1;
      }
    }
    std::printf("queued %llu jobs\n", static_cast<unsigned long long>(count));
    return 0;
  }
  if (mode == "work") {
    auto consumer = bus->queue_consumer("example/durable", {.queue = settings});
    if (!consumer)
      return std::fprintf(stderr, "durable_queue: %s\n", consumer.status().to_string().c_str()), 1;
    int done = 0;
    while (auto job = consumer->receive(500ms)) {
      uint64_t n = 0;
      std::memcpy(&n, job->bytes().data(), sizeof n);
      std::printf("job %llu (delivery %u)\n", static_cast<unsigned long long>(n), job->delivery_count());
      (void)job->ack();
      ++done;
    }
    std::printf("%d jobs done\n", done);
    return 0;
  }
  std::fprintf(stderr, "usage: example_durable_queue send [N] | work\n");
  return 2;
}

// Minimal publisher: sends COUNT messages (default 100000) to "demo/numbers" on a lossless topic,
// each carrying its index, once at least one subscriber is attached.
#include <shmbus/bus.h>

#include <cstdio>
#include <cstdlib>
#include <thread>

int main(int argc, char** argv) {
  const uint64_t count = argc > 1 ? std::strtoull(argv[1], nullptr, 10) : 100000;
  auto bus = shmbus::Bus::connect();
  if (!bus) return std::fprintf(stderr, "publisher: %s\n", bus.status().to_string().c_str()), 1;
  shmbus::PublisherOptions options;
  options.topic.policy = shmbus::Policy::kLossless;  // wait for the subscriber rather than drop
  auto pub = bus->publisher<uint64_t>("demo/numbers", options);
  if (!pub) return std::fprintf(stderr, "publisher: %s\n", pub.status().to_string().c_str()), 1;
  while (pub->untyped().subscribers() == 0) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  for (uint64_t i = 0; i < count; ++i) {
    auto loan = pub->loan();  // a slot in shared memory, written in place
    if (!loan) return std::fprintf(stderr, "publisher: %s\n", loan.status().to_string().c_str()), 1;
    **loan = i;
    pub->publish(std::move(loan).value());
  }
  std::fprintf(stderr, "publisher: sent %llu messages\n", static_cast<unsigned long long>(count));
  return 0;
}

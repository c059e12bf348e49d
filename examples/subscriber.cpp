// Minimal subscriber: receives COUNT messages (default 100000) from "demo/numbers", checks their order and
// prints count, rate and publish->take latency percentiles.
#include <shmbus/bus.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <vector>

int main(int argc, char** argv) {
  using namespace std::chrono;
  const uint64_t count = argc > 1 ? std::strtoull(argv[1], nullptr, 10) : 100000;
  auto bus = shmbus::Bus::connect();
  if (!bus) return std::fprintf(stderr, "subscriber: %s\n", bus.status().to_string().c_str()), 1;
  auto sub = bus->subscriber<uint64_t>("demo/numbers");
  if (!sub) return std::fprintf(stderr, "subscriber: %s\n", sub.status().to_string().c_str()), 1;
  std::vector<int64_t> latency;
  latency.reserve(count);
  steady_clock::time_point first;
  for (uint64_t expected = 0; expected < count; ++expected) {
    auto m = sub->take(seconds(10));  // zero-copy view into shared memory
    if (!m)
      return std::fprintf(stderr, "subscriber: nothing for 10 s after %llu messages\n",
                          (unsigned long long)expected),
             1;
    const auto now = steady_clock::now();
    if (expected == 0) first = now;
    if (*m != expected)
      return std::fprintf(stderr, "subscriber: got %llu, expected %llu\n", (unsigned long long)*m,
                          (unsigned long long)expected),
             1;
    latency.push_back(duration_cast<nanoseconds>(now - m.publish_time()).count());
  }
  const double seconds_taken = duration<double>(steady_clock::now() - first).count();
  std::sort(latency.begin(), latency.end());
  std::printf("received %llu messages in order, %.0f msg/s, latency p50 %lld ns, p99 %lld ns\n",
              (unsigned long long)count, count / std::max(seconds_taken, 1e-9),
              (long long)latency[latency.size() / 2], (long long)latency[latency.size() * 99 / 100]);
  return 0;
}

// Typed zero-copy: a struct is written in place in shared memory by the publisher and read in place by the
// subscriber (here two threads of one process; across processes it is the same code).
#include <shmbus/bus.h>

#include <cstdio>
#include <thread>

struct Pose {
  double x, y, z;
  double qw, qx, qy, qz;
  uint64_t frame;
};

int main() {
  using namespace std::chrono_literals;
  auto bus = shmbus::Bus::connect();
  if (!bus) return std::fprintf(stderr, "%s\n", bus.status().to_string().c_str()), 1;
  auto sub = bus->subscriber<Pose>("robot/pose");
  auto pub = bus->publisher<Pose>("robot/pose");
  if (!sub || !pub) return std::fprintf(stderr, "cannot open robot/pose\n"), 1;
  std::thread publisher([&] {
    for (uint64_t i = 1; i <= 5; ++i) {
      auto pose = pub->loan().value();
      *pose = Pose{0.1 * i, 0.2 * i, 0.0, 1, 0, 0, 0, i};
      pub->publish(std::move(pose));
      std::this_thread::sleep_for(10ms);
    }
  });
  for (int received = 0; received < 5;) {
    if (auto m = sub->take(1s)) {
      std::printf("frame %llu at (%.1f, %.1f) seq %llu from publisher %llu\n", (unsigned long long)m->frame,
                  m->x, m->y, (unsigned long long)m.sequence(), (unsigned long long)m.publisher_id());
      ++received;
    }
  }
  publisher.join();
  return 0;
}

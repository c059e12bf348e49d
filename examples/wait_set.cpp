// One thread serving several subscriptions: a WaitSet polls them briefly, then sleeps on all of them at once.
#include <shmbus/bus.h>
#include <shmbus/wait_set.h>

#include <cstdio>
#include <thread>

int main() {
  using namespace std::chrono_literals;
  auto bus = shmbus::Bus::connect();
  if (!bus) return std::fprintf(stderr, "%s\n", bus.status().to_string().c_str()), 1;
  auto temperature = bus->subscriber("sensors/temperature").value();
  auto pressure = bus->subscriber("sensors/pressure").value();
  std::thread sensors([&] {
    auto t = bus->publisher("sensors/temperature").value();
    auto p = bus->publisher("sensors/pressure").value();
    for (int i = 0; i < 3; ++i) {
      (void)t.publish(std::as_bytes(std::span("21.5C", 5)));
      std::this_thread::sleep_for(20ms);
      (void)p.publish(std::as_bytes(std::span("1013hPa", 7)));
      std::this_thread::sleep_for(20ms);
    }
  });
  shmbus::WaitSet waiter;
  waiter.add(temperature);
  waiter.add(pressure);
  for (int received = 0; received < 6;) {
    for (shmbus::Subscriber* ready : waiter.wait(1s)) {
      while (auto m = ready->try_take()) {
        std::printf("%s: %.*s\n", ready->topic().c_str(), static_cast<int>(m.size()),
                    reinterpret_cast<const char*>(m.data()));
        ++received;
      }
    }
  }
  sensors.join();
  return 0;
}

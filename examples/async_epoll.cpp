// One thread, no busy-polling: an EventLoop (epoll) serves one topic through a callback and another through a
// coroutine that `co_await`s its messages.
#include <shmbus/bus.h>
#include <shmbus/event_loop.h>

#include <cstdio>
#include <thread>

namespace {

std::string_view text_of(const shmbus::Sample& m) {
  return {reinterpret_cast<const char*>(m.data()), m.size()};
}

// Prints `count` alarms, then stops the loop. Runs on the loop's thread between other work.
shmbus::Task watch_alarms(shmbus::EventLoop& loop, shmbus::Subscriber& alarms, int count) {
  for (int i = 0; i < count; ++i) {
    shmbus::Sample m = co_await loop.next(alarms);
    if (!m) break;  // the topic closed
    std::printf("alarm #%lu: %.*s\n", m.sequence(), static_cast<int>(m.size()), text_of(m).data());
  }
  loop.stop();
}

}  // namespace

int main() {
  using namespace std::chrono_literals;
  auto bus = shmbus::Bus::connect();
  if (!bus) return std::fprintf(stderr, "%s\n", bus.status().to_string().c_str()), 1;
  auto temperature = bus->subscriber("sensors/temperature").value();
  auto alarms = bus->subscriber("sensors/alarms").value();

  auto loop = shmbus::EventLoop::create().value();
  int readings = 0;
  (void)loop.add(temperature, [&](shmbus::Sample m) {
    std::printf("temperature: %.*s\n", static_cast<int>(m.size()), text_of(m).data());
    ++readings;
  });
  loop.spawn(watch_alarms(loop, alarms, 3));

  std::thread sensors([&] {  // stands in for other processes
    auto t = bus->publisher("sensors/temperature").value();
    auto a = bus->publisher("sensors/alarms").value();
    for (int i = 0; i < 3; ++i) {
      (void)t.publish(std::as_bytes(std::span("21.5C", 5)));
      std::this_thread::sleep_for(20ms);
      (void)a.publish(std::as_bytes(std::span("door open", 9)));
      std::this_thread::sleep_for(20ms);
    }
  });
  loop.run_for(10s);  // until the coroutine stops it
  sensors.join();
  loop.run_once(0ms);  // what arrived meanwhile
  std::printf("%d readings, coroutine %s\n", readings, loop.tasks() == 0 ? "done" : "still waiting");
  return loop.tasks() == 0 ? 0 : 1;
}

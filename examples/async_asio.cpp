// Boost.Asio: wait for shmbus messages in an io_context like for any socket, through EventSource's
// descriptor.
#include <shmbus/bus.h>
#include <shmbus/event_source.h>
#include <unistd.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/steady_timer.hpp>
#include <cstdio>
#include <cstring>
#include <exception>
#include <functional>
#include <thread>

int main() try {
  using namespace std::chrono_literals;
  auto bus = shmbus::Bus::connect();
  if (!bus) return std::fprintf(stderr, "%s\n", bus.status().to_string().c_str()), 1;
  auto commands = bus->subscriber("robot/commands").value();
  auto source = shmbus::EventSource::create().value();
  (void)source.add(commands);

  boost::asio::io_context io;
  // Asio closes the descriptor it wraps: give it a duplicate, the source keeps its own.
  boost::asio::posix::stream_descriptor readiness(io, ::dup(source.fd()));
  boost::asio::steady_timer give_up(io, 10s);  // other work of the same thread: here, a deadline
  int received = 0;
  std::function<void(boost::system::error_code)> on_readable = [&](boost::system::error_code error) {
    if (error) return;
    while (auto m = commands.try_take()) {
      std::printf("command: %.*s\n", static_cast<int>(m.size()), reinterpret_cast<const char*>(m.data()));
      ++received;
    }
    source.rearm();  // readable again at once if more came meanwhile
    if (received < 5) {
      readiness.async_wait(boost::asio::posix::stream_descriptor::wait_read, on_readable);
    } else {
      give_up.cancel();  // all there: nothing left to wait for, io.run() returns
    }
  };
  readiness.async_wait(boost::asio::posix::stream_descriptor::wait_read, on_readable);

  give_up.async_wait([&](boost::system::error_code error) {
    if (!error) readiness.cancel();
  });

  std::jthread operator_console([&] {  // stands in for another process; joined also if io.run() throws
    auto pub = bus->publisher("robot/commands");
    if (!pub) return;  // nothing comes: the deadline ends io.run()
    for (const char* c : {"forward", "left", "forward", "right", "stop"}) {
      std::this_thread::sleep_for(20ms);
      (void)pub->publish(std::as_bytes(std::span(c, std::strlen(c))));
    }
  });
  io.run();
  operator_console.join();
  std::printf("%d commands\n", received);
  return received == 5 ? 0 : 1;
} catch (const std::exception& e) {
  std::fprintf(stderr, "async_asio: %s\n", e.what());  // value() of a failed Result, or Asio, threw
  return 1;
}

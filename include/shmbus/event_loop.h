// A small epoll loop on one thread: callbacks for subscribers and file descriptors, and coroutines that
// `co_await` messages. Built on EventSource, so nothing busy-polls.
//
//   auto loop = shmbus::EventLoop::create().value();
//   (void)loop.add(poses, [](shmbus::Sample m) { use(m); });       // a callback per message, in order
//   loop.spawn(consume(loop, frames));                             // a Task: co_await loop.next(frames)
//   loop.run_for(10s);                                             // or run() until stop()
//
// Delivery: per subscriber, messages arrive in try_take order, at most kBatch per subscriber per round so
// that one busy topic cannot starve the others. When a topic closes (the daemon stops), its callback gets,
// and co_await returns, an empty Sample.
//
// Thread safety: everything but stop() runs on the thread that calls run*(); callbacks and coroutines run
// there. REQUIRES: added subscribers (and file descriptors) outlive their registration, or are removed first;
// samples a coroutine holds are released before their subscriber is destroyed (destroy the loop first).
#pragma once

#include <chrono>
#include <coroutine>
#include <cstddef>
#include <functional>
#include <memory>

#include "shmbus/bus.h"
#include "shmbus/event_source.h"
#include "shmbus/status.h"
#include "shmbus/task.h"

namespace shmbus {

namespace detail {
struct EventLoopState;
struct LoopSubscriber;
}  // namespace detail

// What `co_await loop.next(subscriber)` waits on: the subscriber's next message. Takes it at once when one is
// waiting (up to kBatch in a row), else suspends the coroutine until the loop delivers one. One coroutine at
// a time may await a given subscriber.
class NextMessage {
 public:
  bool await_ready();
  void await_suspend(std::coroutine_handle<> coroutine);
  Sample await_resume() { return std::move(sample_); }

 private:
  friend class EventLoop;
  friend struct detail::EventLoopState;
  NextMessage(detail::EventLoopState* loop, Subscriber* subscriber) : loop_(loop), subscriber_(subscriber) {}

  detail::EventLoopState* loop_;
  Subscriber* subscriber_;
  detail::LoopSubscriber* entry_ = nullptr;
  Sample sample_;
  std::coroutine_handle<> coroutine_;
};

class EventLoop {
 public:
  // Messages handed out per subscriber per round before the loop serves the others.
  static constexpr std::size_t kBatch = 64;

  // Creates the epoll descriptor and the EventSource (with its thread). kInternal if the system refuses.
  static Result<EventLoop> create();
  EventLoop(EventLoop&&) noexcept;
  EventLoop& operator=(EventLoop&&) noexcept;
  // Destroys coroutines still suspended (releasing what they hold), then stops the EventSource's thread.
  ~EventLoop();

  // Calls `on_message` for every message of `subscriber`. kInvalidArgument if it is already added; the
  // EventSource's errors otherwise (kExhausted beyond EventSource::kMaxSubscribers).
  Status add(Subscriber& subscriber, std::function<void(Sample)> on_message);
  // Stops delivering to `subscriber`; a coroutine awaiting it resumes with an empty Sample. Callable from
  // callbacks and coroutines.
  void remove(Subscriber& subscriber);

  // Calls `on_readable` while `fd` is readable (level-triggered: read it, or it is called again). For
  // sockets, pipes, timerfds. kInvalidArgument if already added; kInternal if epoll refuses it.
  Status add_fd(int fd, std::function<void()> on_readable);
  void remove_fd(int fd);

  // co_await loop.next(subscriber) -> Sample. Adds the subscriber on first use (without callback). An empty
  // Sample if the topic is closed, the subscriber is removed, or it cannot be watched (see add's errors).
  NextMessage next(Subscriber& subscriber);

  // Runs `task` until its first suspension, now; the loop then resumes it and destroys it when it ends.
  // Rethrows what escapes the task if it ends in this first run.
  void spawn(Task task);

  // Waits up to `timeout` (negative: no limit) for something to do, does it, and returns how many callbacks
  // and resumptions ran. An exception that escapes a callback or a coroutine propagates from here; the loop
  // stays usable (what the round did not serve is served by the next one).
  std::size_t run_once(std::chrono::milliseconds timeout);
  // Runs rounds until `duration` passed or stop() was called.
  void run_for(std::chrono::nanoseconds duration);
  // Runs rounds until stop() is called.
  void run();
  // Makes run() / run_for() return after the current round. Any thread, any time (also before run()).
  void stop();

  // The epoll descriptor: readable when run_once would find work, to nest this loop inside another one.
  int fd() const;
  // Coroutines spawned and not finished.
  std::size_t tasks() const;

 private:
  explicit EventLoop(std::unique_ptr<detail::EventLoopState> state);
  std::unique_ptr<detail::EventLoopState> state_;
};

}  // namespace shmbus

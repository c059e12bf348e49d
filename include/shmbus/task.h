// A minimal coroutine type for EventLoop::spawn: one thread runs many coroutines, each awaiting messages with
// `co_await loop.next(subscriber)`.
//
//   shmbus::Task print_poses(shmbus::EventLoop& loop, shmbus::Subscriber& poses) {
//     while (shmbus::Sample m = co_await loop.next(poses)) print(m);   // empty once the topic closes
//   }
//   loop.spawn(print_poses(loop, poses));
//   loop.run();
//
// A Task does nothing until spawned (it starts suspended); the loop then owns it and destroys it when it
// finishes. It returns no value and cannot itself be awaited: coroutines talk through the bus, or through
// variables their caller owns. An exception that escapes it is rethrown from the loop's run call.
#pragma once

#include <coroutine>
#include <exception>
#include <utility>

namespace shmbus {

class Task {
 public:
  struct promise_type {
    Task get_return_object() { return Task(std::coroutine_handle<promise_type>::from_promise(*this)); }
    std::suspend_always initial_suspend() noexcept { return {}; }  // EventLoop::spawn starts it
    std::suspend_always final_suspend() noexcept { return {}; }    // the loop sees done() and destroys it
    void return_void() {}
    void unhandled_exception() { exception = std::current_exception(); }
    std::exception_ptr exception;
  };

  Task(Task&& other) noexcept : handle_(std::exchange(other.handle_, {})) {}
  Task& operator=(Task&& other) noexcept {
    if (this != &other) {
      if (handle_) handle_.destroy();
      handle_ = std::exchange(other.handle_, {});
    }
    return *this;
  }
  ~Task() {
    if (handle_) handle_.destroy();  // never spawned
  }

  // Hands the coroutine over (to the loop). The Task becomes empty.
  std::coroutine_handle<promise_type> release() { return std::exchange(handle_, {}); }

 private:
  explicit Task(std::coroutine_handle<promise_type> handle) : handle_(handle) {}
  std::coroutine_handle<promise_type> handle_;
};

}  // namespace shmbus

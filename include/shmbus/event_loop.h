// A small epoll loop on one thread: callbacks for subscribers, work-queue consumers, RPC servers and file
// descriptors, and coroutines that `co_await` messages, deliveries, requests and RPC responses. Built on
// EventSource, so nothing busy-polls.
//
//   auto loop = shmbus::EventLoop::create().value();
//   (void)loop.add(poses, [](shmbus::Sample m) { use(m); });       // a callback per message, in order
//   (void)loop.add(jobs, [](shmbus::Delivery d) { work(d.bytes()); (void)d.ack(); });
//   (void)loop.add(server, [](shmbus::Request r) { (void)r.respond(answer(r.bytes())); });
//   loop.spawn(consume(loop, frames));   // a Task: co_await loop.next(frames), loop.receive(consumer),
//                                        // loop.call(client, request, timeout)
//   loop.run_for(10s);                                             // or run() until stop()
//
// Delivery: per subscriber (or consumer, or server), messages arrive in try_take (try_receive) order, at most
// kBatch per endpoint per round so that one busy topic or queue cannot starve the others. When a topic or
// queue closes (the daemon stops), its callback gets, and co_await returns, an empty Sample, Delivery or
// Request. A Delivery dropped without ack() is requeued, and comes back at once: ack or reject it.
//
// Thread safety: everything but stop() runs on the thread that calls run*(); callbacks and coroutines run
// there. REQUIRES: added subscribers, queue endpoints (and file descriptors) outlive their registration, or
// are removed first; endpoints stay where they are (not moved) while registered; samples, deliveries and
// requests a coroutine holds are released before their endpoint is destroyed (destroy the loop first).
// Sending into a full queue waits for room up to the sender's full_timeout (QueueProducer::send,
// Client::call_async, Request::respond), blocking the loop meanwhile: set it to 0 where that must not happen.
#pragma once

#include <chrono>
#include <coroutine>
#include <cstddef>
#include <functional>
#include <memory>
#include <span>

#include "shmbus/bus.h"
#include "shmbus/event_source.h"
#include "shmbus/rpc.h"
#include "shmbus/status.h"
#include "shmbus/task.h"
#include "shmbus/work_queue.h"

namespace shmbus {

namespace detail {
struct EventLoopState;
struct LoopSubscriber;
template <class Endpoint, class Item>
struct LoopReceiver;
struct LoopClient;
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

// What `co_await loop.receive(consumer)` (a Delivery) and `co_await loop.receive(server)` (a Request) wait
// on: the endpoint's next message, as NextMessage does for a subscriber (same batching, one coroutine at a
// time per endpoint). An empty item if the queue closed, the endpoint is removed, or it cannot be watched.
template <class Endpoint, class Item>
class NextItem {
 public:
  bool await_ready();
  void await_suspend(std::coroutine_handle<> coroutine);
  Item await_resume() { return std::move(item_); }

 private:
  friend class EventLoop;
  friend struct detail::LoopReceiver<Endpoint, Item>;
  NextItem(detail::EventLoopState* loop, Endpoint* endpoint) : loop_(loop), endpoint_(endpoint) {}

  detail::EventLoopState* loop_;
  Endpoint* endpoint_;
  detail::LoopReceiver<Endpoint, Item>* entry_ = nullptr;
  Item item_;
  std::coroutine_handle<> coroutine_;
};
using NextDelivery = NextItem<QueueConsumer, Delivery>;
using NextRequest = NextItem<Server, Request>;
extern template class NextItem<QueueConsumer, Delivery>;
extern template class NextItem<Server, Request>;

// What `co_await loop.call(client, request, timeout)` waits on: the call's outcome, as Client::call returns
// it (the response, the server's error, kServerDied, kTimeout at the deadline, kClosed). The request is sent
// when the co_await starts; the coroutine resumes when the outcome is known. Several coroutines may call
// through one client at once.
class CallOutcome {
 public:
  bool await_ready();
  void await_suspend(std::coroutine_handle<> coroutine);
  Result<Response> await_resume() { return std::move(outcome_); }

 private:
  friend class EventLoop;
  friend struct detail::EventLoopState;
  friend struct detail::LoopClient;
  CallOutcome(detail::EventLoopState* loop, Client* client, std::span<const std::byte> request,
              std::chrono::nanoseconds timeout)
      : loop_(loop), client_(client), request_(request), timeout_(timeout) {}

  detail::EventLoopState* loop_;
  Client* client_;
  std::span<const std::byte> request_;  // read when the co_await starts
  std::chrono::nanoseconds timeout_;
  detail::LoopClient* entry_ = nullptr;
  PendingCall call_;
  Result<Response> outcome_{Status{Errc::kInternal, "the call did not finish"}};
  std::coroutine_handle<> coroutine_;
};

class EventLoop {
 public:
  // Messages handed out per subscriber (consumer, server) per round before the loop serves the others.
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

  // Calls `on_delivery` for every message of `consumer` / `on_request` for every request of `server`, as
  // add(Subscriber&) does (same errors). The callback owns the Delivery or Request: ack or respond there, or
  // move it somewhere to finish later.
  Status add(QueueConsumer& consumer, std::function<void(Delivery)> on_delivery);
  Status add(Server& server, std::function<void(Request)> on_request);
  // Stops serving the endpoint. A coroutine awaiting it resumes with an empty item; calls of a client
  // resume with kClosed (the calls are abandoned: their responses will be discarded).
  void remove(QueueConsumer& consumer);
  void remove(Server& server);
  void remove(Client& client);

  // Calls `on_readable` while `fd` is readable (level-triggered: read it, or it is called again). For
  // sockets, pipes, timerfds. kInvalidArgument if already added; kInternal if epoll refuses it.
  Status add_fd(int fd, std::function<void()> on_readable);
  void remove_fd(int fd);

  // co_await loop.next(subscriber) -> Sample. Adds the subscriber on first use (without callback). An empty
  // Sample if the topic is closed, the subscriber is removed, or it cannot be watched (see add's errors).
  NextMessage next(Subscriber& subscriber);
  // co_await loop.receive(consumer) -> Delivery; co_await loop.receive(server) -> Request. Add the endpoint
  // on first use (without callback); an empty item in the cases NextItem lists.
  NextDelivery receive(QueueConsumer& consumer);
  NextRequest receive(Server& server);
  // co_await loop.call(client, request, timeout) -> Result<Response>. Adds the client on first use; `request`
  // is copied when the co_await starts. The loop wakes at the call's deadline on its own (a timerfd).
  CallOutcome call(Client& client, std::span<const std::byte> request, std::chrono::nanoseconds timeout);

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

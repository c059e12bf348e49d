// A file descriptor that becomes readable when subscribers, work-queue consumers, RPC servers or clients may
// have something to take, so that an event loop (epoll, poll, select, Boost.Asio, libuv...) serves them all
// from one thread without busy-polling.
//
//   auto source = shmbus::EventSource::create().value();
//   (void)source.add(pose);
//   (void)source.add(frames);
//   for (;;) {
//     pollfd p{source.fd(), POLLIN, 0};
//     poll(&p, 1, -1);
//     while (auto m = pose.try_take()) use(m);      // drain, or take a bounded batch
//     while (auto m = frames.try_take()) use(m);
//     source.rearm();                                // then wait again
//   }
//
// Readiness: fd() is readable whenever a watched subscriber may have a message, and stays readable until
// rearm(). rearm() clears it and checks every subscriber again: if one still has a message the fd is readable
// again at once (level-triggered, so taking only a batch per wake-up is fine); otherwise a background thread
// sleeps on the subscribers' topics and makes the fd readable when a publisher commits to one of them. A
// topic that is re-opened also makes it readable, once; one that closes (its daemon stopped) too, and then
// every 200 ms while it stays closed, so that its subscriber re-opens it once a daemon is back. Spurious
// readiness is possible but rare; try_take() simply returns nothing then. A publisher joining or leaving a
// topic makes it readable once. As in Subscriber::take, a wake-up can be missed in a short race and is then
// late by 10 ms at most; the next rearm() counts it in Subscriber::late_wakeups. A subscriber that holds
// SubscriberOptions::max_held_samples samples still counts as ready (try_take returns nothing until one is
// released), so release samples before rearm() or the fd stays readable. Cost: a wake-up passes through the
// thread (publisher -> thread -> eventfd -> your loop); while messages keep coming, rearm() finds them itself
// and the thread stays out of the way.
//
// Work queues and RPC (shmbus/work_queue.h, shmbus/rpc.h), the same way with the non-blocking calls:
//
//   (void)source.add(consumer);  (void)source.add(server);  (void)source.add(client);
//   auto call = client.call_async(request, 1s).value();
//   ... after each readiness:
//   while (auto d = consumer.try_receive()) { work(d->bytes()); (void)d->ack(); }
//   while (auto r = server.try_receive()) (void)r->respond(answer(r->bytes()));
//   if (call) if (auto outcome = client.poll(call)) use(*outcome);      // a Result<Response>
//   source.rearm();
//
// A QueueConsumer or Server is ready while its queue holds a message ready for delivery (a competing
// consumer may take it first: try_receive then returns kTimeout). A Client is ready when one of its pending
// calls has its response: rearm() collects the responses that arrived (and discards those of calls that had
// timed out or were abandoned), so poll() every pending call after a readiness, or the fd stays readable. A
// call's deadline does not make the fd readable: poll pending calls from a timer too (EventLoop does). A
// queue the daemon closed makes the fd readable once; try_receive/poll then return kClosed.
//
// Thread safety: create, add, remove, rearm and the watched endpoints belong to one thread (the loop's);
// fd() may be polled from any thread. The background thread never touches an endpoint: it sleeps on the
// topics' and queues' futex words, through its own mapping of them, and writes the eventfd.
#pragma once

#include <cstddef>
#include <memory>

#include "shmbus/bus.h"
#include "shmbus/status.h"

namespace shmbus {

namespace detail {
struct EventSourceState;
}

class EventSource {
 public:
  // Subscribers and queue endpoints one source can watch together: one futex_waitv call takes at most 128
  // words, one is the source's own.
  static constexpr std::size_t kMaxWatched = 127;
  static constexpr std::size_t kMaxSubscribers = kMaxWatched;  // the earlier name

  // Creates the eventfd (non-blocking, close-on-exec) and starts the background thread. kInternal (with
  // errno's text) if either fails.
  static Result<EventSource> create();

  EventSource(EventSource&&) noexcept;
  EventSource& operator=(EventSource&&) noexcept;
  // Wakes the background thread and joins it (promptly, also while it sleeps), then closes the fd.
  ~EventSource();

  // Watches `subscriber`; the fd becomes readable at once if it has a message. Adding one twice is a no-op.
  // kExhausted beyond kMaxWatched; kInternal if its topic's memory cannot be mapped for the thread.
  // A watched endpoint may be moved (the source follows it to its new owner) or destroyed (the source stops
  // watching it) without remove(), on the owner thread.
  Status add(Subscriber& subscriber);
  void remove(Subscriber& subscriber);

  // Watches a work-queue consumer, a server (its request queue) or a client (its private response queue);
  // readiness as described above. Errors, moves and destruction as for add(Subscriber&); kInvalidArgument
  // for an empty (moved-from) endpoint.
  Status add(QueueConsumer& consumer);
  Status add(Server& server);
  Status add(Client& client);
  void remove(QueueConsumer& consumer);
  void remove(Server& server);
  void remove(Client& client);

  // A paused subscriber (or queue consumer, or server) does not count as ready in rearm(), for a consumer
  // that cannot take its messages now (a coroutine busy elsewhere), so that its loop does not spin on them.
  // Its publishers may still wake the thread (one spurious readiness per wake-up at most). Un-pausing makes
  // the fd readable if it has a message.
  void set_paused(Subscriber& subscriber, bool paused);
  void set_paused(QueueConsumer& consumer, bool paused);
  void set_paused(Server& server, bool paused);

  // The eventfd to poll for reading. Never read it yourself: rearm() does. Owned by this source.
  int fd() const;

  // Call after handling a readiness: clears the fd, re-checks every subscriber and either keeps the fd
  // readable (returns true: a message is waiting) or hands the wait to the background thread (returns false).
  bool rearm();

  std::size_t size() const;  // subscribers and queue endpoints watched

 private:
  explicit EventSource(std::unique_ptr<detail::EventSourceState> state);
  std::unique_ptr<detail::EventSourceState> state_;
};

}  // namespace shmbus

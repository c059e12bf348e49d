#include "shmbus/event_loop.h"

#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <climits>
#include <cstring>
#include <map>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "shm/deadline.h"

namespace shmbus {
namespace detail {

// A subscriber the loop serves: through a callback, or to the coroutine awaiting it.
struct LoopSubscriber {
  Subscriber* subscriber = nullptr;
  std::function<void(Sample)> on_message;  // empty: served to coroutines (EventLoop::next)
  NextMessage* waiting = nullptr;          // the suspended awaiter, if any
  std::size_t taken_this_round = 0;        // against EventLoop::kBatch
  bool closed_reported = false;            // the empty Sample for the topic's closing was handed out
  bool removed = false;                    // erased once no round iterates the list
};

// A queue endpoint the loop serves: a consumer or a server (LoopReceiver), or a client (LoopClient).
struct LoopEndpoint {
  virtual ~LoopEndpoint() = default;
  // One round: hands out what is ready (at most EventLoop::kBatch items). Returns callbacks and resumptions.
  virtual std::size_t serve(EventLoopState& loop) = 0;
  // The endpoint was removed: its awaiting coroutines are queued to resume with nothing.
  virtual void drop_waiters(EventLoopState& loop) = 0;

  const void* key = nullptr;  // the QueueConsumer, Server or Client
  std::size_t taken_this_round = 0;
  bool removed = false;  // erased once no round iterates the list
};

template <class Endpoint, class Item>
struct LoopReceiver final : LoopEndpoint {
  std::size_t serve(EventLoopState& loop) override;
  void drop_waiters(EventLoopState& loop) override;

  Endpoint* endpoint = nullptr;
  std::function<void(Item)> on_item;            // empty: served to coroutines (EventLoop::receive)
  NextItem<Endpoint, Item>* waiting = nullptr;  // the suspended awaiter, if any
  bool closed_reported = false;                 // the empty item for the queue's closing was handed out
};

struct LoopClient final : LoopEndpoint {
  std::size_t serve(EventLoopState& loop) override;
  void drop_waiters(EventLoopState& loop) override;

  Client* client = nullptr;
  std::vector<CallOutcome*> calls;  // suspended awaiters, each with its pending call
};

struct EventLoopState {
  explicit EventLoopState(EventSource s) : source(std::move(s)) {}
  ~EventLoopState();

  EventSource source;
  int epoll_fd = -1;
  int wake_fd = -1;   // an eventfd that stop() makes readable, to interrupt epoll_wait from another thread
  int timer_fd = -1;  // readable at the earliest deadline of the calls coroutines await
  uint64_t timer_deadline_ns = 0;  // what timer_fd is set to (steady clock), 0: disarmed
  std::vector<std::unique_ptr<LoopSubscriber>> subscribers;  // unique_ptr: entries stay put while it grows
  std::vector<std::unique_ptr<LoopEndpoint>> endpoints;      // likewise
  std::map<int, std::shared_ptr<std::function<void()>>> fd_callbacks;  // shared: may be removed while called
  std::map<void*, std::coroutine_handle<Task::promise_type>> tasks;    // by address: awaiters see handle<>
  std::vector<std::coroutine_handle<>> resume_empty;  // awaiters of removed endpoints, resumed next round
  std::atomic<bool> stop_requested{false};
  int dispatching = 0;  // rounds in progress (nested through callbacks): removal only marks entries

  LoopSubscriber* find(Subscriber* s) {
    for (auto& e : subscribers) {
      if (e->subscriber == s && !e->removed) return e.get();
    }
    return nullptr;
  }

  LoopEndpoint* find_endpoint(const void* key) {
    for (auto& e : endpoints) {
      if (e->key == key && !e->removed) return e.get();
    }
    return nullptr;
  }

  // The entry coroutines await `endpoint` through, added on first use (paused while nobody awaits it);
  // nullptr if the source refuses it. A key found is of this type: keys are distinct objects.
  template <class Endpoint, class Item>
  LoopReceiver<Endpoint, Item>* find_or_add_receiver(Endpoint* endpoint) {
    if (LoopEndpoint* e = find_endpoint(endpoint)) return static_cast<LoopReceiver<Endpoint, Item>*>(e);
    if (!source.add(*endpoint).ok()) return nullptr;
    source.set_paused(*endpoint, true);
    auto entry = std::make_unique<LoopReceiver<Endpoint, Item>>();
    entry->key = endpoint;
    entry->endpoint = endpoint;
    LoopReceiver<Endpoint, Item>* raw = entry.get();
    endpoints.push_back(std::move(entry));
    return raw;
  }

  // A client's entry, added on first use. Needs no pausing: a client is ready only when a pending call has
  // its response, and every call the loop made has a coroutine waiting for it.
  Result<LoopClient*> find_or_add_client(Client* client) {
    if (LoopEndpoint* e = find_endpoint(client)) return static_cast<LoopClient*>(e);
    if (Status s = source.add(*client); !s.ok()) return s;
    auto entry = std::make_unique<LoopClient>();
    entry->key = client;
    entry->client = client;
    LoopClient* raw = entry.get();
    endpoints.push_back(std::move(entry));
    return raw;
  }

  template <class Endpoint, class Item>
  Status add_receiver(Endpoint& endpoint, std::function<void(Item)> callback) {
    if (!callback) return {Errc::kInvalidArgument, "an empty callback"};
    if (find_endpoint(&endpoint) != nullptr) {
      return {Errc::kInvalidArgument, "the endpoint is already in this loop"};
    }
    if (Status s = source.add(endpoint); !s.ok()) return s;
    auto entry = std::make_unique<LoopReceiver<Endpoint, Item>>();
    entry->key = &endpoint;
    entry->endpoint = &endpoint;
    entry->on_item = std::move(callback);
    endpoints.push_back(std::move(entry));
    return Status::Ok();
  }

  template <class Endpoint>
  void remove_endpoint(Endpoint& endpoint) {
    LoopEndpoint* e = find_endpoint(&endpoint);
    if (e == nullptr) return;
    source.remove(endpoint);
    e->removed = true;
    e->drop_waiters(*this);
    if (dispatching == 0) erase_removed();
  }

  // Has timer_fd fire at `deadline_ns` unless it fires earlier already.
  void watch_deadline(uint64_t deadline_ns) {
    if (timer_deadline_ns == 0 || deadline_ns < timer_deadline_ns) set_timer(deadline_ns);
  }
  // After the timer fired: sets it to the earliest deadline of the awaited calls (or disarms it).
  void reset_timer() {
    uint64_t earliest = 0;
    for (auto& e : endpoints) {
      auto* c = dynamic_cast<LoopClient*>(e.get());
      if (c == nullptr || c->removed) continue;
      for (CallOutcome* call : c->calls) {
        const auto ns = static_cast<uint64_t>(call->call_.deadline().time_since_epoch().count());
        if (earliest == 0 || ns < earliest) earliest = ns;
      }
    }
    set_timer(earliest);  // even if unchanged: the timer just fired, and a call it was for may remain
  }
  void set_timer(uint64_t deadline_ns) {
    // Absolute on CLOCK_MONOTONIC, which steady_clock reads. A deadline already past fires at once; zero
    // disarms.
    itimerspec t{};
    t.it_value.tv_sec = static_cast<time_t>(deadline_ns / 1'000'000'000);
    t.it_value.tv_nsec = static_cast<long>(deadline_ns % 1'000'000'000);
    (void)timerfd_settime(timer_fd, TFD_TIMER_ABSTIME, &t, nullptr);
    timer_deadline_ns = deadline_ns;
  }

  // The entry coroutines await `s` through, added on first use; nullptr if the source refuses it.
  LoopSubscriber* find_or_add_awaited(Subscriber* s) {
    if (LoopSubscriber* e = find(s)) return e;
    if (!source.add(*s).ok()) return nullptr;
    source.set_paused(*s, true);  // nobody awaits it yet: its messages must not keep the loop awake
    subscribers.push_back(std::make_unique<LoopSubscriber>());
    subscribers.back()->subscriber = s;
    return subscribers.back().get();
  }

  // Resumes a coroutine; a Task that finished is destroyed and its exception rethrown.
  void resume(std::coroutine_handle<> coroutine) {
    coroutine.resume();
    if (!coroutine.done()) return;
    auto it = tasks.find(coroutine.address());
    if (it == tasks.end()) return;  // not ours: its owner destroys it
    const auto task = it->second;
    tasks.erase(it);
    const std::exception_ptr failure = task.promise().exception;
    task.destroy();
    if (failure) std::rethrow_exception(failure);
  }

  void erase_removed() {
    std::erase_if(subscribers, [](auto& e) { return e->removed; });
    std::erase_if(endpoints, [](auto& e) { return e->removed; });
  }

  // One round over the subscribers and queue endpoints, then the source is re-armed (which keeps it readable
  // if any still has a message, e.g. one that used its whole batch). `timer_fired`: the deadline timer was
  // read; it is set again to the calls still awaited.
  std::size_t serve_round(bool timer_fired);
};

EventLoopState::~EventLoopState() {
  // Releases what the frames hold (samples, deliveries, requests, pending calls), while the endpoint entries
  // still exist.
  for (auto& [address, task] : tasks) task.destroy();
  if (epoll_fd >= 0) close(epoll_fd);
  if (wake_fd >= 0) close(wake_fd);
  if (timer_fd >= 0) close(timer_fd);
}

template <class Endpoint, class Item>
std::size_t LoopReceiver<Endpoint, Item>::serve(EventLoopState& loop) {
  std::size_t ran = 0;
  taken_this_round = 0;
  if (on_item) {
    while (!removed && taken_this_round < EventLoop::kBatch) {
      Result<Item> item = endpoint->try_receive();
      if (!item) {
        // kTimeout: nothing (left) ready, or a competing consumer took it first.
        if (item.status().code() == Errc::kClosed && !closed_reported) {
          closed_reported = true;
          on_item(Item{});
          ++ran;
        }
        break;
      }
      ++taken_this_round;
      on_item(std::move(item).value());
      ++ran;
    }
  } else if (waiting != nullptr) {
    Result<Item> item = endpoint->try_receive();
    if (!item && item.status().code() != Errc::kClosed) return ran;
    NextItem<Endpoint, Item>* awaiter = std::exchange(waiting, nullptr);
    if (item) {
      ++taken_this_round;
      awaiter->item_ = std::move(item).value();
    }
    loop.source.set_paused(*endpoint, true);
    loop.resume(awaiter->coroutine_);
    ++ran;
  }
  return ran;
}

template <class Endpoint, class Item>
void LoopReceiver<Endpoint, Item>::drop_waiters(EventLoopState& loop) {
  if (waiting != nullptr) loop.resume_empty.push_back(std::exchange(waiting, nullptr)->coroutine_);
}

std::size_t LoopClient::serve(EventLoopState& loop) {
  std::size_t ran = 0;
  // By index, one resumption at a time: a resumed coroutine may make new calls (appended, polled too) or
  // remove the client, and one that throws leaves the others in the list for the next round.
  for (std::size_t i = 0; i < calls.size() && !removed;) {
    CallOutcome* awaiter = calls[i];
    std::optional<Result<Response>> outcome = client->poll(awaiter->call_);
    if (!outcome) {
      ++i;
      continue;
    }
    awaiter->outcome_ = std::move(*outcome);
    calls.erase(calls.begin() + static_cast<std::ptrdiff_t>(i));
    loop.resume(awaiter->coroutine_);
    ++ran;
  }
  return ran;
}

void LoopClient::drop_waiters(EventLoopState& loop) {
  for (CallOutcome* awaiter : std::exchange(calls, {})) {
    awaiter->call_ = PendingCall();  // abandoned: a response that still comes is discarded
    awaiter->outcome_ = Status{Errc::kClosed, "the client was removed from the event loop"};
    loop.resume_empty.push_back(awaiter->coroutine_);
  }
}

std::size_t EventLoopState::serve_round(bool timer_fired) {
  struct Round {  // unwinds correctly when a callback or coroutine throws
    EventLoopState& loop;
    bool timer_fired;
    Round(EventLoopState& l, bool t) : loop(l), timer_fired(t) { ++loop.dispatching; }
    ~Round() {
      if (--loop.dispatching == 0) loop.erase_removed();
      if (timer_fired) loop.reset_timer();
    }
  } round(*this, timer_fired);
  std::size_t ran = 0;
  // By index, reading size() each time: callbacks may add subscribers (served this round too).
  for (std::size_t i = 0; i < subscribers.size(); ++i) {
    LoopSubscriber* e = subscribers[i].get();
    if (e->removed) continue;
    e->taken_this_round = 0;
    if (e->on_message) {
      while (!e->removed && e->taken_this_round < EventLoop::kBatch) {
        Sample s = e->subscriber->try_take();
        if (!s) {
          const bool closed = e->subscriber->closed();
          if (closed && !e->closed_reported) {
            e->closed_reported = true;
            e->on_message(Sample{});
            ++ran;
          }
          e->closed_reported = closed;  // re-opened after a daemon restart: a later close is news again
          break;
        }
        ++e->taken_this_round;
        e->on_message(std::move(s));
        ++ran;
      }
    } else if (e->waiting != nullptr) {
      Sample s = e->subscriber->try_take();
      if (!s && !e->subscriber->closed()) continue;
      if (s) ++e->taken_this_round;
      NextMessage* awaiter = std::exchange(e->waiting, nullptr);
      awaiter->sample_ = std::move(s);
      source.set_paused(*e->subscriber, true);
      resume(awaiter->coroutine_);
      ++ran;
    }
  }
  // Likewise by index: callbacks and coroutines may add endpoints.
  for (std::size_t i = 0; i < endpoints.size(); ++i) {
    LoopEndpoint* e = endpoints[i].get();
    if (!e->removed) ran += e->serve(*this);
  }
  source.rearm();
  return ran;
}

}  // namespace detail

bool NextMessage::await_ready() {
  entry_ = loop_->find_or_add_awaited(subscriber_);
  if (entry_ == nullptr) return true;  // cannot be watched: an empty Sample
  if (entry_->on_message) throw std::logic_error("co_await on a subscriber that has a callback");
  if (entry_->taken_this_round < EventLoop::kBatch) {
    sample_ = subscriber_->try_take();
    if (sample_) {
      ++entry_->taken_this_round;
      return true;
    }
    if (subscriber_->closed()) return true;
  }
  return false;
}

void NextMessage::await_suspend(std::coroutine_handle<> coroutine) {
  if (entry_->waiting != nullptr) throw std::logic_error("two coroutines await the same subscriber");
  coroutine_ = coroutine;
  entry_->waiting = this;
  loop_->source.set_paused(*subscriber_, false);  // readable at once if a message came meanwhile
}

template <class Endpoint, class Item>
bool NextItem<Endpoint, Item>::await_ready() {
  entry_ = loop_->find_or_add_receiver<Endpoint, Item>(endpoint_);
  if (entry_ == nullptr) return true;  // cannot be watched: an empty item
  if (entry_->on_item) throw std::logic_error("co_await on a queue endpoint that has a callback");
  if (entry_->taken_this_round < EventLoop::kBatch) {
    Result<Item> item = endpoint_->try_receive();
    if (item) {
      ++entry_->taken_this_round;
      item_ = std::move(item).value();
      return true;
    }
    if (item.status().code() == Errc::kClosed) return true;
  }
  return false;
}

template <class Endpoint, class Item>
void NextItem<Endpoint, Item>::await_suspend(std::coroutine_handle<> coroutine) {
  if (entry_->waiting != nullptr) throw std::logic_error("two coroutines await the same queue endpoint");
  coroutine_ = coroutine;
  entry_->waiting = this;
  loop_->source.set_paused(*endpoint_, false);  // readable at once if a message came meanwhile
}

template class NextItem<QueueConsumer, Delivery>;
template class NextItem<Server, Request>;

bool CallOutcome::await_ready() {
  auto entry = loop_->find_or_add_client(client_);
  if (!entry) {
    outcome_ = entry.status();
    return true;
  }
  entry_ = entry.value();
  auto call = client_->call_async(request_, timeout_);
  if (!call) {
    outcome_ = call.status();
    return true;
  }
  call_ = std::move(call).value();
  return false;
}

void CallOutcome::await_suspend(std::coroutine_handle<> coroutine) {
  coroutine_ = coroutine;
  entry_->calls.push_back(this);
  loop_->watch_deadline(static_cast<uint64_t>(call_.deadline().time_since_epoch().count()));
  // No re-check needed: the client's queue is watched, and a response that came already makes the source
  // readable (the thread wakes on its commit, or the round's rearm() collects it).
}

EventLoop::EventLoop(std::unique_ptr<detail::EventLoopState> state) : state_(std::move(state)) {}
EventLoop::EventLoop(EventLoop&&) noexcept = default;
EventLoop& EventLoop::operator=(EventLoop&&) noexcept = default;
EventLoop::~EventLoop() = default;

Result<EventLoop> EventLoop::create() {
  auto source = EventSource::create();
  if (!source) return source.status();
  auto state = std::make_unique<detail::EventLoopState>(std::move(source).value());
  state->epoll_fd = epoll_create1(EPOLL_CLOEXEC);
  state->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  state->timer_fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
  if (state->epoll_fd < 0 || state->wake_fd < 0 || state->timer_fd < 0) {
    return Status{Errc::kInternal, std::string("epoll/eventfd/timerfd: ") + std::strerror(errno)};
  }
  for (int fd : {state->source.fd(), state->wake_fd, state->timer_fd}) {
    epoll_event ev{};
    ev.events = EPOLLIN;  // level-triggered: both stay readable until we clear them
    ev.data.fd = fd;
    if (epoll_ctl(state->epoll_fd, EPOLL_CTL_ADD, fd, &ev) != 0) {
      return Status{Errc::kInternal, std::string("epoll_ctl: ") + std::strerror(errno)};
    }
  }
  return EventLoop(std::move(state));
}

Status EventLoop::add(Subscriber& subscriber, std::function<void(Sample)> on_message) {
  if (!on_message) return {Errc::kInvalidArgument, "an empty callback"};
  if (state_->find(&subscriber) != nullptr) {
    return {Errc::kInvalidArgument, "the subscriber of " + subscriber.topic() + " is already in this loop"};
  }
  if (Status s = state_->source.add(subscriber); !s.ok()) return s;
  auto entry = std::make_unique<detail::LoopSubscriber>();
  entry->subscriber = &subscriber;
  entry->on_message = std::move(on_message);
  state_->subscribers.push_back(std::move(entry));
  return Status::Ok();
}

void EventLoop::remove(Subscriber& subscriber) {
  detail::LoopSubscriber* e = state_->find(&subscriber);
  if (e == nullptr) return;
  state_->source.remove(subscriber);
  e->removed = true;
  if (e->waiting != nullptr) state_->resume_empty.push_back(std::exchange(e->waiting, nullptr)->coroutine_);
  if (state_->dispatching == 0) state_->erase_removed();
}

Status EventLoop::add(QueueConsumer& consumer, std::function<void(Delivery)> on_delivery) {
  return state_->add_receiver(consumer, std::move(on_delivery));
}

Status EventLoop::add(Server& server, std::function<void(Request)> on_request) {
  return state_->add_receiver(server, std::move(on_request));
}

void EventLoop::remove(QueueConsumer& consumer) {
  state_->remove_endpoint(consumer);
}

void EventLoop::remove(Server& server) {
  state_->remove_endpoint(server);
}

void EventLoop::remove(Client& client) {
  state_->remove_endpoint(client);
}

Status EventLoop::add_fd(int fd, std::function<void()> on_readable) {
  if (!on_readable) return {Errc::kInvalidArgument, "an empty callback"};
  if (state_->fd_callbacks.contains(fd)) {
    return {Errc::kInvalidArgument, "descriptor " + std::to_string(fd) + " is already in this loop"};
  }
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.fd = fd;
  if (epoll_ctl(state_->epoll_fd, EPOLL_CTL_ADD, fd, &ev) != 0) {
    return {Errc::kInternal, "epoll_ctl(" + std::to_string(fd) + "): " + std::strerror(errno)};
  }
  state_->fd_callbacks[fd] = std::make_shared<std::function<void()>>(std::move(on_readable));
  return Status::Ok();
}

void EventLoop::remove_fd(int fd) {
  if (state_->fd_callbacks.erase(fd) == 0) return;
  (void)epoll_ctl(state_->epoll_fd, EPOLL_CTL_DEL, fd, nullptr);  // fails harmlessly if already closed
}

NextMessage EventLoop::next(Subscriber& subscriber) {
  return NextMessage(state_.get(), &subscriber);
}

NextDelivery EventLoop::receive(QueueConsumer& consumer) {
  return NextDelivery(state_.get(), &consumer);
}

NextRequest EventLoop::receive(Server& server) {
  return NextRequest(state_.get(), &server);
}

CallOutcome EventLoop::call(Client& client, std::span<const std::byte> request,
                            std::chrono::nanoseconds timeout) {
  return CallOutcome(state_.get(), &client, request, timeout);
}

void EventLoop::spawn(Task task) {
  const auto coroutine = task.release();
  if (!coroutine) return;
  state_->tasks.emplace(coroutine.address(), coroutine);
  state_->resume(coroutine);
}

std::size_t EventLoop::run_once(std::chrono::milliseconds timeout) {
  detail::EventLoopState& s = *state_;
  int wait_ms = timeout.count() < 0 ? -1 : static_cast<int>(std::min<int64_t>(timeout.count(), INT_MAX));
  if (!s.resume_empty.empty()) wait_ms = 0;
  epoll_event events[16];
  const int n = epoll_wait(s.epoll_fd, events, 16, wait_ms);  // EINTR: n < 0, an empty round
  std::size_t ran = 0;
  bool serve = false;
  bool timer_fired = false;
  for (int i = 0; i < n; ++i) {
    const int fd = events[i].data.fd;
    if (fd == s.source.fd()) {
      serve = true;
    } else if (fd == s.timer_fd) {
      uint64_t expirations;
      [[maybe_unused]] const ssize_t r = read(s.timer_fd, &expirations, sizeof expirations);
      serve = timer_fired = true;  // a call's deadline: the round's poll() reports its timeout
    } else if (fd == s.wake_fd) {
      uint64_t count;
      [[maybe_unused]] const ssize_t r = read(s.wake_fd, &count, sizeof count);
    } else if (auto it = s.fd_callbacks.find(fd); it != s.fd_callbacks.end()) {
      const auto callback = it->second;  // a copy: the callback may remove itself
      (*callback)();
      ++ran;
    }
  }
  if (serve) ran += s.serve_round(timer_fired);
  for (std::coroutine_handle<> coroutine : std::exchange(s.resume_empty, {})) {
    s.resume(coroutine);
    ++ran;
  }
  return ran;
}

void EventLoop::run_for(std::chrono::nanoseconds duration) {
  const auto deadline = shm::deadline_after(duration);
  for (;;) {
    // acq_rel: takes the request stop() released; the next run starts afresh.
    if (state_->stop_requested.exchange(false, std::memory_order_acq_rel)) return;
    const auto left = deadline - std::chrono::steady_clock::now();
    if (left <= std::chrono::nanoseconds::zero()) return;
    run_once(std::chrono::ceil<std::chrono::milliseconds>(left));
  }
}

void EventLoop::run() {
  while (!state_->stop_requested.exchange(false, std::memory_order_acq_rel)) {
    run_once(std::chrono::milliseconds(-1));
  }
}

void EventLoop::stop() {
  // release: pairs with the exchange in run()/run_for(); the eventfd only interrupts epoll_wait.
  state_->stop_requested.store(true, std::memory_order_release);
  const uint64_t one = 1;
  [[maybe_unused]] const ssize_t r = write(state_->wake_fd, &one, sizeof one);
}

int EventLoop::fd() const {
  return state_->epoll_fd;
}

std::size_t EventLoop::tasks() const {
  return state_->tasks.size();
}

}  // namespace shmbus

#include "shmbus/event_loop.h"

#include <sys/epoll.h>
#include <sys/eventfd.h>
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

struct EventLoopState {
  explicit EventLoopState(EventSource s) : source(std::move(s)) {}
  ~EventLoopState();

  EventSource source;
  int epoll_fd = -1;
  int wake_fd = -1;  // an eventfd that stop() makes readable, to interrupt epoll_wait from another thread
  std::vector<std::unique_ptr<LoopSubscriber>> subscribers;  // unique_ptr: entries stay put while it grows
  std::map<int, std::shared_ptr<std::function<void()>>> fd_callbacks;  // shared: may be removed while called
  std::map<void*, std::coroutine_handle<Task::promise_type>> tasks;    // by address: awaiters see handle<>
  std::vector<NextMessage*> resume_empty;  // awaiters of removed subscribers, resumed next round
  std::atomic<bool> stop_requested{false};
  int dispatching = 0;  // rounds in progress (nested through callbacks): removal only marks entries

  LoopSubscriber* find(Subscriber* s) {
    for (auto& e : subscribers) {
      if (e->subscriber == s && !e->removed) return e.get();
    }
    return nullptr;
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
  }

  // One round over the subscribers, then the source is re-armed (which keeps it readable if any still has a
  // message, e.g. one that used its whole batch).
  std::size_t serve_subscribers();
};

EventLoopState::~EventLoopState() {
  for (auto& [address, task] : tasks) task.destroy();  // releases the samples the frames hold
  if (epoll_fd >= 0) close(epoll_fd);
  if (wake_fd >= 0) close(wake_fd);
}

std::size_t EventLoopState::serve_subscribers() {
  struct Round {  // unwinds correctly when a callback or coroutine throws
    EventLoopState& loop;
    explicit Round(EventLoopState& l) : loop(l) { ++loop.dispatching; }
    ~Round() {
      if (--loop.dispatching == 0) loop.erase_removed();
    }
  } round(*this);
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
  if (state->epoll_fd < 0 || state->wake_fd < 0) {
    return Status{Errc::kInternal, std::string("epoll/eventfd: ") + std::strerror(errno)};
  }
  for (int fd : {state->source.fd(), state->wake_fd}) {
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
  if (e->waiting != nullptr) state_->resume_empty.push_back(std::exchange(e->waiting, nullptr));
  if (state_->dispatching == 0) state_->erase_removed();
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
  for (int i = 0; i < n; ++i) {
    const int fd = events[i].data.fd;
    if (fd == s.source.fd()) {
      ran += s.serve_subscribers();
    } else if (fd == s.wake_fd) {
      uint64_t count;
      [[maybe_unused]] const ssize_t r = read(s.wake_fd, &count, sizeof count);
    } else if (auto it = s.fd_callbacks.find(fd); it != s.fd_callbacks.end()) {
      const auto callback = it->second;  // a copy: the callback may remove itself
      (*callback)();
      ++ran;
    }
  }
  for (NextMessage* awaiter : std::exchange(s.resume_empty, {})) {
    s.resume(awaiter->coroutine_);
    ++ran;
  }
  return ran;
}

void EventLoop::run_for(std::chrono::nanoseconds duration) {
  const auto deadline = std::chrono::steady_clock::now() + duration;
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

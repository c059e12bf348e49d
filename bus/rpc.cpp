#include "shmbus/rpc.h"

#include <cstring>
#include <map>
#include <random>
#include <thread>
#include <utility>

#include "bus/call_table.h"
#include "bus/log.h"
#include "bus/queue_attachment.h"
#include "shm/deadline.h"
#include "shmbus/bus.h"
#include "shmbus/topic_name.h"

namespace shmbus {
namespace {

// Requests wait this long in a server's hands at most; their callers' deadlines end them sooner.
constexpr auto kRequestVisibility = std::chrono::hours(1);

}  // namespace

// --- Response ---

Response& Response::operator=(Response&& other) noexcept {
  if (this != &other) {
    release();
    delivery_ = std::move(other.delivery_);
  }
  return *this;
}

Response::~Response() {
  release();
}

void Response::release() {
  // Acknowledged, not rejected as a dropped Delivery is: a response read is done with. (Requeued, it would
  // come back as a late response to the next poll.)
  if (delivery_) (void)delivery_.ack();
}

// --- Request ---

Request::Request(Request&& other) noexcept
    : server_(std::exchange(other.server_, nullptr)),
      delivery_(std::move(other.delivery_)),
      correlation_(other.correlation_),
      reply_queue_(other.reply_queue_),
      deadline_ns_(other.deadline_ns_),
      answered_(std::exchange(other.answered_, true)) {}

Request& Request::operator=(Request&& other) noexcept {
  if (this != &other) {
    if (server_ && !answered_)
      (void)fail(Errc::kInternal, "the server dropped the request without a response");
    server_ = std::exchange(other.server_, nullptr);
    delivery_ = std::move(other.delivery_);
    correlation_ = other.correlation_;
    reply_queue_ = other.reply_queue_;
    deadline_ns_ = other.deadline_ns_;
    answered_ = std::exchange(other.answered_, true);
  }
  return *this;
}

Request::~Request() {
  if (server_ && !answered_) (void)fail(Errc::kInternal, "the server dropped the request without a response");
}

std::chrono::steady_clock::time_point Request::deadline() const {
  return std::chrono::steady_clock::time_point(std::chrono::nanoseconds(deadline_ns_));
}

Result<QueueLoan> Request::loan_response() {
  if (!server_ || answered_) return Status{Errc::kInvalidArgument, "this request was already answered"};
  auto q = server_->response_queue(reply_queue_, deadline_ns_);
  if (!q) return q.status();
  auto claimed = q.value()->reserve(server_->options_.full_timeout);
  if (!claimed) return claimed.status();
  return QueueLoan(q.value(), claimed->index, claimed->payload, claimed->capacity);
}

Status Request::finish(QueueLoan* loan, uint32_t size, Errc code) {
  const shm::ClaimedEntry claimed{loan->index_, loan->data_, static_cast<uint32_t>(loan->capacity_)};
  detail::QueueAttachment* q = loan->settle();
  answered_ = true;
  Status s = q->commit(claimed, {.size = size,
                                 .correlation = correlation_,
                                 .flags = code == Errc::kOk ? 0u : shm::kEntryErrorResponse,
                                 .status_code = static_cast<int32_t>(code)});
  // The request is done either way: acknowledging it keeps it from being handled twice.
  (void)delivery_.ack();
  return s;
}

Status Request::respond(QueueLoan&& loan) {
  if (!server_ || answered_) return {Errc::kInvalidArgument, "this request was already answered"};
  if (!loan.data_ || loan.size_ > loan.capacity_) return {Errc::kInvalidArgument, "empty or oversized loan"};
  return finish(&loan, static_cast<uint32_t>(loan.size_), Errc::kOk);
}

Status Request::respond(std::span<const std::byte> bytes) {
  auto loan = loan_response();
  if (!loan) {
    answered_ = true;
    (void)delivery_.ack();
    return loan.status();
  }
  if (bytes.size() > loan->capacity_) {
    (void)fail(Errc::kMessageTooLarge, "the response exceeds the client's max_response_size");
    return {Errc::kMessageTooLarge, std::to_string(bytes.size()) +
                                        " bytes exceed the client's max_response_size " +
                                        std::to_string(loan->capacity_)};
  }
  std::memcpy(loan->data_, bytes.data(), bytes.size());
  return finish(&loan.value(), static_cast<uint32_t>(bytes.size()), Errc::kOk);
}

Status Request::fail(Errc code, std::string_view message) {
  if (!server_ || answered_) return {Errc::kInvalidArgument, "this request was already answered"};
  auto loan = loan_response();
  if (!loan) {
    answered_ = true;
    (void)delivery_.ack();
    return loan.status();
  }
  const auto size = static_cast<uint32_t>(std::min(message.size(), loan->capacity_));
  std::memcpy(loan->data_, message.data(), size);
  return finish(&loan.value(), size, code == Errc::kOk ? Errc::kInternal : code);
}

// --- Server ---

Server::Server() = default;
Server::Server(std::shared_ptr<detail::Connection> connection,
               std::unique_ptr<detail::QueueAttachment> requests, ServerOptions options)
    : connection_(std::move(connection)), requests_(std::move(requests)), options_(options) {}
Server::Server(Server&&) noexcept = default;
Server& Server::operator=(Server&&) noexcept = default;
Server::~Server() = default;

Result<Request> Server::try_receive() {
  return receive(std::chrono::nanoseconds::zero());
}

Result<detail::QueueAttachment*> Server::response_queue(uint32_t id, uint64_t deadline_ns) {
  auto it = responses_.find(id);
  if (it != responses_.end()) {
    // A closed response queue is gone (its client left, or a restarted daemon dropped it): its id may be
    // handed to a new client's queue, which only a fresh open reaches.
    if (!it->second->queue->closed()) return it->second.get();
    if (it->second->loans_out != 0)
      return Status{Errc::kClosed, "the response queue of that client was closed by the daemon"};
    responses_.erase(it);
  }
  // kTimeout: after a daemon crash, its client has not re-claimed the queue yet; it does within 100 ms
  // while it waits for this response. Retried for a second at most, and not past the call's deadline.
  const uint64_t until =
      std::min<uint64_t>(deadline_ns == 0 ? UINT64_MAX : deadline_ns, shm::steady_now_ns() + 1'000'000'000);
  auto q = detail::QueueAttachment::open(connection_, "", {}, detail::kReplyWriter, id);
  while (!q && q.status().code() == Errc::kTimeout && shm::steady_now_ns() < until) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
    q = detail::QueueAttachment::open(connection_, "", {}, detail::kReplyWriter, id);
  }
  if (!q) return q.status();
  // Clients come and go: keep the cache bounded, but never unmap a queue a response loan still points into.
  // (loans_out's implicit seq_cst load: a count kept by this server's own thread, ordering nothing else.)
  if (responses_.size() > 256)
    std::erase_if(responses_, [](const auto& r) { return r.second->loans_out == 0; });
  return (responses_[id] = std::move(q).value()).get();
}

Result<Request> Server::receive(std::chrono::nanoseconds timeout) {
  const auto deadline = shm::deadline_after(timeout);
  for (;;) {
    const auto left = std::max<std::chrono::nanoseconds>(deadline - std::chrono::steady_clock::now(),
                                                         std::chrono::nanoseconds::zero());
    auto d = requests_->pop(kRequestVisibility, left);
    if (!d) return d.status();
    if (d->call_deadline != 0 && shm::steady_now_ns() > d->call_deadline) {
      ++expired_;  // its caller gave up: answering would only fill its response queue
      (void)requests_->ack(d->index, d->tag);
      continue;
    }
    Request r;
    r.server_ = this;
    r.delivery_.owner_ = requests_.get();
    r.delivery_.data_ = d->payload;
    r.delivery_.size_ = d->size;
    r.delivery_.index_ = d->index;
    r.delivery_.tag_ = d->tag;
    r.delivery_.deliveries_ = d->deliveries;
    r.delivery_.sequence_ = d->seq;
    r.delivery_.enqueue_ns_ = d->enqueue_ns;
    r.correlation_ = d->correlation;
    r.reply_queue_ = d->reply_queue;
    r.deadline_ns_ = d->call_deadline;
    return r;
  }
}

// --- CallTable ---

namespace detail {

bool CallTable::collect() {
  for (;;) {
    // Zero timeout: kTimeout when empty, kClosed when closed and empty (poll reports that).
    auto d = responses->pop(kRequestVisibility, std::chrono::nanoseconds::zero());
    if (!d) break;
    auto it = calls.find(d->correlation);
    if (it == calls.end() || it->second.response) {
      ++late;  // the answer to a call that timed out or was abandoned (or a duplicate)
      (void)responses->ack(d->index, d->tag);
      continue;
    }
    it->second.response = *d;
    ++answered;
  }
  return answered > 0;
}

void CallTable::abandon(uint64_t correlation) {
  auto it = calls.find(correlation);
  if (it == calls.end()) return;
  if (it->second.response) {
    (void)responses->ack(it->second.response->index, it->second.response->tag);
    --answered;
  }
  calls.erase(it);
}

}  // namespace detail

// --- PendingCall ---

PendingCall::PendingCall(PendingCall&& other) noexcept
    : table_(std::exchange(other.table_, nullptr)),
      correlation_(other.correlation_),
      deadline_ns_(other.deadline_ns_) {}

PendingCall& PendingCall::operator=(PendingCall&& other) noexcept {
  if (this != &other) {
    abandon();
    table_ = std::exchange(other.table_, nullptr);
    correlation_ = other.correlation_;
    deadline_ns_ = other.deadline_ns_;
  }
  return *this;
}

PendingCall::~PendingCall() {
  abandon();
}

void PendingCall::abandon() {
  if (table_ != nullptr) std::exchange(table_, nullptr)->abandon(correlation_);
}

std::chrono::steady_clock::time_point PendingCall::deadline() const {
  return std::chrono::steady_clock::time_point(std::chrono::nanoseconds(deadline_ns_));
}

// --- Client ---

Client::Client() = default;
Client::Client(std::unique_ptr<detail::QueueAttachment> requests,
               std::unique_ptr<detail::QueueAttachment> responses, ClientOptions options)
    : requests_(std::move(requests)),
      responses_(std::move(responses)),
      calls_(std::make_unique<detail::CallTable>()),
      options_(options) {
  calls_->responses = responses_.get();
  // Correlations start at random: a response queue id can be handed to a new client after a daemon restart
  // while old servers still hold requests naming it. Their responses then reach the new client, which finds
  // no call of that correlation (counted late) instead of completing the wrong call.
  std::random_device random;
  next_correlation_ = (uint64_t{random()} << 32 | random()) >> 1 | 1;
}
Client::Client(Client&&) noexcept = default;
Client& Client::operator=(Client&&) noexcept = default;
Client::~Client() = default;

uint64_t Client::late_responses() const {
  return calls_ ? calls_->late : 0;
}

Result<QueueLoan> Client::loan() {
  return loan_within(options_.full_timeout);
}

Result<QueueLoan> Client::loan_within(std::chrono::nanoseconds timeout) {
  auto claimed = requests_->reserve(timeout);
  if (!claimed) return claimed.status();
  return QueueLoan(requests_.get(), claimed->index, claimed->payload, claimed->capacity);
}

Result<PendingCall> Client::call_async(QueueLoan&& request, std::chrono::nanoseconds timeout) {
  if (request.owner_ != requests_.get() || !request.data_) {
    return Status{Errc::kInvalidArgument, "the loan is empty or belongs to another client"};
  }
  if (request.size_ > request.capacity_)
    return Status{Errc::kMessageTooLarge, "loan size exceeds its buffer"};
  const auto deadline = shm::deadline_after(timeout);
  const uint64_t correlation = next_correlation_++;
  const shm::ClaimedEntry claimed{request.index_, request.data_, static_cast<uint32_t>(request.capacity_)};
  const auto size = static_cast<uint32_t>(request.size_);
  (void)request.settle();
  const auto deadline_ns = static_cast<uint64_t>(
      std::chrono::duration_cast<std::chrono::nanoseconds>(deadline.time_since_epoch()).count());
  Status s = requests_->commit(claimed, {.size = size,
                                         .correlation = correlation,
                                         .reply_queue = responses_->id,
                                         .call_deadline = deadline_ns});
  if (!s.ok()) return s;
  calls_->calls[correlation] = {deadline_ns, std::nullopt};
  PendingCall call;
  call.table_ = calls_.get();
  call.correlation_ = correlation;
  call.deadline_ns_ = deadline_ns;
  return call;
}

Result<PendingCall> Client::call_async(std::span<const std::byte> request, std::chrono::nanoseconds timeout) {
  if (request.size() > requests_->queue->max_message_size()) {
    return Status{Errc::kMessageTooLarge, std::to_string(request.size()) + " bytes exceed service " +
                                              requests_->name + "'s max_message_size " +
                                              std::to_string(requests_->queue->max_message_size())};
  }
  // The wait for room counts against the call's deadline: at most the smaller of the two, and the call gets
  // what is left.
  const auto start = std::chrono::steady_clock::now();
  auto l = loan_within(std::min<std::chrono::nanoseconds>(options_.full_timeout, timeout));
  if (!l) return l.status();
  std::memcpy(l->data(), request.data(), request.size());
  l->set_size(request.size());
  return call_async(std::move(l).value(), timeout - (std::chrono::steady_clock::now() - start));
}

Result<Response> Client::call(QueueLoan&& request, std::chrono::nanoseconds timeout) {
  auto call = call_async(std::move(request), timeout);
  if (!call) return call.status();
  return wait(call.value());
}

Result<Response> Client::call(std::span<const std::byte> request, std::chrono::nanoseconds timeout) {
  auto call = call_async(request, timeout);
  if (!call) return call.status();
  return wait(call.value());
}

std::optional<Result<Response>> Client::poll(PendingCall& call) {
  if (call.table_ == nullptr || call.table_ != calls_.get()) {
    return Result<Response>(Status{Errc::kInvalidArgument, "an empty call, or a call of another client"});
  }
  detail::CallTable& table = *calls_;
  table.collect();
  auto it = table.calls.find(call.correlation_);
  std::optional<shm::DeliveredEntry> d;
  if (it != table.calls.end() && it->second.response) {
    d = it->second.response;
    --table.answered;
  } else if (it != table.calls.end() && shm::steady_now_ns() < call.deadline_ns_ &&
             !responses_->queue->closed()) {
    return std::nullopt;  // still pending
  }
  if (it != table.calls.end()) table.calls.erase(it);
  call.table_ = nullptr;
  if (!d) {
    if (responses_->queue->closed()) {
      return Result<Response>(
          Status{Errc::kClosed, "queue " + responses_->name + " was closed by the daemon"});
    }
    return Result<Response>(
        Status{Errc::kTimeout, "no response from service " + requests_->name + " before the deadline"});
  }
  if (d->flags & shm::kEntryErrorResponse) {
    std::string message(reinterpret_cast<const char*>(d->payload), d->size);
    const int code = d->status_code;
    (void)responses_->ack(d->index, d->tag);
    const bool known = code > 0 && code <= static_cast<int>(Errc::kClosed);
    return Result<Response>(Status{known ? static_cast<Errc>(code) : Errc::kInternal,
                                   "service " + requests_->name + ": " + message});
  }
  Response r;
  r.delivery_.owner_ = responses_.get();
  r.delivery_.data_ = d->payload;
  r.delivery_.size_ = d->size;
  r.delivery_.index_ = d->index;
  r.delivery_.tag_ = d->tag;
  return Result<Response>(std::move(r));
}

Result<Response> Client::wait(PendingCall& call) {
  const auto spin_end = std::chrono::steady_clock::now() + options_.spin;
  for (;;) {
    if (auto outcome = poll(call)) return std::move(*outcome);
    const auto now = std::chrono::steady_clock::now();
    if (now < spin_end) {
      __builtin_ia32_pause();  // poll() peeks without the mutex while nothing is ready: cheap to repeat
      continue;
    }
    const auto left = call.deadline() - now;
    // Woken by the response's commit; the cap only bounds one sleep (poll re-checks the deadline).
    responses_->queue->wait_ready(std::min<std::chrono::nanoseconds>(left, std::chrono::milliseconds(100)));
  }
}

// --- Bus ---

Result<Server> Bus::server(std::string_view service, ServerOptions options) {
  if (Status s = validate_topic_name(service); !s.ok()) return s;
  auto q = detail::QueueAttachment::open(connection_, service, options.queue, detail::kServiceServer);
  if (!q) return q.status();
  return Server(connection_, std::move(q).value(), options);
}

Result<Client> Bus::client(std::string_view service, ClientOptions options) {
  if (Status s = validate_topic_name(service); !s.ok()) return s;
  auto requests = detail::QueueAttachment::open(connection_, service, options.queue, detail::kServiceClient);
  if (!requests) return requests.status();
  QueueSettings reply{.capacity = options.response_capacity, .max_message_size = options.max_response_size};
  auto responses = detail::QueueAttachment::open(connection_, "", reply, detail::kReplyOwner);
  if (!responses) return responses.status();
  return Client(std::move(requests).value(), std::move(responses).value(), options);
}

}  // namespace shmbus

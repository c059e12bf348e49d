// Request/response over shared memory. A Server takes requests from its service's request queue (several
// servers share the load: each request goes to one); a Client sends requests there and receives the responses
// in a private response queue of its own, matched by a correlation id. Both directions can be zero-copy
// (loan, write in place, send). Each call has a deadline; a server that dies while handling a call makes the
// call fail at once with kServerDied (the daemon notices the death and answers for it), never a hang.
//
//   auto server = bus.server("math/add").value();          // in one process
//   if (auto r = server.receive(1s)) r->respond(sum_of(r->bytes()));
//   auto client = bus.client("math/add").value();          // in another
//   auto response = client.call(std::as_bytes(std::span(args)), 100ms);
//
// Without blocking (from an event loop): `call_async` sends, `poll` collects the outcome; a Server's
// `try_receive` takes a request if one waits. EventSource (shmbus/event_source.h) makes a pollable fd of
// both, EventLoop (shmbus/event_loop.h) runs callbacks and `co_await loop.call(...)` on them.
#pragma once

#include <chrono>
#include <map>
#include <memory>
#include <optional>
#include <span>

#include "shmbus/work_queue.h"

namespace shmbus {

namespace detail {
class Connection;
struct CallTable;
}  // namespace detail

class Server;
class Client;

// A response, read in place in the client's response queue; released (acknowledged) when dropped.
class Response {
 public:
  Response() = default;
  Response(Response&&) noexcept = default;
  Response& operator=(Response&& other) noexcept;
  ~Response();

  std::span<const std::byte> bytes() const { return delivery_.bytes(); }

 private:
  friend class Client;
  void release();
  Delivery delivery_;
};

// A request being handled. Respond once (respond() or loan_response() + respond()); a request dropped
// without a response is answered with an error (kInternal) so its caller does not wait for its deadline.
class Request {
 public:
  Request() = default;
  Request(Request&&) noexcept;
  Request& operator=(Request&&) noexcept;
  ~Request();

  // False for an empty request: default-constructed, moved from, or what EventLoop hands a callback or a
  // coroutine once the service's queue closed.
  explicit operator bool() const { return server_ != nullptr; }
  std::span<const std::byte> bytes() const { return delivery_.bytes(); }
  // When the caller stops waiting.
  std::chrono::steady_clock::time_point deadline() const;

  // Lends an entry of the caller's response queue to write the response in place.
  Result<QueueLoan> loan_response();
  Status respond(QueueLoan&& loan);
  Status respond(std::span<const std::byte> bytes);
  // Answers with an error: the caller's call() returns {code, message}.
  Status fail(Errc code, std::string_view message);

 private:
  friend class Server;
  Status finish(QueueLoan* loan, uint32_t size, Errc code);
  Server* server_ = nullptr;
  Delivery delivery_;
  uint64_t correlation_ = 0;
  uint32_t reply_queue_ = 0;
  uint64_t deadline_ns_ = 0;
  bool answered_ = false;
};

class Server {
 public:
  Server();
  Server(Server&&) noexcept;
  Server& operator=(Server&&) noexcept;
  ~Server();

  // The next request whose caller still waits (requests past their deadline are dropped and counted),
  // waiting up to `timeout`: kTimeout when none came, kClosed when the daemon shut down.
  Result<Request> receive(std::chrono::nanoseconds timeout);
  // receive() without waiting: kTimeout when no request waits.
  Result<Request> try_receive();
  uint64_t expired() const { return expired_; }  // requests dropped because their caller had given up

 private:
  friend class Bus;
  friend class Request;
  friend class EventSource;
  Server(std::shared_ptr<detail::Connection> connection, std::unique_ptr<detail::QueueAttachment> requests,
         ServerOptions options);
  // The response queue `id`, opened on first use; a call's deadline (steady ns, 0: none) bounds the wait
  // for one its client has not re-claimed yet after a daemon crash.
  Result<detail::QueueAttachment*> response_queue(uint32_t id, uint64_t deadline_ns);
  std::shared_ptr<detail::Connection> connection_;
  std::unique_ptr<detail::QueueAttachment> requests_;
  std::map<uint32_t, std::unique_ptr<detail::QueueAttachment>> responses_;  // by queue id, opened on demand
  ServerOptions options_;
  uint64_t expired_ = 0;
};

// A call sent with Client::call_async whose outcome was not collected yet (Client::poll or Client::wait).
// Dropping it abandons the call: its response, if one still comes, is discarded. REQUIRES: it goes before the
// Client that made it (the Client may move meanwhile).
class PendingCall {
 public:
  PendingCall() = default;
  PendingCall(PendingCall&& other) noexcept;
  PendingCall& operator=(PendingCall&& other) noexcept;
  ~PendingCall();

  // True until its outcome was collected.
  explicit operator bool() const { return table_ != nullptr; }
  // When the call times out (the deadline the server saw too).
  std::chrono::steady_clock::time_point deadline() const;

 private:
  friend class Client;
  void abandon();
  detail::CallTable* table_ = nullptr;
  uint64_t correlation_ = 0;
  uint64_t deadline_ns_ = 0;
};

class Client {
 public:
  Client();
  Client(Client&&) noexcept;
  Client& operator=(Client&&) noexcept;
  ~Client();

  // Lends an entry of the service's request queue to write the request in place.
  Result<QueueLoan> loan();
  // Sends the request and waits for its response until `timeout`: kTimeout, kServerDied, the error a server
  // answered with (Request::fail), kMessageTooLarge, or the response.
  Result<Response> call(QueueLoan&& request, std::chrono::nanoseconds timeout);
  Result<Response> call(std::span<const std::byte> request, std::chrono::nanoseconds timeout);

  // Sends the request and returns without waiting for the response; several calls may be pending. Fails as
  // call() does before the response (kMessageTooLarge, kInvalidArgument, kTimeout when the request queue
  // stays full: it waits up to ClientOptions::full_timeout for room, which an event loop may set to 0).
  Result<PendingCall> call_async(QueueLoan&& request, std::chrono::nanoseconds timeout);
  Result<PendingCall> call_async(std::span<const std::byte> request, std::chrono::nanoseconds timeout);
  // Never blocks. The outcome of `call` once it is known, as call() returns it (the response, the server's
  // error, kServerDied, kTimeout once its deadline passed, kClosed), leaving `call` empty; nullopt while it
  // is pending. Collects every response that arrived: those of other pending calls are kept for them, those
  // of abandoned or timed-out calls are discarded (late_responses). kInvalidArgument for an empty call or one
  // of another client.
  std::optional<Result<Response>> poll(PendingCall& call);
  // Blocks until poll(call) has the outcome (at the latest at the call's deadline) and returns it.
  Result<Response> wait(PendingCall& call);

  uint64_t late_responses() const;  // responses to calls that had timed out or were abandoned

 private:
  friend class Bus;
  friend class EventSource;
  Client(std::unique_ptr<detail::QueueAttachment> requests,
         std::unique_ptr<detail::QueueAttachment> responses, ClientOptions options);
  // loan(), waiting at most `timeout` for room.
  Result<QueueLoan> loan_within(std::chrono::nanoseconds timeout);
  std::unique_ptr<detail::QueueAttachment> requests_;
  std::unique_ptr<detail::QueueAttachment> responses_;
  std::unique_ptr<detail::CallTable> calls_;  // on the heap: PendingCalls point to it while the Client moves
  ClientOptions options_;
  uint64_t next_correlation_ = 1;
};

}  // namespace shmbus

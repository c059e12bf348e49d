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
#pragma once

#include <chrono>
#include <map>
#include <memory>
#include <span>

#include "shmbus/work_queue.h"

namespace shmbus {

namespace detail {
class Connection;
}

class Server;
class Client;

// A response, read in place in the client's response queue; released when dropped.
class Response {
 public:
  std::span<const std::byte> bytes() const { return delivery_.bytes(); }

 private:
  friend class Client;
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
  uint64_t expired() const { return expired_; }  // requests dropped because their caller had given up

 private:
  friend class Bus;
  friend class Request;
  Server(std::shared_ptr<detail::Connection> connection, std::unique_ptr<detail::QueueAttachment> requests,
         ServerOptions options);
  Result<detail::QueueAttachment*> response_queue(uint32_t id);
  std::shared_ptr<detail::Connection> connection_;
  std::unique_ptr<detail::QueueAttachment> requests_;
  std::map<uint32_t, std::unique_ptr<detail::QueueAttachment>> responses_;  // by queue id, opened on demand
  ServerOptions options_;
  uint64_t expired_ = 0;
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
  uint64_t late_responses() const { return late_; }  // responses to calls that had already timed out

 private:
  friend class Bus;
  Client(std::unique_ptr<detail::QueueAttachment> requests,
         std::unique_ptr<detail::QueueAttachment> responses, ClientOptions options);
  Result<Response> await(uint64_t correlation, std::chrono::steady_clock::time_point deadline);
  std::unique_ptr<detail::QueueAttachment> requests_;
  std::unique_ptr<detail::QueueAttachment> responses_;
  ClientOptions options_;
  uint64_t next_correlation_ = 1;
  uint64_t late_ = 0;
};

}  // namespace shmbus

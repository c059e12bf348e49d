// A fake bridge peer for the robustness tests: a raw ZeroMQ XPUB in the test process, bound on loopback, that
// a real bridge dials as a [[peer]] and that sends it whatever frames a test makes. Its socket and context go
// with it, also when a test stops at a failed assertion.
#pragma once

#include <zmq.h>

#include <string>

namespace shmbus::test {

class FakePeer {
 public:
  FakePeer() : context_(zmq_ctx_new()), socket_(zmq_socket(context_, ZMQ_XPUB)) {
    const int linger = 0, timeout = 20000;  // a receive waits 20 s at most: a liveness bound
    zmq_setsockopt(socket_, ZMQ_LINGER, &linger, sizeof linger);
    zmq_setsockopt(socket_, ZMQ_RCVTIMEO, &timeout, sizeof timeout);
    if (zmq_bind(socket_, "tcp://127.0.0.1:*") == 0) {
      char endpoint[256] = {};
      std::size_t size = sizeof endpoint;
      if (zmq_getsockopt(socket_, ZMQ_LAST_ENDPOINT, endpoint, &size) == 0) endpoint_ = endpoint;
    }
  }
  ~FakePeer() {
    zmq_close(socket_);
    zmq_ctx_term(context_);
  }
  FakePeer(const FakePeer&) = delete;
  FakePeer& operator=(const FakePeer&) = delete;

  // Empty if the socket could not be bound.
  const std::string& endpoint() const { return endpoint_; }
  void* socket() const { return socket_; }

 private:
  void* context_;
  void* socket_;
  std::string endpoint_;
};

}  // namespace shmbus::test

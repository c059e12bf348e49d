// A ZeroMQ message frame owned by a C++ object: closed on destruction, moved with zmq_msg_move.
#pragma once

#include <zmq.h>

#include <cstddef>
#include <span>

namespace shmbus::bridge {

class ZmqMessage {
 public:
  ZmqMessage() { zmq_msg_init(&msg_); }
  explicit ZmqMessage(std::size_t size) { zmq_msg_init_size(&msg_, size); }
  ZmqMessage(ZmqMessage&& other) noexcept {
    zmq_msg_init(&msg_);
    zmq_msg_move(&msg_, &other.msg_);
  }
  ZmqMessage& operator=(ZmqMessage&& other) noexcept {
    zmq_msg_move(&msg_, &other.msg_);  // closes what msg_ held
    return *this;
  }
  ZmqMessage(const ZmqMessage&) = delete;
  ZmqMessage& operator=(const ZmqMessage&) = delete;
  ~ZmqMessage() { zmq_msg_close(&msg_); }

  zmq_msg_t* get() { return &msg_; }
  std::span<std::byte> bytes() { return {static_cast<std::byte*>(zmq_msg_data(&msg_)), zmq_msg_size(&msg_)}; }
  bool more() { return zmq_msg_more(&msg_) != 0; }

 private:
  zmq_msg_t msg_;
};

}  // namespace shmbus::bridge

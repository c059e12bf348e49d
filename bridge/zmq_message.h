// A ZeroMQ message frame owned by a C++ object: closed on destruction, moved with zmq_msg_move.
#pragma once

#include <zmq.h>

#include <cstddef>
#include <span>

namespace shmbus::bridge {

class ZmqMessage {
 public:
  ZmqMessage() { zmq_msg_init(&msg_); }
  // A frame of `size` bytes; if libzmq cannot allocate them, an empty frame and ok() false.
  explicit ZmqMessage(std::size_t size) {
    if (zmq_msg_init_size(&msg_, size) != 0) {
      zmq_msg_init(&msg_);  // ENOMEM leaves msg_ undefined: make it a valid empty frame
      ok_ = false;
    }
  }
  ZmqMessage(ZmqMessage&& other) noexcept : ok_(other.ok_) {
    zmq_msg_init(&msg_);
    zmq_msg_move(&msg_, &other.msg_);
  }
  ZmqMessage& operator=(ZmqMessage&& other) noexcept {
    zmq_msg_move(&msg_, &other.msg_);  // closes what msg_ held
    ok_ = other.ok_;
    return *this;
  }
  ZmqMessage(const ZmqMessage&) = delete;
  ZmqMessage& operator=(const ZmqMessage&) = delete;
  ~ZmqMessage() { zmq_msg_close(&msg_); }

  zmq_msg_t* get() { return &msg_; }
  std::span<std::byte> bytes() { return {static_cast<std::byte*>(zmq_msg_data(&msg_)), zmq_msg_size(&msg_)}; }
  bool more() { return zmq_msg_more(&msg_) != 0; }
  bool ok() const { return ok_; }  // false: the sized constructor could not allocate

 private:
  zmq_msg_t msg_;
  bool ok_ = true;
};

}  // namespace shmbus::bridge

// bench-zmq: ZeroMQ over ipc:// (a Unix socket underneath, plus ZeroMQ's I/O thread and
// queues). PAIR sockets for round trips, PUSH/PULL for streams. A binds, B connects.

#include <unistd.h>

#include <algorithm>
#include <stdexcept>
#include <string>
#include <zmq.hpp>

#include "harness/cleanup_registry.h"
#include "harness/message_buffer.h"
#include "harness/two_process_bench.h"

namespace {

// Queued messages allowed per socket direction, so a stream of 4 MiB messages holds at most
// ~64 MiB in ZeroMQ's queues instead of 1000 (the default high-water mark) times 4 MiB.
int high_water_mark_for(size_t message_bytes) {
  return static_cast<int>(std::clamp<size_t>((64u << 20) / message_bytes, 4, 1000));
}

class ZmqTransport {
 public:
  ZmqTransport(const std::string& endpoint, bench::Side side, bench::Mode mode, size_t message_bytes)
      : context_(1), out_(message_bytes), in_(message_bytes) {
    const bool streaming = mode == bench::Mode::stream;
    const zmq::socket_type type = !streaming               ? zmq::socket_type::pair
                                  : side == bench::Side::a ? zmq::socket_type::push
                                                           : zmq::socket_type::pull;
    socket_ = zmq::socket_t(context_, type);
    // The harness closes only after the other side has every message (its rendezvous), so
    // nothing is left to linger for, and a failed run must not hang in close.
    socket_.set(zmq::sockopt::linger, 0);
    socket_.set(zmq::sockopt::sndhwm, high_water_mark_for(message_bytes));
    socket_.set(zmq::sockopt::rcvhwm, high_water_mark_for(message_bytes));
    if (side == bench::Side::a) {
      socket_.bind(endpoint);
    } else {
      socket_.connect(endpoint);
    }
  }

  // Blocks while nobody is connected or the peer's queue is full (PAIR and PUSH both do).
  void send(uint64_t seq) {
    out_.put_sequence(seq);
    if (!socket_.send(zmq::buffer(out_.data(), out_.size()), zmq::send_flags::none))
      throw std::runtime_error("zmq send would block");
  }

  uint64_t receive() {
    const zmq::recv_buffer_result_t got =
        socket_.recv(zmq::buffer(in_.data(), in_.size()), zmq::recv_flags::none);
    if (!got) throw std::runtime_error("zmq recv would block");
    if (got->untruncated_size != in_.size())
      throw std::runtime_error("zmq message of " + std::to_string(got->untruncated_size) +
                               " bytes, expected " + std::to_string(in_.size()));
    return in_.sequence();
  }

 private:
  zmq::context_t context_;  // declared first: destroyed after the socket
  zmq::socket_t socket_;
  bench::MessageBuffer out_;
  bench::MessageBuffer in_;
};

class ZmqPeer {
 public:
  static constexpr const char* kName = "zmq";
  static constexpr bool kSupportsStream = true;

  // The path carries A's pid, so concurrent runs never collide; the harness unlinks it.
  explicit ZmqPeer(const bench::BenchOptions& options)
      : path_("/tmp/shmbus-bench-zmq-" + std::to_string(getpid()) + ".ipc"), options_(options) {
    unlink(path_.c_str());
    bench::register_cleanup_path(path_);
  }
  ~ZmqPeer() { unlink(path_.c_str()); }

  ZmqTransport open(bench::Side side) {
    return ZmqTransport("ipc://" + path_, side, options_.mode, options_.size);
  }

 private:
  std::string path_;
  bench::BenchOptions options_;
};

}  // namespace

int main(int argc, char** argv) {
  return bench::run_two_process_bench<ZmqPeer>(argc, argv);
}

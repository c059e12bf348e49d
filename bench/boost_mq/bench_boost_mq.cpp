// bench-boost-mq: Boost.Interprocess message_queue, a bounded queue of fixed-size messages in
// a POSIX shared memory object, guarded by a process-shared mutex and condition variables.
// One queue per direction.

#include <unistd.h>

#include <algorithm>
#include <boost/interprocess/ipc/message_queue.hpp>
#include <memory>
#include <stdexcept>
#include <string>

#include "harness/cleanup_registry.h"
#include "harness/message_buffer.h"
#include "harness/two_process_bench.h"

namespace {

namespace ipc = boost::interprocess;

// Up to 64 MiB of message slots per queue, between 4 and 1024 of them.
size_t queue_depth_for(size_t message_bytes) {
  return std::clamp<size_t>((64u << 20) / message_bytes, 4, 1024);
}

class BoostMqTransport {
 public:
  BoostMqTransport(ipc::message_queue& tx, ipc::message_queue& rx, size_t message_bytes)
      : tx_(tx), rx_(rx), out_(message_bytes), in_(message_bytes) {}

  void send(uint64_t seq) {
    out_.put_sequence(seq);
    tx_.send(out_.data(), out_.size(), 0);
  }

  uint64_t receive() {
    ipc::message_queue::size_type received = 0;
    unsigned int priority = 0;
    rx_.receive(in_.data(), in_.size(), received, priority);
    if (received != in_.size())
      throw std::runtime_error("message of " + std::to_string(received) + " bytes, expected " +
                               std::to_string(in_.size()));
    return in_.sequence();
  }

 private:
  ipc::message_queue& tx_;
  ipc::message_queue& rx_;
  bench::MessageBuffer out_;
  bench::MessageBuffer in_;
};

class BoostMqPeer {
 public:
  static constexpr const char* kName = "boost-mq";
  static constexpr bool kSupportsStream = true;

  // Both queues are created before fork and inherited by B, mapped at the same place. Names
  // carry A's pid; both are registered for removal before they exist, so that a failure
  // between creating the first and the second still removes the first.
  explicit BoostMqPeer(const bench::BenchOptions& options)
      : prefix_("shmbus-bench-mq-" + std::to_string(getpid())), message_bytes_(options.size) {
    for (const char* direction : {"-a2b", "-b2a"})
      bench::register_cleanup_path("/dev/shm/" + prefix_ + direction);
    remove_queues();
    const size_t depth = queue_depth_for(message_bytes_);
    a_to_b_ = std::make_unique<ipc::message_queue>(ipc::create_only, (prefix_ + "-a2b").c_str(), depth,
                                                   message_bytes_);
    b_to_a_ = std::make_unique<ipc::message_queue>(ipc::create_only, (prefix_ + "-b2a").c_str(), depth,
                                                   message_bytes_);
  }
  ~BoostMqPeer() { remove_queues(); }

  BoostMqTransport open(bench::Side side) {
    if (side == bench::Side::a) return BoostMqTransport(*a_to_b_, *b_to_a_, message_bytes_);
    return BoostMqTransport(*b_to_a_, *a_to_b_, message_bytes_);
  }

 private:
  void remove_queues() {
    ipc::message_queue::remove((prefix_ + "-a2b").c_str());
    ipc::message_queue::remove((prefix_ + "-b2a").c_str());
  }

  std::string prefix_;
  size_t message_bytes_;
  std::unique_ptr<ipc::message_queue> a_to_b_;
  std::unique_ptr<ipc::message_queue> b_to_a_;
};

}  // namespace

int main(int argc, char** argv) {
  return bench::run_two_process_bench<BoostMqPeer>(argc, argv);
}

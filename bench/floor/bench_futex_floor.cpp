// bench-futex-floor: the floor of a blocking wake-up on this machine. Each side sleeps in FUTEX_WAIT on its
// own word until the other stores the next value there and calls FUTEX_WAKE: one wake-up system call and one
// sleep per hop, no spinning and nothing else. A blocking transport (shmbus-blocking, a Unix socket) can at
// best match it, since a reader that sleeps must be woken by the kernel. Round trips only.

#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <cstdint>
#include <new>
#include <stdexcept>

#include "harness/shared_region.h"
#include "harness/two_process_bench.h"

namespace {

// One 32-bit futex word per direction, each on its own line.
struct FutexWords {
  alignas(64) std::atomic<uint32_t> to_b{0};
  alignas(64) std::atomic<uint32_t> to_a{0};
};

class FutexChannel {
 public:
  FutexChannel(std::atomic<uint32_t>& tx, std::atomic<uint32_t>& rx) : tx_(tx), rx_(rx) {}

  // Values on a word are seq + 1 (mod 2^32): a fresh word's 0 means "nothing sent yet".
  void send(uint64_t seq) {
    // release: pairs with the acquire in the peer's receive(); the kernel's futex hash lock orders the store
    // before the wake against the peer's check-and-sleep, so no wake-up is lost.
    tx_.store(static_cast<uint32_t>(seq + 1), std::memory_order_release);
    syscall(SYS_futex, &tx_, FUTEX_WAKE, 1, nullptr, nullptr, 0);
  }

  uint64_t receive() {
    uint32_t value;
    // acquire: pairs with the release in the peer's send(). FUTEX_WAIT returns at once if the word is no
    // longer `value` (EAGAIN), so a store between our load and the sleep is not missed.
    while ((value = rx_.load(std::memory_order_acquire)) == last_seen_) {
      syscall(SYS_futex, &rx_, FUTEX_WAIT, value, nullptr, nullptr, 0);
    }
    last_seen_ = value;
    // The word holds the low 32 bits of seq + 1; the sides alternate, so it is the next sequence.
    if (value != static_cast<uint32_t>(received_ + 1)) throw std::runtime_error("futex word out of sequence");
    return received_++;
  }

 private:
  std::atomic<uint32_t>& tx_;
  std::atomic<uint32_t>& rx_;
  uint32_t last_seen_ = 0;
  uint64_t received_ = 0;
};

class FutexFloorPeer {
 public:
  static constexpr const char* kName = "futex-floor";
  static constexpr bool kSupportsStream = false;
  static constexpr uint64_t kFixedMessageSize = 8;  // the message is the sequence number

  explicit FutexFloorPeer(const bench::BenchOptions&) : region_(sizeof(FutexWords)) {
    words_ = new (region_.data()) FutexWords;
  }

  FutexChannel open(bench::Side side) {
    if (side == bench::Side::a) return FutexChannel(words_->to_b, words_->to_a);
    return FutexChannel(words_->to_a, words_->to_b);
  }

 private:
  bench::SharedRegion region_;
  FutexWords* words_ = nullptr;
};

}  // namespace

int main(int argc, char** argv) {
  return bench::run_two_process_bench<FutexFloorPeer>(argc, argv);
}

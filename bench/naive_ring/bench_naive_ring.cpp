// bench-naive-ring: a naive copying SPSC ring in shared memory (spsc_copy_ring.h), one ring per
// direction. What a shared-memory bus costs if it copies and does nothing clever.

#include <algorithm>

#include "harness/message_buffer.h"
#include "harness/ring_budget.h"
#include "harness/shared_region.h"
#include "harness/two_process_bench.h"
#include "naive_ring/spsc_copy_ring.h"

namespace {

class NaiveRingTransport {
 public:
  NaiveRingTransport(void* tx_ring, void* rx_ring, size_t slot_count, size_t slot_bytes, size_t message_bytes)
      : tx_(tx_ring, slot_count, slot_bytes),
        rx_(rx_ring, slot_count, slot_bytes),
        out_(message_bytes),
        in_(message_bytes) {}

  void send(uint64_t seq) {
    out_.put_sequence(seq);
    tx_.push(out_.data(), out_.size());
  }

  uint64_t receive() {
    rx_.pop(in_.data(), in_.size());
    return in_.sequence();
  }

 private:
  bench::SpscCopyRing tx_;
  bench::SpscCopyRing rx_;
  bench::MessageBuffer out_;
  bench::MessageBuffer in_;
};

class NaiveRingPeer {
 public:
  static constexpr const char* kName = "naive-ring";
  static constexpr bool kSupportsStream = true;

  explicit NaiveRingPeer(const bench::BenchOptions& options)
      : message_bytes_(options.size),
        slot_bytes_((options.size + bench::kCacheLine - 1) / bench::kCacheLine * bench::kCacheLine),
        slot_count_(bench::ring_slots_for(slot_bytes_)),
        ring_bytes_(bench::spsc_ring_bytes(slot_count_, slot_bytes_)),
        region_(2 * ring_bytes_) {}

  NaiveRingTransport open(bench::Side side) {
    std::byte* a_to_b = static_cast<std::byte*>(region_.data());
    std::byte* b_to_a = a_to_b + ring_bytes_;  // ring_bytes_ is a multiple of the cache line
    if (side == bench::Side::a)
      return NaiveRingTransport(a_to_b, b_to_a, slot_count_, slot_bytes_, message_bytes_);
    return NaiveRingTransport(b_to_a, a_to_b, slot_count_, slot_bytes_, message_bytes_);
  }

 private:
  size_t message_bytes_;
  size_t slot_bytes_;
  size_t slot_count_;
  size_t ring_bytes_;
  bench::SharedRegion region_;  // zero-filled: both rings start empty
};

}  // namespace

int main(int argc, char** argv) {
  return bench::run_two_process_bench<NaiveRingPeer>(argc, argv);
}

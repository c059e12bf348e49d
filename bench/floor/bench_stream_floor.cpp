// bench-stream-floor: the least a ring moves per message, the streaming counterpart of bench-floor. Each
// message is copied into the next slot of a ring; the reader polls no index, only the slot itself, whose
// sequence word is stored last (release), and hands its position back every quarter ring.
//
//   bench-stream-floor          no header: the message's first 8 bytes are the sequence word, so a 64 B
//                               message is one cache line, the floor of any design that moves 64 B a message
//   bench-stream-floor-slotted  a 32 B header (sequence, stamp, size) before the payload, as a shmbus ring
//                               slot has: a 64 B message takes two lines, the floor of that slot format
//
// Both copy the message in and out, as bench-naive-ring and bench-shmbus-batch do. rtt uses one ring per
// direction.

#include <atomic>
#include <cstring>

#include "harness/message_buffer.h"
#include "harness/ring_budget.h"
#include "harness/shared_region.h"
#include "harness/two_process_bench.h"

#ifndef BENCH_SLOT_HEADER_BYTES
#define BENCH_SLOT_HEADER_BYTES 0
#endif

namespace {

constexpr std::size_t kHeaderBytes = BENCH_SLOT_HEADER_BYTES;  // 0, or 32 with the sequence in its first word

// The reader's position, on its own line: the only line that travels back.
struct RingControl {
  bench::PaddedCounter read;
};

class LineRing {
 public:
  LineRing(std::byte* memory, std::size_t slots, std::size_t slot_bytes, std::size_t message_bytes)
      : control_(*reinterpret_cast<RingControl*>(memory)),
        slots_(memory + sizeof(RingControl)),
        mask_(slots - 1),
        slot_bytes_(slot_bytes),
        message_bytes_(message_bytes),
        quarter_(slots / 4) {}

  // Writer: copies `message` (its first 8 bytes hold the sequence number) into the next slot.
  void push(const std::byte* message, uint64_t seq) {
    if (seq - cached_read_ >= mask_ + 1) {
      // acquire: pairs with the reader's release; its copy out of the slot is done before we overwrite it.
      while (seq - (cached_read_ = control_.read.value.load(std::memory_order_acquire)) >= mask_ + 1) {
      }
    }
    std::byte* slot = slots_ + (seq & mask_) * slot_bytes_;
    if constexpr (kHeaderBytes == 0) {
      std::memcpy(slot + 8, message + 8, message_bytes_ - 8);
      // release: pairs with the reader's acquire; the rest of the message is visible first.
      word(slot).store(seq + 1, std::memory_order_release);
    } else {
      std::memcpy(slot + kHeaderBytes, message, message_bytes_);
      std::memcpy(slot + 8, &seq, 8);  // the stamp
      const auto size = static_cast<uint32_t>(message_bytes_);
      std::memcpy(slot + 16, &size, 4);
      // release: as above.
      word(slot).store(seq + 1, std::memory_order_release);
    }
  }

  // Reader: copies the next message into `message` (message_bytes long) and returns its sequence number.
  uint64_t pop(std::byte* message) {
    std::byte* slot = slots_ + (read_ & mask_) * slot_bytes_;
    // acquire: pairs with the writer's release of the word.
    while (word(slot).load(std::memory_order_acquire) != read_ + 1) {
    }
    if constexpr (kHeaderBytes == 0) {
      std::memcpy(message + 8, slot + 8, message_bytes_ - 8);
      const uint64_t seq = read_;
      std::memcpy(message, &seq, 8);
    } else {
      uint32_t size = 0;
      std::memcpy(&size, slot + 16, 4);
      if (size != message_bytes_) throw std::runtime_error("corrupt slot size");
      std::memcpy(message, slot + kHeaderBytes, message_bytes_);
    }
    ++read_;
    // release: pairs with the writer's acquire; our copy out is done before it may reuse these slots.
    if ((read_ & (quarter_ - 1)) == 0) control_.read.value.store(read_, std::memory_order_release);
    return read_ - 1;
  }

 private:
  static std::atomic<uint64_t>& word(std::byte* slot) {
    return *reinterpret_cast<std::atomic<uint64_t>*>(slot);
  }

  RingControl& control_;
  std::byte* slots_;
  uint64_t mask_;
  std::size_t slot_bytes_;
  std::size_t message_bytes_;
  uint64_t quarter_;
  uint64_t cached_read_ = 0;  // writer: a lower bound of the reader's position
  uint64_t read_ = 0;         // reader: the next position
};

class StreamFloorTransport {
 public:
  StreamFloorTransport(LineRing tx, LineRing rx, std::size_t message_bytes)
      : tx_(tx), rx_(rx), out_(message_bytes), in_(message_bytes) {}

  void send(uint64_t seq) {
    out_.put_sequence(seq);
    tx_.push(out_.data(), seq);
  }
  uint64_t receive() {
    rx_.pop(in_.data());
    return in_.sequence();
  }

 private:
  LineRing tx_;
  LineRing rx_;
  bench::MessageBuffer out_;
  bench::MessageBuffer in_;
};

class StreamFloorPeer {
 public:
  static constexpr const char* kName = kHeaderBytes == 0 ? "stream-floor" : "stream-floor-slotted";
  static constexpr bool kSupportsStream = true;

  explicit StreamFloorPeer(const bench::BenchOptions& options)
      : message_bytes_(std::max<std::size_t>(options.size, 8)),
        slot_bytes_((kHeaderBytes + message_bytes_ + bench::kCacheLine - 1) / bench::kCacheLine *
                    bench::kCacheLine),
        slots_(bench::ring_slots_for(slot_bytes_)),
        ring_bytes_(sizeof(RingControl) + slots_ * slot_bytes_),
        region_(2 * ring_bytes_) {}

  StreamFloorTransport open(bench::Side side) {
    std::byte* a_to_b = static_cast<std::byte*>(region_.data());
    std::byte* b_to_a = a_to_b + ring_bytes_;  // a multiple of the cache line
    LineRing ab(a_to_b, slots_, slot_bytes_, message_bytes_);
    LineRing ba(b_to_a, slots_, slot_bytes_, message_bytes_);
    if (side == bench::Side::a) return StreamFloorTransport(ab, ba, message_bytes_);
    return StreamFloorTransport(ba, ab, message_bytes_);
  }

 private:
  std::size_t message_bytes_;
  std::size_t slot_bytes_;
  std::size_t slots_;
  std::size_t ring_bytes_;
  bench::SharedRegion region_;
};

}  // namespace

int main(int argc, char** argv) {
  return bench::run_two_process_bench<StreamFloorPeer>(argc, argv);
}

// Fuzzes what a client trusts in a topic segment: validate_topic_header on arbitrary bytes of arbitrary size
// (a corrupt, truncated or hostile segment), then, for a header it accepts, every ring read the way a
// Subscriber reads it (start position from its cursor, peek/message/hold/skip/release, payload bytes of
// single and packed slots, drain's runs, cursor publication). The buffer is exactly the input's size, so
// AddressSanitizer reports any index read from the segment that is not bounds-checked.
#include <cstdint>
#include <cstring>
#include <memory>
#include <new>
#include <optional>
#include <string>

#include "shm/ring_reader.h"
#include "shm/topic_segment_layout.h"

using namespace shmbus::shm;

namespace {

struct AlignedDelete {
  void operator()(std::byte* p) const { ::operator delete[](p, std::align_val_t{kCacheLine}); }
};

// Reads ring `p` as subscriber `s` until it is empty or a bounded number of steps passed.
void read_ring(std::byte* base, const TopicGeometry& g, uint32_t p, uint32_t s) {
  PublisherSlot* ps = publisher_slot(base, g, p);
  const uint32_t generation = ps->generation.load(std::memory_order_relaxed);
  // As SubscriberCore::refresh: the cursor the daemon left for us gives the start position.
  const uint64_t v = cursor(base, g, p, s)->value.load(std::memory_order_relaxed);
  const bool same_generation = v != kCursorInactive && (v >> kGenerationShift) == (generation & 0xffff);
  // The policy as the client validated it (from the header, which the fuzzer's input sets).
  RingReader reader(base, g, p, s, generation, same_generation ? (v & kPositionMask) : 0, /*max_held=*/2,
                    topic_header(base)->policy == kPolicyLossless);
  uint64_t dropped = 0;
  uint8_t checksum = 0;
  std::optional<uint64_t> previous;  // a sample held across the next take, as an application might
  for (uint32_t step = 0; step < 2 * g.depth + 4 && step < 64; ++step) {
    SlotHeader* slot = nullptr;
    const auto peek = reader.peek(&slot, &dropped);
    if (peek == RingReader::Peek::kEmpty) {
      reader.publish_cursor_idle();
      break;
    }
    if (peek == RingReader::Peek::kCorrupt) {
      reader.skip();
      continue;
    }
    RingReader::Message m;
    if (!reader.message(slot, &m)) {  // a packed slot whose table does not hold together
      (void)reader.skip_corrupt(slot);
      continue;
    }
    for (uint32_t i = 0; i < m.size; ++i) checksum ^= static_cast<uint8_t>(m.data[i]);
    const uint64_t position = reader.hold(m);
    (void)reader.still_valid(position);
    if (previous) reader.release(*previous);
    if (step % 2 == 1) {  // every other step, a drain's run from the next ready message
      SlotHeader* first = nullptr;
      RingReader::Message head{};
      if (reader.peek(&first, &dropped) == RingReader::Peek::kReady && reader.message(first, &head)) {
        RingReader::Message last{};
        const std::size_t n = reader.for_each_ready(first, head, 8, 3, [&](const RingReader::Message& r) {
          for (uint32_t i = 0; i < r.size; ++i) checksum ^= static_cast<uint8_t>(r.data[i]);
          last = r;
        });
        if (n > 0) reader.consume(last.position, last.next_sub, last.next_offset);
      }
    }
    previous = position;
    reader.publish_cursor();
  }
  asm volatile("" : : "r"(checksum));  // keep the payload reads
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  // Aligned as a mapping is; exactly `size` bytes so that a read past the end is caught.
  std::unique_ptr<std::byte, AlignedDelete> segment(
      static_cast<std::byte*>(::operator new[](size ? size : 1, std::align_val_t{kCacheLine})));
  if (size) std::memcpy(segment.get(), data, size);
  std::byte* base = segment.get();
  std::string error;
  const auto g = validate_topic_header(*topic_header(base), size, &error);
  if (!g) {
    if (error.empty()) __builtin_trap();
    return 0;
  }
  if (g->segment_size > size) __builtin_trap();
  // The daemon hands out a subscriber slot below max_subscribers (the client checks); pick one from the
  // input.
  const uint32_t subscriber = topic_header(base)->topic_id % g->max_subscribers;
  for (uint32_t p = 0; p < g->max_publishers; ++p) read_ring(base, *g, p, subscriber);
  return 0;
}

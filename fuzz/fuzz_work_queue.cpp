// Fuzzes what the daemon and clients trust in a work queue's memory: a durable queue file read back from disk
// (truncated, corrupted, or written by anyone with access) or a segment a hostile client scribbled on.
// WorkQueue::attach validates the header; for an accepted image, recovery (as the daemon runs it on a file of
// another boot) and then every operation a producer, consumer, inspector and the daemon perform. The buffer
// is exactly the input's size, so AddressSanitizer reports any index or size read from the image that is not
// bounds-checked, and the fuzzer's timeout any loop that never ends.
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <memory>
#include <new>
#include <string>

#include "shm/work_queue.h"

using namespace shmbus::shm;

namespace {
struct AlignedDelete {
  void operator()(std::byte* p) const { ::operator delete[](p, std::align_val_t{64}); }
};
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::unique_ptr<std::byte[], AlignedDelete> image(new (std::align_val_t{64})
                                                        std::byte[size == 0 ? 1 : size]);
  std::memcpy(image.get(), data, size);
  std::string why;
  auto q = WorkQueue::attach(image.get(), size, &why);
  if (!q) return 0;
  (void)q->recover(/*new_boot=*/true, "fuzz-boot");  // frees the lock, checks every entry
  const pid_t me = getpid();
  DeliveredEntry d;
  uint8_t checksum = 0;
  for (int i = 0; i < 8; ++i) {
    if (q->pop(me, std::chrono::seconds(1), &d) != QueueOp::kOk) break;
    for (uint32_t k = 0; k < d.size; ++k) checksum ^= static_cast<uint8_t>(d.payload[k]);
    if (i % 3 == 0) {
      (void)q->reject(d.index, d.tag, true);
    } else if (i % 3 == 1) {
      (void)q->ack(d.index, d.tag);
    }
  }
  (void)q->expire(steady_now_ns() + 3'600'000'000'000ull);
  (void)q->release_owner(me, false);
  for (const DeadLetter& dead : q->dead_letters(16))
    checksum ^= dead.payload.empty() ? 0 : uint8_t(dead.payload[0]);
  (void)q->replay_dead();
  ClaimedEntry c;
  if (q->reserve(me, &c) == QueueOp::kOk) {
    std::memset(c.payload, 0x5a, c.capacity);
    (void)q->commit(c, me, {.size = c.capacity, .priority = 9, .correlation = 1});
  }
  (void)q->snapshot();
  (void)q->owners();
  asm volatile("" : : "r"(checksum));  // keep the payload reads
  return 0;
}

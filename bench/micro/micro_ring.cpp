// Micro-benchmarks of the ring's queue operations, one thread, on a private segment (created and
// unlinked at once, as tests/ring_test.cpp does: nothing is left in /dev/shm even on a crash).
//
//   BM_ClaimCommit/<size>/<touch>   writer: claim() + write + commit(), lossy and lossless ring
//   BM_PeekSkip/<size>/<touch>      reader: peek() + read + skip() (+ lazy cursor publication);
//                                   the ring is refilled between batches outside the timed region;
//                                   one iteration is a batch of 256, counter ns_per_msg is per message
//   BM_Round/<size>/<touch>         one message through: claim + commit, then peek + skip, lossless
//   BM_BatchRound/<max>             64 messages of 64 B through: write_batch, then message() + consume() for
//                                   each, lossless, on a topic whose messages may be <max> bytes (64: one a
//                                   slot; 4096: packed, 60 a slot); an iteration is the batch, the counter
//                                   messages_per_iteration says so (the report divides by it)
//
// <touch> 0: only the 8-byte sequence is written/read (what a zero-copy user of a large frame
// pays for the queue); 1: the whole payload is written (memset) and read (summed).
// Times are per message. No cross-core transfer happens here: these are instruction and L1/L2
// costs, the part of a publish or take that the cache-line floor does not already account for.
#include <benchmark/benchmark.h>
#include <unistd.h>

#include <array>
#include <atomic>
#include <chrono>
#include <cstring>
#include <span>
#include <string>
#include <vector>

#include "shm/ring_reader.h"
#include "shm/ring_writer.h"
#include "shm/segment.h"
#include "shm/topic_segment_layout.h"

namespace {

using namespace shmbus::shm;
using Clock = std::chrono::steady_clock;

constexpr uint32_t kDepth = 256;

// One topic segment with one active ring (generation 1) and `readers` cursors at position 0,
// pre-faulted by writing every byte once.
struct PrivateRing {
  Segment segment;
  TopicGeometry g;
  PrivateRing(uint32_t message_size, bool lossless, uint32_t readers) {
    static std::atomic<int> counter{0};
    const std::string name =
        "/shmbus-bench-micro." + std::to_string(getpid()) + "." + std::to_string(counter++);
    g = *compute_topic_geometry(message_size, kDepth, 1, 1, nullptr);
    segment = Segment::create(name, g.segment_size, 0600);
    Segment::remove(name);
    std::memset(segment.data(), 0, segment.size());
    initialize_topic_segment(segment.data(), g, 1, lossless ? kPolicyLossless : kPolicyLossy, 0,
                             "bench/micro", 0);
    publisher_slot(segment.data(), g, 0)->generation.store(1);
    publisher_slot(segment.data(), g, 0)->state.store(kSlotActive);
    for (uint32_t s = 0; s < readers; ++s) cursor(segment.data(), g, 0, s)->value.store(make_cursor(1, 0));
  }
};

inline void write_message(std::byte* p, uint64_t seq, size_t size, bool touch) {
  if (touch) std::memset(p, static_cast<int>(seq & 0xff), size);
  std::memcpy(p, &seq, sizeof seq);
  benchmark::DoNotOptimize(p);
}

inline uint64_t read_message(const std::byte* p, size_t size, bool touch) {
  uint64_t v;
  std::memcpy(&v, p, sizeof v);
  if (touch) {
    uint64_t sum = 0;
    for (size_t i = 0; i < size; i += sizeof(uint64_t)) {
      uint64_t w;
      std::memcpy(&w, p + i, sizeof w);
      sum += w;
    }
    benchmark::DoNotOptimize(sum);
  }
  return v;
}

void BM_ClaimCommit(benchmark::State& state, bool lossless) {
  const auto size = static_cast<uint32_t>(state.range(0));
  const bool touch = state.range(1) != 0;
  PrivateRing ring(size, lossless, 0);  // lossless with no reader: the gate is always open
  RingWriter writer(ring.segment.data(), ring.g, 0, 1, lossless);
  uint64_t seq = 0;
  for (auto _ : state) {
    std::byte* p = writer.claim(std::chrono::nanoseconds(0));
    if (p == nullptr) {
      state.SkipWithError("claim failed");
      break;
    }
    write_message(p, seq++, size, touch);
    writer.commit(size, 0);
  }
  state.SetItemsProcessed(state.iterations());
  state.SetBytesProcessed(state.iterations() * size);
}

void BM_PeekSkip(benchmark::State& state) {
  const auto size = static_cast<uint32_t>(state.range(0));
  const bool touch = state.range(1) != 0;
  PrivateRing ring(size, true, 1);
  RingWriter writer(ring.segment.data(), ring.g, 0, 1, true);
  RingReader reader(ring.segment.data(), ring.g, 0, 0, 1, 0, 16, /*lossless=*/true);
  uint64_t seq = 0, expected = 0;
  double timed_s = 0;
  // One iteration = one batch of kDepth messages, of which only the reading is timed (manual time,
  // per batch); the counter ns_per_msg is that time per message.
  for (auto _ : state) {
    for (uint32_t i = 0; i < kDepth; ++i) {
      std::byte* p = writer.claim(std::chrono::nanoseconds(0));
      if (p == nullptr) {
        state.SkipWithError("claim failed: reader cursor not published?");
        return;
      }
      write_message(p, seq++, size, touch);
      writer.commit(size, 0);
    }
    const auto t0 = Clock::now();
    for (uint32_t i = 0; i < kDepth; ++i) {
      SlotHeader* slot = nullptr;
      uint64_t dropped = 0;
      if (reader.peek(&slot, &dropped) != RingReader::Peek::kReady) {
        state.SkipWithError("peek found no message");
        return;
      }
      if (read_message(slot_payload(slot), size, touch) != expected++) {
        state.SkipWithError("out of order");
        return;
      }
      reader.skip();
      reader.publish_cursor();
    }
    reader.publish_cursor_idle();
    const auto t1 = Clock::now();
    const double batch_s = std::chrono::duration<double>(t1 - t0).count();
    timed_s += batch_s;
    state.SetIterationTime(batch_s);
  }
  state.SetItemsProcessed(state.iterations() * kDepth);
  if (state.iterations() > 0)
    state.counters["ns_per_msg"] = timed_s * 1e9 / (static_cast<double>(state.iterations()) * kDepth);
}

void BM_Round(benchmark::State& state) {
  const auto size = static_cast<uint32_t>(state.range(0));
  const bool touch = state.range(1) != 0;
  PrivateRing ring(size, true, 1);
  RingWriter writer(ring.segment.data(), ring.g, 0, 1, true);
  RingReader reader(ring.segment.data(), ring.g, 0, 0, 1, 0, 16, /*lossless=*/true);
  uint64_t seq = 0;
  for (auto _ : state) {
    std::byte* p = writer.claim(std::chrono::nanoseconds(0));
    if (p == nullptr) {
      state.SkipWithError("claim failed");
      break;
    }
    write_message(p, seq, size, touch);
    writer.commit(size, 0);
    SlotHeader* slot = nullptr;
    uint64_t dropped = 0;
    if (reader.peek(&slot, &dropped) != RingReader::Peek::kReady ||
        read_message(slot_payload(slot), size, touch) != seq) {
      state.SkipWithError("peek failed");
      break;
    }
    reader.skip();
    reader.publish_cursor();
    ++seq;
  }
  state.SetItemsProcessed(state.iterations());
  state.SetBytesProcessed(state.iterations() * size);
}

void BM_BatchRound(benchmark::State& state) {
  const auto max_message = static_cast<uint32_t>(state.range(0));
  constexpr std::size_t kBatch = 64;
  PrivateRing ring(max_message, true, 1);
  RingWriter writer(ring.segment.data(), ring.g, 0, 1, true);
  RingReader reader(ring.segment.data(), ring.g, 0, 0, 1, 0, 16, /*lossless=*/true);
  std::vector<std::array<uint64_t, 8>> storage(kBatch);
  std::vector<std::span<const std::byte>> batch;
  for (auto& m : storage) batch.push_back(std::as_bytes(std::span(m)));
  uint64_t seq = 0;
  for (auto _ : state) {
    for (auto& m : storage) m[0] = seq++;
    if (writer.write_batch(batch, 0, std::chrono::nanoseconds(0)) != kBatch) {
      state.SkipWithError("write_batch: the ring is full (cursor not published?)");
      break;
    }
    uint64_t sum = 0;
    for (std::size_t i = 0; i < kBatch; ++i) {
      SlotHeader* slot = nullptr;
      uint64_t dropped = 0;
      RingReader::Message m;
      if (reader.peek(&slot, &dropped) != RingReader::Peek::kReady || !reader.message(slot, &m)) {
        state.SkipWithError("message missing");
        return;
      }
      uint64_t first = 0;
      std::memcpy(&first, m.data, sizeof first);
      sum += first;
      reader.consume(m.position, m.next_sub, m.next_offset);
    }
    benchmark::DoNotOptimize(sum);
    reader.publish_cursor_idle();
  }
  state.SetItemsProcessed(state.iterations() * kBatch);
  state.counters["messages_per_iteration"] = kBatch;
}

void sizes(benchmark::internal::Benchmark* b) {
  b->ArgNames({"size", "touch"});
  for (int64_t size : {64, 4096})
    for (int64_t touch : {0, 1}) b->Args({size, touch});
}

BENCHMARK_CAPTURE(BM_ClaimCommit, lossy, false)->Apply(sizes);
BENCHMARK_CAPTURE(BM_ClaimCommit, lossless, true)->Apply(sizes);
BENCHMARK(BM_PeekSkip)->Apply(sizes)->UseManualTime();
BENCHMARK(BM_Round)->Apply(sizes);
BENCHMARK(BM_BatchRound)->ArgName("max")->Arg(64)->Arg(4096);

}  // namespace

BENCHMARK_MAIN();

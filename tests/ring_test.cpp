// The broadcast ring on its own: a real shared-memory segment, a writer and readers in threads; and the
// futex waits the readers sleep in.
#include <gtest/gtest.h>
#include <unistd.h>

#include <array>
#include <atomic>
#include <chrono>
#include <cstring>
#include <span>
#include <thread>
#include <vector>

#include "shm/futex.h"
#include "shm/ring_reader.h"
#include "shm/ring_writer.h"
#include "shm/segment.h"
#include "shm/topic_segment_layout.h"

namespace shmbus::shm {
namespace {

using namespace std::chrono_literals;

// A topic segment with one active ring (generation 1) and `readers` subscriber cursors at position 0.
struct RingFixture {
  Segment segment;
  TopicGeometry g;
  bool lossless_topic;
  RingFixture(uint32_t message_size, uint32_t depth, bool lossless, uint32_t readers)
      : lossless_topic(lossless) {
    static std::atomic<int> counter{0};
    const std::string name = "/shmbus.ringtest" + std::to_string(getpid()) + "." + std::to_string(counter++);
    g = *compute_topic_geometry(message_size, depth, 2, 4, nullptr);
    segment = Segment::create(name, g.segment_size, 0600);
    Segment::remove(name);  // the mapping stays; nothing is left behind even if the test fails
    initialize_topic_segment(segment.data(), g, 1, lossless ? kPolicyLossless : kPolicyLossy, 0, "ring/test",
                             0);
    publisher_slot(segment.data(), g, 0)->generation.store(1);
    publisher_slot(segment.data(), g, 0)->state.store(kSlotActive);
    for (uint32_t s = 0; s < readers; ++s) cursor(segment.data(), g, 0, s)->value.store(make_cursor(1, 0));
  }
  RingWriter writer(bool lossless) { return RingWriter(segment.data(), g, 0, 1, lossless); }
  RingReader reader(uint32_t s, uint32_t max_held = 4) {
    return RingReader(segment.data(), g, 0, s, 1, 0, max_held, lossless_topic);
  }
};

void write_u64(RingWriter& w, uint64_t v) {
  std::byte* p = w.claim(10s);
  ASSERT_NE(p, nullptr);
  std::memcpy(p, &v, sizeof v);
  w.commit(sizeof v, 0);
}

uint64_t take_u64(RingReader& r) {
  SlotHeader* slot = nullptr;
  uint64_t dropped = 0;
  EXPECT_EQ(r.peek(&slot, &dropped), RingReader::Peek::kReady);
  uint64_t v = 0;
  std::memcpy(&v, slot_payload(slot), sizeof v);
  r.skip();
  return v;
}

// A lossless reader thread's loop: takes `count` messages in order, counting in `failures` every message
// `expected(message, i)` rejects, every sequence but i + 1 and any drop; publishes its cursor as a subscriber
// does.
template <typename Check>
void read_in_order(RingFixture& f, uint32_t s, uint64_t count, std::atomic<int>& failures, Check expected) {
  auto r = f.reader(s);
  SlotHeader* slot = nullptr;
  uint64_t dropped = 0;
  for (uint64_t i = 0; i < count;) {
    RingReader::Message m;
    if (r.peek(&slot, &dropped) != RingReader::Peek::kReady || !r.message(slot, &m)) {
      r.publish_cursor_idle();
      continue;
    }
    if (!expected(m, i) || m.sequence != i + 1) ++failures;
    r.consume(m.position, m.next_sub, m.next_offset);
    r.publish_cursor();
    ++i;
  }
  if (dropped != 0) ++failures;
}

// A reader's withdrawal from the topic's sleeper count goes through its own count first: one whose counts
// were already undone (the daemon dropped it and repaired them) takes nothing from the other readers'.
TEST(RingTest, LeavingASleepNeverTakesAnotherReadersCount) {
  RingFixture f(64, 8, true, 2);
  TopicHeader* h = topic_header(f.segment.data());
  SubscriberSlot* a = subscriber_slot(f.segment.data(), f.g, 0);
  SubscriberSlot* b = subscriber_slot(f.segment.data(), f.g, 1);
  enter_sleep(h, a);
  enter_sleep(h, b);
  enter_sleep(h, b);  // b counted twice: a take() and an EventSource thread
  EXPECT_EQ(h->sleepers.load(), 3u);
  EXPECT_EQ(b->sleeping.load(), 2u);
  a->sleeping.store(0);      // as the daemon's repair leaves it ...
  h->sleepers.fetch_sub(1);  // ... having undone a's count
  leave_sleep(h, a);         // a, unaware, withdraws again
  EXPECT_EQ(h->sleepers.load(), 2u) << "b's counts are intact";
  EXPECT_EQ(a->sleeping.load(), 0u) << "no wrap below zero";
  leave_sleep(h, b);
  leave_sleep(h, b);
  EXPECT_EQ(h->sleepers.load(), 0u);
  EXPECT_EQ(b->sleeping.load(), 0u);
}

TEST(RingTest, WrapsAroundManyTimesInOrder) {
  RingFixture f(64, 8, true, 1);
  auto w = f.writer(true);
  auto r = f.reader(0);
  for (uint64_t i = 0; i < 1000; ++i) {
    write_u64(w, i * 7);
    EXPECT_EQ(take_u64(r), i * 7);
    r.publish_cursor_idle();
  }
  SlotHeader* slot = nullptr;
  uint64_t dropped = 0;
  EXPECT_EQ(r.peek(&slot, &dropped), RingReader::Peek::kEmpty);
}

TEST(RingTest, LosslessWriterStopsAtTheSlowestReader) {
  RingFixture f(64, 8, true, 2);
  auto w = f.writer(true);
  auto fast = f.reader(0);
  auto slow = f.reader(1);
  for (uint64_t i = 0; i < 8; ++i) write_u64(w, i);
  for (uint64_t i = 0; i < 8; ++i) take_u64(fast);
  fast.publish_cursor_idle();
  EXPECT_EQ(w.claim(0ns), nullptr) << "ring of 8 is full for the slow reader";
  EXPECT_EQ(take_u64(slow), 0u);
  EXPECT_EQ(take_u64(slow), 1u);
  slow.publish_cursor_idle();
  EXPECT_NE(w.claim(0ns), nullptr) << "the slow reader freed slots";
}

// A reader that publishes its cursor only every quarter ring (publish_cursor, never the idle publication)
// still wakes a writer that sleeps on a full ring: the writer gets every message through, in order.
TEST(RingTest, TheQuarterRingPublicationAloneKeepsABlockedWriterGoing) {
  RingFixture f(64, 8, true, 1);
  constexpr uint64_t kCount = 2000;
  std::atomic<bool> writer_done{false};
  std::thread writer([&] {
    auto w = f.writer(true);
    for (uint64_t i = 0; i < kCount; ++i) write_u64(w, i);  // each claim waits up to 10 s for room
    writer_done.store(true);
  });
  auto r = f.reader(0);
  uint64_t failures = 0;
  for (uint64_t i = 0; i < kCount; ++i) {
    SlotHeader* slot = nullptr;
    uint64_t dropped = 0;
    const auto deadline = std::chrono::steady_clock::now() + 10s;
    while (r.peek(&slot, &dropped) != RingReader::Peek::kReady &&
           std::chrono::steady_clock::now() < deadline) {
      if (i % 64 == 0)
        std::this_thread::sleep_for(1ms);  // now and then, let the writer fill the ring and sleep
    }
    RingReader::Message m;
    if (!r.message(slot, &m)) {
      ADD_FAILURE() << "no message " << i << " within 10 s";
      break;
    }
    uint64_t v = 0;
    std::memcpy(&v, m.data, sizeof v);
    failures += v != i;
    r.consume(m.position, m.next_sub, m.next_offset);
    r.publish_cursor();
  }
  writer.join();
  EXPECT_EQ(failures, 0u);
  EXPECT_TRUE(writer_done.load());
}

// A reader that caught up while a sample pins its cursor, and whose quarter-ring rule does not move it, still
// lets a waiting writer on as soon as the release makes room: the idle publication sees it waiting and wakes
// it.
TEST(RingTest, ACaughtUpReaderWakesAWriterWaitingBehindAReleasedSample) {
  RingFixture f(64, 8, true, 1);
  auto w = f.writer(true);
  auto r = f.reader(0, 4);
  for (uint64_t i = 0; i < 8; ++i) write_u64(w, i);
  SlotHeader* slot = nullptr;
  uint64_t dropped = 0;
  RingReader::Message m;
  ASSERT_EQ(r.peek(&slot, &dropped), RingReader::Peek::kReady);
  ASSERT_TRUE(r.message(slot, &m));
  const uint64_t p0 = r.hold(m);  // position 0 held
  ASSERT_EQ(r.peek(&slot, &dropped), RingReader::Peek::kReady);
  ASSERT_TRUE(r.message(slot, &m));
  const uint64_t p1 = r.hold(m);            // and position 1
  for (int i = 0; i < 6; ++i) take_u64(r);  // caught up at 8
  r.publish_cursor_idle();                  // pinned at 0: nothing to publish
  std::atomic<bool> claimed{false};
  std::thread writer([&] {
    if (w.claim(10s) != nullptr) claimed.store(true);  // sleeps: the ring is full up to position 0
  });
  const auto deadline = std::chrono::steady_clock::now() + 10s;
  while (publisher_slot(f.segment.data(), f.g, 0)->writer_waiting.load() == 0 &&
         std::chrono::steady_clock::now() < deadline) {
    std::this_thread::yield();  // until the writer says it waits
  }
  r.release(p0);  // the cursor may move to 1: less than a quarter ring (2), so publish_cursor() keeps it
  r.publish_cursor();
  EXPECT_FALSE(claimed.load());
  r.publish_cursor_idle();  // caught up: publishes 1 and wakes the writer it sees waiting
  writer.join();
  EXPECT_TRUE(claimed.load()) << "the writer got the freed slot";
  r.release(p1);
}

TEST(RingTest, LossyReaderCountsExactlyWhatItMissed) {
  RingFixture f(64, 8, false, 1);
  auto w = f.writer(false);
  auto r = f.reader(0);
  for (uint64_t i = 0; i < 100; ++i) write_u64(w, i);  // never blocks
  SlotHeader* slot = nullptr;
  uint64_t dropped = 0;
  ASSERT_EQ(r.peek(&slot, &dropped), RingReader::Peek::kReady);
  uint64_t first = 0;
  std::memcpy(&first, slot_payload(slot), sizeof first);
  EXPECT_EQ(dropped, first) << "every message before the first delivered one is counted";
  uint64_t got = 0;
  while (r.peek(&slot, &dropped) == RingReader::Peek::kReady) r.skip(), ++got;
  EXPECT_EQ(got + dropped, 100u);
  EXPECT_GE(got, 7u);
}

TEST(RingTest, HeldSamplesPinTheCursorOutOfOrderRelease) {
  RingFixture f(64, 4, true, 1);
  auto w = f.writer(true);
  auto r = f.reader(0, 4);
  for (uint64_t i = 0; i < 4; ++i) write_u64(w, i);
  SlotHeader* slot = nullptr;
  uint64_t dropped = 0;
  ASSERT_EQ(r.peek(&slot, &dropped), RingReader::Peek::kReady);
  RingReader::Message m;
  ASSERT_TRUE(r.message(slot, &m));
  const uint64_t p0 = r.hold(m);
  ASSERT_EQ(r.peek(&slot, &dropped), RingReader::Peek::kReady);
  ASSERT_TRUE(r.message(slot, &m));
  const uint64_t p1 = r.hold(m);
  take_u64(r), take_u64(r);
  r.publish_cursor_idle();
  EXPECT_EQ(w.claim(0ns), nullptr) << "position 0 is still held";
  r.release(p1);
  r.publish_cursor_idle();
  EXPECT_EQ(w.claim(0ns), nullptr) << "position 0 is still held";
  r.release(p0);
  r.publish_cursor_idle();
  EXPECT_NE(w.claim(0ns), nullptr);
}

TEST(RingTest, CorruptSizeIsReportedNotFollowed) {
  RingFixture f(64, 8, true, 1);
  auto w = f.writer(true);
  auto r = f.reader(0);
  write_u64(w, 1);
  ring_slot(ring_base(f.segment.data(), f.g, 0), f.g, 0)->size = 1u << 30;  // a buggy writer
  SlotHeader* slot = nullptr;
  uint64_t dropped = 0;
  EXPECT_EQ(r.peek(&slot, &dropped), RingReader::Peek::kCorrupt);
}

// One run as drain reads it: peek, then for_each_ready from the slot found, then consume the run. The values
// (first 8 bytes, each its position + 1) go to *seen, the run's length to *length. Returns peek's report.
RingReader::Peek read_run(RingReader& r, std::vector<uint64_t>* seen, std::size_t* length = nullptr) {
  SlotHeader* first = nullptr;
  uint64_t dropped = 0;
  const RingReader::Peek p = r.peek(&first, &dropped);
  if (p != RingReader::Peek::kReady) return p;
  RingReader::Message last{}, m0;
  EXPECT_TRUE(r.message(first, &m0));
  const std::size_t n = r.for_each_ready(first, m0, 64, 64, [&](const RingReader::Message& m) {
    uint64_t v = 0;
    std::memcpy(&v, m.data, sizeof v);
    EXPECT_EQ(v, m.position + 1);
    EXPECT_EQ(m.sequence, m.position + 1);
    seen->push_back(v);
    last = m;
  });
  if (n > 0) r.consume(last.position, last.next_sub, last.next_offset);
  if (length != nullptr) *length = n;
  return p;
}

// for_each_ready (drain's runs) visits consecutive ready slots in one pass, stepping a slot pointer that
// wraps at the ring's end: a run that starts near the end crosses the wrap whole, in order.
TEST(RingTest, AReadyRunCrossesTheRingsWrapWhole) {
  RingFixture f(64, 8, true, 1);
  auto w = f.writer(true);
  auto r = f.reader(0);
  for (uint64_t v = 1; v <= 5; ++v) write_u64(w, v);
  for (uint64_t v = 1; v <= 5; ++v) EXPECT_EQ(take_u64(r), v);
  r.publish_cursor_idle();                             // the writer may reuse positions 0..4
  for (uint64_t v = 6; v <= 13; ++v) write_u64(w, v);  // positions 5..12: slots 5, 6, 7, 0, ... 4
  std::vector<uint64_t> seen;
  std::size_t n = 0;
  ASSERT_EQ(read_run(r, &seen, &n), RingReader::Peek::kReady);
  EXPECT_EQ(n, 8u) << "one run, across the wrap";
  EXPECT_EQ(seen, (std::vector<uint64_t>{6, 7, 8, 9, 10, 11, 12, 13}));
  EXPECT_EQ(read_run(r, &seen), RingReader::Peek::kEmpty);
}

// A corrupt slot (a size past max_message_size) inside a ready run ends the run before it; the reader then
// reports it as corrupt, skips it, and the run after it reads normally.
TEST(RingTest, ACorruptSlotInsideARunEndsItAndIsSkippedAlone) {
  RingFixture f(64, 8, true, 1);
  auto w = f.writer(true);
  auto r = f.reader(0);
  for (uint64_t v = 1; v <= 6; ++v) write_u64(w, v);
  ring_slot(ring_base(f.segment.data(), f.g, 0), f.g, 3)->size = 1u << 30;  // a buggy writer
  std::vector<uint64_t> seen;
  EXPECT_EQ(read_run(r, &seen), RingReader::Peek::kReady);
  EXPECT_EQ(seen, (std::vector<uint64_t>{1, 2, 3}));
  EXPECT_EQ(read_run(r, &seen), RingReader::Peek::kCorrupt);
  r.skip();
  EXPECT_EQ(read_run(r, &seen), RingReader::Peek::kReady);
  EXPECT_EQ(seen, (std::vector<uint64_t>{1, 2, 3, 5, 6}));
  EXPECT_EQ(read_run(r, &seen), RingReader::Peek::kEmpty);
}

// A writer that fills its ring with sequences from the future, which its head does not confirm: the reader
// skips the garbage below head (at most a ring of it) and finds the ring empty at head, instead of following
// the garbage round the ring for ever. The writer's next real message reads normally.
TEST(RingTest, GarbageSequencesPastHeadReadAsEmptyNotAnEndlessSkip) {
  RingFixture f(64, 8, true, 1);
  auto w = f.writer(true);
  auto r = f.reader(0);
  write_u64(w, 1);
  write_u64(w, 2);
  std::byte* ring = ring_base(f.segment.data(), f.g, 0);
  for (uint64_t p = 0; p < f.g.depth; ++p) ring_slot(ring, f.g, p)->sequence.store(1000 + p);  // head is 2
  SlotHeader* slot = nullptr;
  uint64_t dropped = 0;
  int corrupt = 0;
  RingReader::Peek peek;
  while ((peek = r.peek(&slot, &dropped)) == RingReader::Peek::kCorrupt && corrupt < 100) {
    r.skip();
    ++corrupt;
  }
  EXPECT_EQ(corrupt, 2) << "the two slots below head";
  EXPECT_EQ(peek, RingReader::Peek::kEmpty);
  EXPECT_EQ(r.peek(&slot, &dropped), RingReader::Peek::kEmpty) << "and it stays so";
  write_u64(w, 3);  // position 2: the writer overwrites the garbage
  EXPECT_EQ(take_u64(r), 3u);
}

// Cursors keep 48 bits of position. A lossless ring past 2^48 messages (160 days at 20 M/s) must keep
// flowing: the gate completes the bits from its head, where the masked value alone read as position 0 and
// closed the ring for good.
TEST(RingTest, LosslessRingKeepsFlowingAcrossPosition2Pow48) {
  RingFixture f(64, 8, true, 1);
  const uint64_t start = (uint64_t{1} << 48) - 5;
  publisher_slot(f.segment.data(), f.g, 0)->head.store(start);
  cursor(f.segment.data(), f.g, 0, 0)->value.store(make_cursor(1, start));
  auto w = f.writer(true);
  RingReader r(f.segment.data(), f.g, 0, 0, 1, start, 4, true);
  for (uint64_t i = 0; i < 40; ++i) {
    std::byte* p = w.claim(0ns);
    ASSERT_NE(p, nullptr) << "gate closed at position " << start + i;
    std::memcpy(p, &i, sizeof i);
    w.commit(sizeof i, 0);
    EXPECT_EQ(take_u64(r), i);
    r.publish_cursor_idle();
  }
  EXPECT_EQ(cursor_position(make_cursor(1, start + 40), w.head()), start + 40);
  EXPECT_TRUE(cursor_ahead_of(make_cursor(1, w.head() + 2), w.head()));
  EXPECT_FALSE(cursor_ahead_of(make_cursor(1, w.head() + 1), w.head()));
  EXPECT_FALSE(cursor_ahead_of(make_cursor(1, w.head() - 7), w.head()));
}

// One writer, two readers in threads, lossless: every reader sees every message in order with its checksum.
TEST(RingTest, MultiThreadedLosslessStress) {
#if defined(__SANITIZE_THREAD__) || defined(__SANITIZE_ADDRESS__)
  constexpr uint64_t kMessages = 30000;  // three spinning threads on two cores are slow under sanitizers
#else
  constexpr uint64_t kMessages = 300000;
#endif
  RingFixture f(256, 16, true, 2);
  std::atomic<int> failures{0};
  auto read = [&](uint32_t s) {
    read_in_order(f, s, kMessages, failures, [](const RingReader::Message& m, uint64_t i) {
      uint64_t v[4];
      std::memcpy(v, m.data, sizeof v);
      return v[0] == i && v[1] == i * 3 && v[3] == (v[0] ^ v[1] ^ v[2]) && m.size == 200;
    });
  };
  std::thread a(read, 0), b(read, 1);
  auto w = f.writer(true);
  for (uint64_t i = 0; i < kMessages; ++i) {
    std::byte* p = w.claim(30s);
    ASSERT_NE(p, nullptr);
    const uint64_t v[4] = {i, i * 3, ~i, i ^ (i * 3) ^ ~i};
    std::memcpy(p, v, sizeof v);
    w.commit(200, i);
  }
  a.join();
  b.join();
  EXPECT_EQ(failures.load(), 0);
}

// A batch of `n` messages: message i carries {i, i * 3, ~i, checksum} and is 32 + i % 200 bytes long.
struct Batch {
  std::vector<std::array<uint64_t, 32>> storage;
  std::vector<std::span<const std::byte>> spans;
  Batch(uint64_t first, std::size_t n) : storage(n) {
    for (std::size_t k = 0; k < n; ++k) {
      const uint64_t i = first + k;
      storage[k] = {i, i * 3, ~i, i ^ (i * 3) ^ ~i};
      spans.push_back(std::as_bytes(std::span(storage[k])).first(32 + i % 200));
    }
  }
};

bool holds_message(const RingReader::Message& m, uint64_t i) {
  uint64_t v[4];
  std::memcpy(v, m.data, sizeof v);
  return v[0] == i && v[1] == i * 3 && v[3] == (v[0] ^ v[1] ^ v[2]) && m.size == 32 + i % 200;
}

// The next message of `r`, consumed; false if none is ready.
bool next_message(RingReader& r, RingReader::Message* m) {
  SlotHeader* slot = nullptr;
  uint64_t dropped = 0;
  if (r.peek(&slot, &dropped) != RingReader::Peek::kReady || !r.message(slot, m)) return false;
  r.consume(m->position, m->next_sub, m->next_offset);
  return true;
}

// A run reads at most `max_slots` slots (drain publishes the cursor between runs every quarter ring of
// slots), also when their messages are fewer than `max`; a packed slot counts once.
TEST(RingTest, ARunStopsAtItsSlotLimit) {
  RingFixture f(256, 8, true, 1);
  auto w = f.writer(true);
  auto r = f.reader(0);
  for (uint64_t v = 1; v <= 6; ++v) write_u64(w, v);
  SlotHeader* first = nullptr;
  uint64_t dropped = 0;
  RingReader::Message m0;
  ASSERT_EQ(r.peek(&first, &dropped), RingReader::Peek::kReady);
  ASSERT_TRUE(r.message(first, &m0));
  EXPECT_EQ(r.for_each_ready(first, m0, 64, 3, [](const RingReader::Message&) {}), 3u);
  RingFixture packed(256, 8, true, 1);
  auto pw = packed.writer(true);
  auto pr = packed.reader(0);
  Batch batch(0, 12);  // 32..43 bytes: 4, 3, 3 and 2 a slot (the 32-byte padding of each but the last)
  ASSERT_EQ(pw.write_batch(batch.spans, 0, 0ns), 12u);
  ASSERT_EQ(pw.head(), 4u);
  ASSERT_EQ(pr.peek(&first, &dropped), RingReader::Peek::kReady);
  ASSERT_TRUE(pr.message(first, &m0));
  EXPECT_EQ(pr.for_each_ready(first, m0, 64, 2, [](const RingReader::Message&) {}), 7u) << "two slots: 4 + 3";
}

// Messages of 32..71 bytes on a 256-byte topic: a batch packs two or three a slot. Each comes out whole, in
// order, with its sequence, the batch's stamp, and 32-byte aligned as a single message is.
TEST(RingTest, BatchIsDeliveredInOrderWithEachSize) {
  RingFixture f(256, 64, true, 1);
  auto w = f.writer(true);
  auto r = f.reader(0);
  Batch batch(0, 40);
  EXPECT_EQ(w.write_batch(batch.spans, 7, 0ns), 40u);
  EXPECT_EQ(w.messages(), 40u);
  EXPECT_LE(w.head(), 20u) << "packed: at least two a slot";
  EXPECT_EQ(publisher_slot(f.segment.data(), f.g, 0)->messages.load(), 40u);
  RingReader::Message m;
  for (uint64_t i = 0; i < 40; ++i) {
    ASSERT_TRUE(next_message(r, &m)) << i;
    EXPECT_TRUE(holds_message(m, i)) << i;
    EXPECT_EQ(m.sequence, i + 1);
    EXPECT_EQ(m.publish_ns, 7u);
    EXPECT_EQ(reinterpret_cast<uintptr_t>(m.data) % kPayloadAlignment, 0u) << i;
  }
  EXPECT_FALSE(next_message(r, &m));
  EXPECT_EQ(r.read_position(), w.head());
}

// 64-byte messages on a 4 KiB topic: 60 a slot (a 256-byte size table, then one line each). A drain's run
// limit splits a slot; the next run goes on at the message after, and single publishes keep the sequence.
TEST(RingTest, PackedSlotsHoldOneLineAMessageAndRunsResumeInsideThem) {
  RingFixture f(4096, 8, true, 1);
  auto w = f.writer(true);
  auto r = f.reader(0);
  std::vector<std::array<uint64_t, 8>> storage(200);
  std::vector<std::span<const std::byte>> spans;
  for (uint64_t i = 0; i < storage.size(); ++i) {
    storage[i].fill(i * 0x9e3779b97f4a7c15ull);
    spans.push_back(std::as_bytes(std::span(storage[i])));
  }
  ASSERT_EQ(w.write_batch(spans, 0, 0ns), 200u);
  EXPECT_EQ(w.head(), 4u) << "60 + 60 + 60 + 20";
  write_u64(w, 12345);  // a single publish after the batch: message 201
  std::vector<uint64_t> seen;
  std::vector<std::size_t> runs;
  for (;;) {
    SlotHeader* first = nullptr;
    uint64_t dropped = 0;
    if (r.peek(&first, &dropped) != RingReader::Peek::kReady) break;
    RingReader::Message last{}, m0;
    ASSERT_TRUE(r.message(first, &m0));
    const std::size_t n = r.for_each_ready(first, m0, 50, 8, [&](const RingReader::Message& m) {
      uint64_t v[8];
      ASSERT_EQ(m.size, m.sequence <= 200 ? 64u : 8u);
      std::memcpy(v, m.data, m.size);
      if (m.sequence <= 200) {
        EXPECT_EQ(v[7], (m.sequence - 1) * 0x9e3779b97f4a7c15ull);
      }
      seen.push_back(m.sequence);
      last = m;
    });
    ASSERT_GT(n, 0u);
    runs.push_back(n);
    r.consume(last.position, last.next_sub, last.next_offset);
  }
  ASSERT_EQ(seen.size(), 201u);
  for (uint64_t i = 0; i < seen.size(); ++i) EXPECT_EQ(seen[i], i + 1);
  EXPECT_EQ(runs, (std::vector<std::size_t>{50, 50, 50, 50, 1}));
  EXPECT_EQ(w.messages(), 201u);
}

// A packed slot's messages each hold the slot: the writer may reuse it only once all are released.
TEST(RingTest, APackedSlotStaysHeldUntilEachOfItsMessagesIsReleased) {
  RingFixture f(256, 2, true, 1);
  auto w = f.writer(true);
  auto r = f.reader(0, 8);
  Batch batch(0, 6);  // 32..37 bytes: four in the first slot, two in the second
  ASSERT_EQ(w.write_batch(batch.spans, 0, 0ns), 6u);
  ASSERT_EQ(w.head(), 2u);
  std::vector<uint64_t> held;
  for (uint64_t i = 0; i < 4; ++i) {
    SlotHeader* slot = nullptr;
    uint64_t dropped = 0;
    RingReader::Message m;
    ASSERT_EQ(r.peek(&slot, &dropped), RingReader::Peek::kReady);
    ASSERT_TRUE(r.message(slot, &m));
    EXPECT_TRUE(holds_message(m, i));
    held.push_back(r.hold(m));
  }
  EXPECT_EQ(held, (std::vector<uint64_t>{0, 0, 0, 0}));
  EXPECT_EQ(r.read_position(), 1u) << "the whole first slot was taken";
  for (std::size_t i = 0; i < held.size(); ++i) {
    r.publish_cursor_idle();
    EXPECT_EQ(w.claim(0ns), nullptr) << "the first slot is still held " << held.size() - i << " times";
    r.release(held[i]);
  }
  r.publish_cursor_idle();
  EXPECT_NE(w.claim(0ns), nullptr);
}

// A lossy ring never packs (a reader lapped on a packed slot could not count what it lost): a reader of a
// lossy topic refuses a packed slot, and skipping it counts every message its table lists.
TEST(RingTest, ALossyReaderRefusesAPackedSlotAndCountsItsMessagesLost) {
  RingFixture f(256, 8, false, 1);
  auto w = f.writer(true);  // a writer that packs where the topic says lossy: a buggy one
  auto r = f.reader(0);
  Batch batch(0, 3);
  ASSERT_EQ(w.write_batch(batch.spans, 0, 0ns), 3u);
  ASSERT_EQ(w.head(), 1u) << "packed";
  SlotHeader* slot = nullptr;
  uint64_t dropped = 0;
  RingReader::Message m;
  ASSERT_EQ(r.peek(&slot, &dropped), RingReader::Peek::kReady);
  EXPECT_FALSE(r.message(slot, &m));
  EXPECT_EQ(r.skip_corrupt(slot), 3u);
  EXPECT_EQ(r.peek(&slot, &dropped), RingReader::Peek::kEmpty);
}

// A buggy writer's packed table: a count past the slot, or a size past its end, is refused (the reader
// skips the slot), never followed out of it.
TEST(RingTest, ACorruptPackedTableIsRefusedNotFollowed) {
  for (int corruption = 0; corruption < 3; ++corruption) {
    RingFixture f(256, 8, true, 1);
    auto w = f.writer(true);
    auto r = f.reader(0);
    Batch batch(0, 3);
    ASSERT_EQ(w.write_batch(batch.spans, 0, 0ns), 3u);
    ASSERT_EQ(w.head(), 1u);
    SlotHeader* slot = ring_slot(ring_base(f.segment.data(), f.g, 0), f.g, 0);
    std::byte* payload = slot_payload(slot);
    const uint32_t values[] = {0xffffffffu, 1000, 40};  // count; the last size; the slot's size
    if (corruption == 0) std::memcpy(payload, &values[0], 4);
    if (corruption == 1) std::memcpy(payload + 12, &values[1], 4);
    if (corruption == 2) slot->size = values[2];
    RingReader::Message m;
    SlotHeader* found = nullptr;
    uint64_t dropped = 0;
    std::size_t read = 0;
    while (r.peek(&found, &dropped) == RingReader::Peek::kReady && r.message(found, &m)) {
      EXPECT_GE(m.data, payload);
      EXPECT_LE(m.data + m.size, payload + f.g.max_message_size) << corruption;
      r.consume(m.position, m.next_sub, m.next_offset);
      ++read;
    }
    EXPECT_EQ(r.peek(&found, &dropped), RingReader::Peek::kReady) << "stopped at the corrupt message";
    EXPECT_LT(read, 3u) << corruption;
    // What is lost: the table's unread messages, or 1 where the count itself is garbage.
    EXPECT_EQ(r.skip_corrupt(found), corruption == 0 ? 1u : 3u - read) << corruption;
    EXPECT_EQ(r.peek(&found, &dropped), RingReader::Peek::kEmpty);
  }
}

TEST(RingTest, LosslessBatchStopsAtTheSlowestReaderAndSaysHowFarItGot) {
  RingFixture f(256, 8, true, 1);
  auto w = f.writer(true);
  auto r = f.reader(0);
  Batch batch(100, 20);  // 132..151 bytes: one a slot
  EXPECT_EQ(w.write_batch(batch.spans, 0, 0ns), 8u) << "a ring of 8, nobody reading: 8 fit";
  EXPECT_EQ(w.write_batch(std::span(batch.spans).subspan(8), 0, 1ms), 0u) << "full: nothing more";
  for (uint64_t i = 0; i < 3; ++i) take_u64(r);
  r.publish_cursor_idle();
  EXPECT_EQ(w.write_batch(std::span(batch.spans).subspan(8), 0, 0ns), 3u)
      << "three slots freed, three written";
}

TEST(RingTest, LossyBatchLargerThanTheRingCountsWhatTheReaderMissed) {
  RingFixture f(256, 8, false, 1);
  auto w = f.writer(false);
  auto r = f.reader(0);
  Batch batch(0, 100);
  EXPECT_EQ(w.write_batch(batch.spans, 0, 0ns), 100u) << "lossy never waits";
  SlotHeader* slot = nullptr;
  uint64_t dropped = 0, got = 0, next = 0;
  RingReader::Message m;
  while (r.peek(&slot, &dropped) == RingReader::Peek::kReady && r.message(slot, &m)) {
    uint64_t v = 0;
    std::memcpy(&v, m.data, sizeof v);
    EXPECT_GE(v, next);
    EXPECT_TRUE(holds_message(m, v));
    EXPECT_EQ(m.sequence, v + 1) << "lossy: never packed, one message a slot";
    next = v + 1;
    r.skip(), ++got;
  }
  EXPECT_EQ(got + dropped, 100u);
  EXPECT_EQ(next, 100u) << "the newest message is the last delivered";
}

TEST(RingTest, MultiThreadedBatchStress) {
#if defined(__SANITIZE_THREAD__) || defined(__SANITIZE_ADDRESS__)
  constexpr uint64_t kMessages = 20000;
#else
  constexpr uint64_t kMessages = 100000;
#endif
  RingFixture f(256, 16, true, 2);
  std::atomic<int> failures{0};
  auto read = [&](uint32_t s) { read_in_order(f, s, kMessages, failures, holds_message); };
  std::thread a(read, 0), b(read, 1);
  auto w = f.writer(true);
  for (uint64_t i = 0; i < kMessages;) {
    Batch batch(i,
                std::min<uint64_t>(1 + i % 37, kMessages - i));  // batches of 1..37, larger than the ring too
    std::span<const std::span<const std::byte>> rest(batch.spans);
    while (!rest.empty()) {
      const std::size_t n = w.write_batch(rest, i, 30s);
      ASSERT_GT(n, 0u);
      rest = rest.subspan(n);
      i += n;
    }
  }
  a.join();
  b.join();
  EXPECT_EQ(failures.load(), 0);
}

// The daemon treats a cursor beyond head + 1 as corruption, and joiners and lapped readers start from head:
// so head may trail the newest committed message by at most one at every moment, also in the middle of a
// batch. Lossless, so that the writer never rewrites a slot the reader looks at (a lossy lap is a seqlock
// race by design, which ThreadSanitizer would report).
TEST(RingTest, BatchKeepsHeadWithinOneOfEveryCommittedMessage) {
#if defined(__SANITIZE_THREAD__) || defined(__SANITIZE_ADDRESS__)
  constexpr uint64_t kMessages = 50000;
#else
  constexpr uint64_t kMessages = 400000;
#endif
  RingFixture f(256, 256, true, 1);
  const PublisherSlot* slot_state = publisher_slot(f.segment.data(), f.g, 0);
  std::atomic<uint64_t> behind{0};
  std::thread reader([&] {
    auto r = f.reader(0);
    SlotHeader* slot = nullptr;
    uint64_t dropped = 0;
    for (uint64_t taken = 0; taken < kMessages;) {
      RingReader::Message m;
      if (r.peek(&slot, &dropped) != RingReader::Peek::kReady || !r.message(slot, &m)) {
        r.publish_cursor_idle();
        continue;
      }
      // Its slot's sequence is position + 1, committed. acquire: as a joining subscriber reads head.
      if (slot_state->head.load(std::memory_order_acquire) < m.position) behind.fetch_add(1);
      r.consume(m.position, m.next_sub, m.next_offset);
      r.publish_cursor();
      ++taken;
    }
  });
  auto w = f.writer(true);
  for (uint64_t i = 0; i < kMessages;) {
    Batch batch(i, std::min<uint64_t>(200, kMessages - i));  // most of the ring in one call
    std::span<const std::span<const std::byte>> rest(batch.spans);
    while (!rest.empty()) {
      const std::size_t n = w.write_batch(rest, 0, 30s);
      ASSERT_GT(n, 0u);
      rest = rest.subspan(n);
      i += n;
    }
  }
  reader.join();
  EXPECT_EQ(behind.load(), 0u) << "a committed message whose position head had not reached";
}

// Subscriber::take and WaitSet::wait count a sleep that ends in `false` as a wake-up nobody made
// (late_wakeups): `false` must mean that the whole timeout ran, also where futex_wait_any caps a sleep.
TEST(FutexTest, AWaitReportsATimeoutOnlyWhenTheWholeTimeRan) {
  std::atomic<uint32_t> word{7};
  const std::vector<FutexWaitTarget> one{{&word, 7}};
  const auto start = std::chrono::steady_clock::now();
  // With futex_waitv it runs out (false); without (Linux < 5.16, some seccomp filters) a 1 ms cap ends it
  // early (true). Either way `false` must mean the whole 20 ms.
  if (!futex_wait_any(one, 20ms)) {
    EXPECT_GE(std::chrono::steady_clock::now() - start, 20ms);
  }
  EXPECT_TRUE(futex_wait_any(std::vector<FutexWaitTarget>{{&word, 8}}, 20ms)) << "the word differs";
  EXPECT_FALSE(futex_wait(&word, 7, 5ms));
  EXPECT_TRUE(futex_wait(&word, 8, 5ms)) << "the word differs";
  // Beyond the kernel's limit of words the sleep is capped at 1 ms: a 20 ms wait did not run out.
  std::vector<std::atomic<uint32_t>> words(kMaxWaitTargets + 2);
  std::vector<FutexWaitTarget> many;
  for (auto& w : words) many.push_back({&w, 0});
  EXPECT_TRUE(futex_wait_any(many, 20ms));
  EXPECT_FALSE(futex_wait_any(many, 500us)) << "a timeout below the cap runs in full";
}

}  // namespace
}  // namespace shmbus::shm

// The store-load ordering between a publisher's commit and a reader going to sleep, paid by the sleeper.
//
// A commit stores a slot's sequence and then loads the topic's sleeper count and wake word; a reader about
// to sleep, counted among the sleepers, arms the wake word (a locked RMW) and then looks for data once
// more. Each side needs its store ordered before its load (Dekker), or both can miss the other: the reader
// sleeps on a message nobody wakes it for. A seq_cst store in every commit orders it, but on x86 that is a
// locked instruction that waits for the slot's cache line to come back from the reader's core: a full
// cross-core round trip per message, the largest cost of streaming.
//
// So the orders are asymmetric (membarrier(2), as liburcu and folly do): a publisher whose process is
// registered commits with a plain release store and a compiler barrier; a reader going to sleep, after it
// armed the wake word, runs membarrier(MEMBARRIER_CMD_GLOBAL_EXPEDITED), which executes a full memory barrier
// on every CPU that runs a registered process. Either a publisher's loads of the count and the word come
// after that barrier and see them, or its earlier store was drained by it and the reader's re-check sees the
// message. Processes that cannot register commit with a seq_cst store, as before; a reader whose membarrier
// fails sleeps at most kUnfencedSleepCap at a time, so a missed wake-up costs that much and no more.
//
// The membarrier is not free: its IPI to a CPU running a registered process costs 50-90 us on a VM (1-2 us
// when the other CPU is idle), more than the rest of a blocking request/response round trip. So a wait's
// first sleep goes without it (SleepFence), capped at kFirstSleepCap: a reply that comes within it costs no
// IPI, and a wake-up missed there (the writer's commit still in its store buffer while both sides look) costs
// at most the cap and is counted (Subscriber::late_wakeups; measured on a 2-vCPU VM: one late wake-up in 2
// of 3 blocking ping-pong runs of about 40 000 sleeps each). Only a wait that outlasts the cap pays the
// membarrier: Subscriber::take and WaitSet::wait before every further sleep (200 ms each); an EventSource's
// thread once, as it keeps its sleeper counts for the whole wait. That thread cannot look for data itself: it
// finds a missed commit by the ring heads its owner noted when arming it (bus/event_source.cpp).
#pragma once

#include <chrono>

namespace shmbus::shm {

inline constexpr std::chrono::milliseconds kUnfencedSleepCap{1};
// The cap of a wait's first, unfenced sleep (SleepFence). Not shorter: a futex timeout due before the
// kernel's next tick has the CPU's timer programmed for it (on a VM an exit to the hypervisor); measured on a
// 2-vCPU VM (HZ 250), a 1 or 3 ms timeout added 5 us to a blocking round trip of 15 us, 4 ms and more
// nothing.
inline constexpr std::chrono::milliseconds kFirstSleepCap{10};

// Registers this process for the cheap commit (MEMBARRIER_CMD_REGISTER_GLOBAL_EXPEDITED; idempotent, one
// system call). Returns whether the kernel accepted: only then may its writers commit without a full fence.
bool register_cheap_commits();

// The sleeper's half: a seq_cst fence, then a full barrier on every CPU running a registered process. Call it
// after incrementing the sleeper counts and before the last look for data. Returns false when membarrier is
// unavailable: the caller must then cap its sleep at kUnfencedSleepCap.
bool fence_before_sleep();

// The sleeps of one wait: the first unfenced and short, the later ones fenced (see above).
class SleepFence {
 public:
  // Call after incrementing the sleeper counts and before the last look for data. Returns the longest the
  // coming sleep may last: kFirstSleepCap the first time, then `fenced_cap`, or kUnfencedSleepCap when the
  // membarrier failed.
  std::chrono::nanoseconds before_sleep(std::chrono::nanoseconds fenced_cap);

 private:
  bool first_ = true;
};

}  // namespace shmbus::shm

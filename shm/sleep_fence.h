// The store-load ordering between a publisher's commit and a reader going to sleep, paid by the sleeper.
//
// A commit stores a slot's sequence and then loads the topic's sleeper count; a reader about to sleep
// increments that count and then looks for data once more. Each side needs its store ordered before its load
// (Dekker), or both can miss the other: the reader sleeps on a message nobody wakes it for. A seq_cst store
// in every commit orders it, but on x86 that is a locked instruction that waits for the slot's cache line to
// come back from the reader's core: a full cross-core round trip per message, the largest cost of streaming.
//
// So the orders are asymmetric (membarrier(2), as liburcu and folly do): a publisher whose process is
// registered commits with a plain release store and a compiler barrier; a reader going to sleep, after its
// seq_cst increment, runs membarrier(MEMBARRIER_CMD_GLOBAL_EXPEDITED), which executes a full memory barrier
// on every CPU that runs a registered process. Either a publisher's load of the count comes after that
// barrier and sees the increment, or its earlier store was drained by it and the reader's re-check sees the
// message. Processes that cannot register commit with a seq_cst store, as before; a reader whose membarrier
// fails sleeps at most kUnfencedSleepCap at a time, so a missed wake-up costs that much and no more.
#pragma once

#include <chrono>

namespace shmbus::shm {

inline constexpr std::chrono::milliseconds kUnfencedSleepCap{1};

// Registers this process for the cheap commit (MEMBARRIER_CMD_REGISTER_GLOBAL_EXPEDITED; idempotent, one
// system call). Returns whether the kernel accepted: only then may its writers commit without a full fence.
bool register_cheap_commits();

// The sleeper's half: a seq_cst fence, then a full barrier on every CPU running a registered process. Call it
// after incrementing the sleeper counts and before the last look for data. Returns false when membarrier is
// unavailable: the caller must then cap its sleep at kUnfencedSleepCap.
bool fence_before_sleep();

}  // namespace shmbus::shm

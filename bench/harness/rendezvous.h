#pragma once
// State shared by the two processes of every bench, outside any transport under test.

#include <sched.h>

#include <cstddef>
#include <cstdint>

#include "cache_line.h"
#include "cache_line_channel.h"

namespace bench {

enum class Side { a, b };  // a = parent, measuring; b = child, echoing or receiving

// Lives in a SharedRegion made before fork. Each field has a single writer.
struct ControlBlock {
  PingPongLines probe_before;  // fresh lines per probe: sequences on a line must not repeat
  PingPongLines probe_after;
  PaddedCounter a_arrivals;         // written by A: barriers A has reached
  PaddedCounter b_arrivals;         // written by B
  PaddedCounter stream_elapsed_ns;  // written by B before its last barrier, read by A after it
};
static_assert(offsetof(ControlBlock, a_arrivals) == 4 * kCacheLine, "layout: one counter per line");
static_assert(offsetof(ControlBlock, stream_elapsed_ns) == 6 * kCacheLine, "layout: one counter per line");

// Both sides call this the same number of times; each call returns once the other side has
// made the same call. Used only between phases, so it yields while waiting: a library thread
// pinned to the same CPU (ZeroMQ's I/O thread) may need the CPU to finish the previous phase.
inline void rendezvous(ControlBlock& control, Side side) {
  std::atomic<uint64_t>& mine = (side == Side::a ? control.a_arrivals : control.b_arrivals).value;
  std::atomic<uint64_t>& theirs = (side == Side::a ? control.b_arrivals : control.a_arrivals).value;
  // Single writer, so load + store is an increment. Release: pairs with the acquire below on
  // the other side, publishing everything this side wrote in the phase that just ended.
  const uint64_t arrival = mine.load(std::memory_order_relaxed) + 1;
  mine.store(arrival, std::memory_order_release);
  while (theirs.load(std::memory_order_acquire) < arrival) sched_yield();
}

}  // namespace bench

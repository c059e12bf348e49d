// How many slots a benchmark ring gets: the same rule for every ring-based peer, so that each has the same
// messages in flight. Up to 16 MiB of slots, at most 1024 (plenty to keep a stream flowing) and at least 4,
// so even 4 MiB messages can be in flight while the previous one is copied out.
#pragma once

#include <algorithm>
#include <bit>
#include <cstddef>

namespace bench {

inline std::size_t ring_slots_for(std::size_t slot_bytes) {
  constexpr std::size_t kRingBudgetBytes = 16u << 20;
  return std::clamp<std::size_t>(std::bit_floor(kRingBudgetBytes / slot_bytes), 4, 1024);
}

}  // namespace bench

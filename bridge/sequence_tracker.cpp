#include "bridge/sequence_tracker.h"

#include <algorithm>

namespace shmbus::bridge {

SequenceTracker::TopicState* SequenceTracker::stream(uint64_t origin, uint64_t epoch, std::string_view topic,
                                                     std::chrono::steady_clock::time_point now) {
  auto [at, added] = origins_.try_emplace(origin);
  if (added) {
    // An origin seen before may have been evicted: its epochs up to evicted_max_epoch_ may have delivered.
    at->second.epoch = at->second.max_epoch = epoch;
    at->second.fill_below_first = !forgot_origins_ || epoch > evicted_max_epoch_;
    if (origins_.size() > kMaxOrigins) {
      auto quietest = origins_.end();
      for (auto i = origins_.begin(); i != origins_.end(); ++i) {
        if (i != at && (quietest == origins_.end() || i->second.heard < quietest->second.heard)) quietest = i;
      }
      forgot_origins_ = true;
      evicted_max_epoch_ = std::max(evicted_max_epoch_, quietest->second.max_epoch);
      origins_.erase(quietest);  // does not move `at`: map nodes stay where they are
    }
  }
  Origin& o = at->second;
  if (epoch < o.epoch && now - o.heard < kEpochQuiet) return nullptr;
  o.heard = now;
  if (epoch != o.epoch) {
    // The origin's bridge restarted: its sequences start again at 1. Streams keep their loss totals. An
    // epoch never seen before delivered nothing yet: below a stream's first message may come late. One seen
    // before (back to an older epoch, or again to a newer one) may have: nothing below the first is late.
    o.fill_below_first = epoch > o.max_epoch;
    o.max_epoch = std::max(o.max_epoch, epoch);
    o.epoch = epoch;
    for (auto& [name, state] : o.topics) {
      state.fresh = true;
      state.fill_below_first = o.fill_below_first;
    }
  }
  auto it = o.topics.find(topic);
  if (it == o.topics.end()) {
    if (o.topics.size() >= kMaxTopicsPerOrigin) {
      o.topics.clear();
      o.fill_below_first = false;  // the streams forgotten may come back (until a new epoch)
    }
    it = o.topics.emplace(std::string(topic), TopicState{.fill_below_first = o.fill_below_first}).first;
  }
  return &it->second;
}

SequenceTracker::Outcome SequenceTracker::observe(TopicState& t, uint64_t sequence) {
  // The common case: next in order, no holes (a late join keeps a hole below its first message for the next
  // kLateWindow messages, which then take the path below, as cheap but for a branch).
  // `sequence != 0`: after UINT64_MAX, last + 1 wraps to 0, which is no successor (a duplicate, below).
  if (sequence == t.last + 1 && sequence != 0 && !t.fresh && t.holes.empty()) {
    t.last = sequence;
    ++t.delivered;
    return {Verdict::kDeliver, 0};
  }
  if (t.fresh) {
    // First message of this stream (or epoch) seen here: what came before it was never ours to miss, but
    // may still come along a slower path (an uncounted hole).
    t.fresh = false;
    t.holes.clear();
    t.last = sequence;
    ++t.delivered;
    if (sequence > 1 && t.fill_below_first)
      add_hole(t, {sequence >= kLateWindow ? sequence - kLateWindow + 1 : 1, sequence - 1, false});
    return {Verdict::kDeliver, 0};
  }
  // A jump of more than kRestartJump either way is no loss and no late copy: a stream that started again
  // without a new epoch, or a forged sequence (UINT64_MAX would otherwise make every later message a
  // duplicate, and count 2^64 lost). Start the stream afresh from it, counting nothing.
  if (sequence > t.last ? sequence - t.last > kRestartJump : t.last - sequence > kRestartJump) {
    t.holes.clear();
    t.last = sequence;
    ++t.delivered;
    return {Verdict::kDeliver, 0};
  }
  if (sequence <= t.last) return t.holes.empty() ? Outcome{Verdict::kDuplicate, 0} : fill_hole(t, sequence);
  const uint64_t missing = sequence - t.last - 1;
  if (missing) add_hole(t, {t.last + 1, sequence - 1, true});
  t.last = sequence;
  t.missing += missing;
  ++t.delivered;
  // Holes fall out of the window as `last` moves on: their sequences are given up for good.
  const uint64_t floor = sequence > kLateWindow ? sequence - kLateWindow : 0;
  while (!t.holes.empty() && t.holes.front().last <= floor) t.holes.erase(t.holes.begin());
  if (!t.holes.empty() && t.holes.front().first <= floor) t.holes.front().first = floor + 1;
  return {Verdict::kDeliver, missing};
}

void SequenceTracker::add_hole(TopicState& t, Hole h) {
  // Holes are added in ascending order: each lies above every earlier one (it starts past the old `last`).
  t.holes.push_back(h);
  if (t.holes.size() > kMaxHoles) t.holes.erase(t.holes.begin());  // the oldest is given up
}

SequenceTracker::Outcome SequenceTracker::fill_hole(TopicState& t, uint64_t sequence) {
  // Newest holes first: a late copy most likely fills the gap just made.
  for (auto it = t.holes.end(); it != t.holes.begin();) {
    --it;
    if (sequence > it->last) break;  // above this hole and below the next: delivered already
    if (sequence < it->first) continue;
    const bool filled_gap = it->counted;
    if (filled_gap) --t.missing;
    ++t.delivered;
    if (it->first == it->last) {
      t.holes.erase(it);
    } else if (sequence == it->first) {
      ++it->first;
    } else if (sequence == it->last) {
      --it->last;
    } else {
      const Hole above{sequence + 1, it->last, it->counted};
      it->last = sequence - 1;
      t.holes.insert(it + 1, above);
      if (t.holes.size() > kMaxHoles) t.holes.erase(t.holes.begin());  // the bound: the oldest is given up
    }
    return {Verdict::kLate, 0, filled_gap};
  }
  return {Verdict::kDuplicate, 0};
}

void SequenceTracker::for_each(
    const std::function<void(uint64_t, uint64_t, const std::string&, const TopicState&)>& f) const {
  for (const auto& [origin, o] : origins_) {
    for (const auto& [topic, state] : o.topics) f(origin, o.epoch, topic, state);
  }
}

}  // namespace shmbus::bridge

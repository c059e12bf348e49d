#include "bridge/sequence_tracker.h"

namespace shmbus::bridge {

SequenceTracker::TopicState* SequenceTracker::stream(uint64_t origin, uint64_t epoch, std::string_view topic,
                                                     std::chrono::steady_clock::time_point now) {
  auto [at, added] = origins_.try_emplace(origin);
  if (added && origins_.size() > kMaxOrigins) {
    auto quietest = origins_.end();
    for (auto i = origins_.begin(); i != origins_.end(); ++i) {
      if (i != at && (quietest == origins_.end() || i->second.heard < quietest->second.heard)) quietest = i;
    }
    origins_.erase(quietest);  // does not move `at`: map nodes stay where they are
  }
  Origin& o = at->second;
  if (epoch < o.epoch && now - o.heard < kEpochQuiet) return nullptr;
  o.heard = now;
  if (epoch != o.epoch) {
    // The origin's bridge restarted: its sequences start again at 1. Streams keep their loss totals.
    o.epoch = epoch;
    for (auto& [name, state] : o.topics) state.fresh = true;
  }
  auto it = o.topics.find(topic);
  if (it == o.topics.end()) {
    if (o.topics.size() >= kMaxTopicsPerOrigin) o.topics.clear();
    it = o.topics.emplace(std::string(topic), TopicState{}).first;
  }
  return &it->second;
}

SequenceTracker::Outcome SequenceTracker::observe(TopicState& t, uint64_t sequence) {
  if (t.fresh) {
    // First message of this stream (or epoch) seen here: what came before it was never ours to miss.
    t.fresh = false;
    t.last = sequence;
    ++t.delivered;
    return {Verdict::kDeliver, 0};
  }
  if (sequence <= t.last) return {Verdict::kDuplicate, 0};
  const uint64_t missing = sequence - t.last - 1;
  t.last = sequence;
  t.missing += missing;
  ++t.delivered;
  return {Verdict::kDeliver, missing};
}

void SequenceTracker::for_each(
    const std::function<void(uint64_t, uint64_t, const std::string&, const TopicState&)>& f) const {
  for (const auto& [origin, o] : origins_) {
    for (const auto& [topic, state] : o.topics) f(origin, o.epoch, topic, state);
  }
}

}  // namespace shmbus::bridge

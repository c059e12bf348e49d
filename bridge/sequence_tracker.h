// Duplicate suppression and loss accounting for what arrives from the network, keyed by origin and topic.
// A message is new when its sequence is above the last one delivered for its (origin, epoch, topic), or when
// it fills a hole: a sequence skipped earlier (a gap) or just below the first one seen. Holes matter in a
// mesh: when a faster path (a direct link) starts carrying a topic that a slower one (a relay) already
// carries, its first message overtakes the slower path's copies of the messages before it, which only the
// slower path carries. Those arrive late and out of order, and are delivered once, not dropped as duplicates.
// A newer epoch (the origin bridge restarted) starts the origin's topics afresh. An older one is stale (late
// copies of the previous run) while the current epoch is heard from; after kEpochQuiet without it, an older
// epoch is taken as a restart too (the origin's clock stepped back, or a forged epoch poisoned the current
// one), so that an origin is never shut out for good. A stream the tracker forgot at its bounds (origins,
// topics per origin) or whose origin went back to an older epoch starts afresh at its next message: what it
// delivered before that is not remembered, and copies of it arriving later (above that message, or in a gap
// after it) are delivered again. Owned by one thread.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace shmbus::bridge {

class SequenceTracker {
 public:
  // kLate: delivered although a later sequence was delivered before it (it fills a hole).
  enum class Verdict { kDeliver, kLate, kDuplicate, kStale };
  struct Outcome {
    Verdict verdict = Verdict::kDeliver;
    uint64_t missing = 0;     // sequences skipped just before this one (a gap), when delivered
    bool filled_gap = false;  // kLate: the sequence was one of a gap's (counted in `missing` before)
  };

  // Sequences first..last not delivered yet. `counted`: they are in `missing` (a gap), not below the first
  // sequence seen (which never were ours to miss).
  struct Hole {
    uint64_t first = 0;
    uint64_t last = 0;
    bool counted = false;
  };

  struct TopicState {
    uint64_t last = 0;     // highest delivered sequence
    uint64_t missing = 0;  // skipped and not (yet) filled late
    uint64_t delivered = 0;
    bool fresh = true;  // no message of the current epoch seen yet
    // On the first message of an epoch, may the sequences below it still come late? Not when this stream may
    // have delivered them before and forgotten it (its origin's epoch was seen before, or the tracker forgot
    // streams or origins at its bounds): they would be delivered twice. A new epoch turns it on again.
    bool fill_below_first = true;
    std::vector<Hole> holes;  // ascending, at most kMaxHoles, all above `last` - kLateWindow
  };

  // The stream of (origin, topic) for a message of `epoch`, created on first sight; nullptr when `epoch` is
  // older than the origin's (stale). A newer epoch starts the origin's streams afresh. The pointer stays
  // valid until the next call (which may forget streams: kMaxOrigins, kMaxTopicsPerOrigin). One lookup serves
  // a whole batch: its records share origin, epoch and topic.
  TopicState* stream(uint64_t origin, uint64_t epoch, std::string_view topic,
                     std::chrono::steady_clock::time_point now = std::chrono::steady_clock::now());
  static constexpr std::chrono::seconds kEpochQuiet{10};
  // Origins and topics come from peers' frames: bounded, so that forged ones cannot grow memory without end.
  // Past kMaxOrigins the origin heard from least recently is forgotten; past kMaxTopicsPerOrigin an origin's
  // streams start afresh (their loss totals with them).
  static constexpr std::size_t kMaxOrigins = 1024;
  static constexpr std::size_t kMaxTopicsPerOrigin = 16384;
  // A late copy is delivered while it is less than kLateWindow below the highest sequence; a stream keeps at
  // most kMaxHoles holes (past that the oldest is given up: its sequences stay missing). Later copies are
  // duplicates.
  static constexpr uint64_t kLateWindow = uint64_t{1} << 16;
  static constexpr std::size_t kMaxHoles = 32;
  // A sequence this far from the last, either way, restarts the stream (see observe).
  static constexpr uint64_t kRestartJump = uint64_t{1} << 32;
  // Classifies `sequence` within `s` (from stream()) and records it.
  static Outcome observe(TopicState& s, uint64_t sequence);
  // stream() and observe() in one call.
  Outcome observe(uint64_t origin, uint64_t epoch, std::string_view topic, uint64_t sequence) {
    TopicState* s = stream(origin, epoch, topic);
    return s == nullptr ? Outcome{Verdict::kStale, 0} : observe(*s, sequence);
  }
  // Calls f(origin, epoch, topic, state) for every tracked stream.
  void for_each(
      const std::function<void(uint64_t, uint64_t, const std::string&, const TopicState&)>& f) const;

 private:
  // Heterogeneous lookup: the hot path looks topics up by string_view without building a std::string.
  struct Hash {
    using is_transparent = void;
    std::size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
  };
  struct Origin {
    uint64_t epoch = 0;
    uint64_t max_epoch = 0;                       // the newest epoch seen: a newer one delivered nothing yet
    bool fill_below_first = true;                 // TopicState::fill_below_first for this origin's streams
    std::chrono::steady_clock::time_point heard;  // when a message of `epoch` last came
    std::unordered_map<std::string, TopicState, Hash, std::equal_to<>> topics;
  };
  std::unordered_map<uint64_t, Origin> origins_;
  bool forgot_origins_ = false;     // an origin was evicted (kMaxOrigins): a "new" one may be one seen before
  uint64_t evicted_max_epoch_ = 0;  // the newest epoch of an evicted origin

  static void add_hole(TopicState& s, Hole h);
  static Outcome fill_hole(TopicState& s, uint64_t sequence);
};

}  // namespace shmbus::bridge

// Queueing metrics of a topic, over a sliding window. Each subscriber is a queue: arrivals are the messages
// published that it will read, departures its takes (and drops), its queue the messages published but not
// yet taken. The daemon reads the shared counters every kMetricsSampleNs (TopicRegistry::sample_metrics) and
// hands them here; these classes keep the samples of the last kMetricsWindowNs and turn them into rates,
// queue lengths and times (`shmbus stats`: [topic.metrics], [topic.subscriber.metrics]).
#pragma once

#include <cstdint>
#include <deque>
#include <utility>

#include "daemon/toml_table_fwd.h"

namespace shmbus::daemon {

constexpr uint64_t kMetricsWindowNs = 10'000'000'000ull;
constexpr uint64_t kMetricsSampleNs = 100'000'000ull;

// What the daemon read of one subscriber for one sample: its cursors first, then its counters, then the
// heads (TopicRegistry::sample_metrics says why in that order).
struct SubscriberReading {
  uint64_t taken = 0;
  uint64_t dropped = 0;
  uint64_t held = 0;  // samples taken and still held by the program
  uint64_t latency_sum_ns = 0;
  uint64_t latency_samples = 0;
  uint64_t heads = 0;  // messages committed so far by the topic's rings that are not free
  uint64_t upper = 0;  // messages from its cursors to the heads: its backlog is at most this
  int64_t slack = 0;   // how far the counters may disagree with the heads before re-calibrating
};

class SubscriberWindow {
 public:
  // Calibrated from its cursors at the first sample (an adopted subscriber's start is unknown).
  SubscriberWindow() = default;
  // A subscriber the daemon just placed, whose start positions hold `starts` messages before them in all.
  static SubscriberWindow starting_after(uint64_t starts);

  // A ring with `messages` committed was freed: they leave the sum of heads, so its arrival count stays put.
  void ring_freed(uint64_t messages) { arrival_offset_ += static_cast<int64_t>(messages); }
  // Adds the sample `r` read at `now_ns` and forgets samples that left the window.
  void add(const SubscriberReading& r, uint64_t now_ns);
  bool empty() const { return points_.empty(); }
  // The metrics over the window (zeros until there are two samples).
  toml::table report() const;

 private:
  // One sample. Everything is cumulative, so a window's figures are differences between its newest and its
  // oldest sample.
  struct Point {
    uint64_t at_ns = 0;    // steady clock
    uint64_t arrived = 0;  // messages that became readable for the subscriber (from its start positions on)
    uint64_t taken = 0;
    uint64_t dropped = 0;
    uint64_t latency_sum_ns = 0;  // its sampled publish -> take latencies (SubscriberCore::sample_latency)
    uint64_t latency_samples = 0;
    uint64_t backlog = 0;     // arrived - taken - dropped, at at_ns
    uint64_t held = 0;        // samples held (taken, still being processed if the program keeps them)
    double backlog_area = 0;  // integral of backlog over time (message-seconds; trapezoids between samples)
    double system_area = 0;   // the same for backlog + held
    double busy_s = 0;        // time in intervals the subscriber never ran out of messages (see add)
    uint64_t busy_taken = 0;  // takes within those intervals
  };

  // arrived = heads + arrival_offset_. Set exactly when the daemon places the subscriber's start positions;
  // kept continuous when a ring is freed (its head leaves the sum).
  int64_t arrival_offset_ = 0;
  bool calibrated_ = false;   // false: derive the offset from the cursors at the next sample
  std::deque<Point> points_;  // oldest first
};

// The messages published to a topic, over the window.
class PublishedWindow {
 public:
  // `messages` were committed to the topic so far, at `now_ns`.
  void add(uint64_t now_ns, uint64_t messages);
  // Messages published per second over the window (each subscriber's arrival_rate counts only what it will
  // read: the same once it has been attached for a window).
  toml::table report() const;

 private:
  std::deque<std::pair<uint64_t, uint64_t>> samples_;  // (steady ns, messages), oldest first
};

}  // namespace shmbus::daemon

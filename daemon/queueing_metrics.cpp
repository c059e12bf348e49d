#include "daemon/queueing_metrics.h"

#include <toml++/toml.h>

#include <algorithm>
#include <cmath>

namespace shmbus::daemon {
namespace {

double per(double num, double den) {
  return den > 0 ? num / den : 0.0;
}

// Counters only grow within a window, but a difference is never allowed to wrap.
uint64_t delta(uint64_t later, uint64_t earlier) {
  return later > earlier ? later - earlier : 0;
}

}  // namespace

SubscriberWindow SubscriberWindow::starting_after(uint64_t starts) {
  // The reader's position in ring p is start_p + what it took or dropped there, so its backlog is
  // sum(head_p) - sum(start_p) - taken - dropped. (Rings handed out later start it at 0.)
  SubscriberWindow w;
  w.arrival_offset_ = -static_cast<int64_t>(starts);
  w.calibrated_ = true;
  return w;
}

void SubscriberWindow::add(const SubscriberReading& r, uint64_t now_ns) {
  const auto upper = static_cast<int64_t>(r.upper);
  int64_t backlog =
      static_cast<int64_t>(r.heads) + arrival_offset_ - static_cast<int64_t>(r.taken + r.dropped);
  if (!calibrated_ || backlog < -r.slack || backlog > upper + r.slack) {
    // An adopted subscriber, a client whose counters do not start at 0 (it re-opened the topic and carries
    // its totals over), or a ring freed before this subscriber drained it: start again from the cursor
    // estimate (cursors lag the read positions by up to a quarter ring, and count held samples).
    const int64_t estimate = std::max<int64_t>(0, upper - static_cast<int64_t>(r.held));
    arrival_offset_ += estimate - backlog;
    backlog = estimate;
    calibrated_ = true;
    points_.clear();
  }
  Point point;
  point.at_ns = now_ns;
  point.taken = r.taken;
  point.dropped = r.dropped;
  point.backlog = static_cast<uint64_t>(std::clamp<int64_t>(backlog, 0, upper));
  point.arrived = r.taken + r.dropped + static_cast<uint64_t>(std::max<int64_t>(backlog, 0));
  point.latency_sum_ns = r.latency_sum_ns;
  point.latency_samples = r.latency_samples;
  point.held = r.held;
  if (!points_.empty()) {
    const Point& last = points_.back();
    const double dt = static_cast<double>(now_ns - last.at_ns) / 1e9;
    const auto backlog_then = static_cast<double>(last.backlog),
               backlog_now = static_cast<double>(point.backlog);
    const auto held_then = static_cast<double>(last.held), held_now = static_cast<double>(r.held);
    point.backlog_area = last.backlog_area + 0.5 * (backlog_then + backlog_now) * dt;
    point.system_area = last.system_area + 0.5 * (backlog_then + held_then + backlog_now + held_now) * dt;
    // The interval began with more messages waiting than the subscriber took during it: it never ran out of
    // messages, so its take rate there is its service rate. (Merely "backlogged at both ends" would let it
    // idle in between and drag the estimate down towards the arrival rate.)
    const uint64_t took = delta(r.taken, last.taken);
    const bool busy = last.backlog > took;
    point.busy_s = last.busy_s + (busy ? dt : 0.0);
    point.busy_taken = last.busy_taken + (busy ? took : 0);
    // Monotonic for the window's differences, whatever a clamp did to this sample's backlog.
    point.arrived = std::max(point.arrived, last.arrived);
  }
  points_.push_back(point);
  while (points_.size() > 2 && now_ns - points_[1].at_ns >= kMetricsWindowNs) points_.pop_front();
}

toml::table SubscriberWindow::report() const {
  Point first, last;
  if (points_.size() >= 2) {
    first = points_.front();
    last = points_.back();
  }
  const double dt = static_cast<double>(last.at_ns - first.at_ns) / 1e9;
  const double lambda = per(static_cast<double>(delta(last.arrived, first.arrived)), dt);
  const double taken = static_cast<double>(delta(last.taken, first.taken));
  const double busy_s = last.busy_s - first.busy_s;
  const double mu = per(static_cast<double>(delta(last.busy_taken, first.busy_taken)), busy_s);
  const double service_s = per(1.0, mu);
  const uint64_t latency_samples = delta(last.latency_samples, first.latency_samples);
  const double wait_s = per(static_cast<double>(delta(last.latency_sum_ns, first.latency_sum_ns)) / 1e9,
                            static_cast<double>(latency_samples));
  const double l = per(last.backlog_area - first.backlog_area, dt);
  const double little = lambda * wait_s;
  return toml::table{{"window_s", dt},
                     {"arrival_rate", lambda},
                     {"throughput", per(taken, dt)},
                     {"drop_rate", per(static_cast<double>(delta(last.dropped, first.dropped)), dt)},
                     {"service_rate", mu},
                     {"busy_s", busy_s},
                     {"utilisation", per(lambda, mu)},
                     {"queue_length", l},
                     {"backlog", static_cast<int64_t>(points_.empty() ? 0 : points_.back().backlog)},
                     {"in_system", per(last.system_area - first.system_area, dt)},
                     {"waiting_time_s", wait_s},
                     {"latency_samples", static_cast<int64_t>(latency_samples)},
                     {"service_time_s", service_s},
                     {"sojourn_time_s", wait_s + service_s},
                     {"littles_law_lambda_w", little},
                     {"littles_law_error", per(std::abs(l - little), std::max(l, little))}};
}

void PublishedWindow::add(uint64_t now_ns, uint64_t messages) {
  samples_.emplace_back(now_ns, messages);
  while (samples_.size() > 2 && now_ns - samples_[1].first >= kMetricsWindowNs) samples_.pop_front();
}

toml::table PublishedWindow::report() const {
  const bool two = samples_.size() >= 2;
  const double dt = two ? static_cast<double>(samples_.back().first - samples_.front().first) / 1e9 : 0.0;
  const double published =
      two ? static_cast<double>(delta(samples_.back().second, samples_.front().second)) : 0.0;
  return toml::table{{"window_s", dt}, {"arrival_rate", per(published, dt)}};
}

}  // namespace shmbus::daemon

#pragma once
// Percentiles of a set of latency samples.

#include <algorithm>
#include <cstdint>
#include <stdexcept>
#include <vector>

namespace bench {

struct LatencyStats {
  uint64_t p50_ns = 0;
  uint64_t p90_ns = 0;
  uint64_t p99_ns = 0;
  uint64_t p999_ns = 0;
  uint64_t max_ns = 0;
};

// Nearest-rank percentile of sorted samples: the smallest sample that at least
// `per_mille`/1000 of all samples are less than or equal to. No interpolation, so every
// reported figure is a latency that was actually observed.
inline uint64_t nearest_rank(const std::vector<uint64_t>& sorted, unsigned per_mille) {
  const size_t n = sorted.size();
  size_t rank = (n * per_mille + 999) / 1000;  // ceil(n * p)
  if (rank == 0) rank = 1;
  return sorted[rank - 1];
}

// Takes the samples by value because it sorts them.
// REQUIRES: samples is not empty.
inline LatencyStats summarize_latencies(std::vector<uint64_t> samples) {
  if (samples.empty()) throw std::invalid_argument("no latency samples to summarize");
  std::sort(samples.begin(), samples.end());
  LatencyStats stats;
  stats.p50_ns = nearest_rank(samples, 500);
  stats.p90_ns = nearest_rank(samples, 900);
  stats.p99_ns = nearest_rank(samples, 990);
  stats.p999_ns = nearest_rank(samples, 999);
  stats.max_ns = samples.back();
  return stats;
}

}  // namespace bench

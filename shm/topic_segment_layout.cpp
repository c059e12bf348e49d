#include "shm/topic_segment_layout.h"

#include <algorithm>
#include <bit>
#include <chrono>
#include <cstring>

namespace shmbus::shm {
namespace {

constexpr uint64_t round_up(uint64_t v, uint64_t to) {
  return (v + to - 1) / to * to;
}

bool fail(std::string* error, std::string message) {
  if (error) *error = std::move(message);
  return false;
}

}  // namespace

std::optional<TopicGeometry> compute_topic_geometry(uint32_t max_message_size, uint32_t depth,
                                                    uint32_t max_publishers, uint32_t max_subscribers,
                                                    std::string* error) {
  if (max_message_size == 0 || max_message_size > kMaxMessageSizeLimit) {
    fail(error, "max_message_size must be 1.." + std::to_string(kMaxMessageSizeLimit));
    return std::nullopt;
  }
  if (depth < 2 || depth > kMaxDepthLimit || !std::has_single_bit(depth)) {
    fail(error, "depth must be a power of two in 2.." + std::to_string(kMaxDepthLimit));
    return std::nullopt;
  }
  if (max_publishers == 0 || max_publishers > kMaxPublishersLimit) {
    fail(error, "max_publishers must be 1.." + std::to_string(kMaxPublishersLimit));
    return std::nullopt;
  }
  if (max_subscribers == 0 || max_subscribers > kMaxSubscribersLimit) {
    fail(error, "max_subscribers must be 1.." + std::to_string(kMaxSubscribersLimit));
    return std::nullopt;
  }
  TopicGeometry g;
  g.max_message_size = max_message_size;
  g.depth = depth;
  g.max_publishers = max_publishers;
  g.max_subscribers = max_subscribers;
  g.slot_stride =
      static_cast<uint32_t>(round_up(sizeof(SlotHeader) + uint64_t{max_message_size}, kCacheLine));
  g.publishers_offset = sizeof(TopicHeader);
  g.cursors_offset = g.publishers_offset + uint64_t{max_publishers} * sizeof(PublisherSlot);
  g.subscribers_offset = g.cursors_offset + uint64_t{max_publishers} * max_subscribers * sizeof(Cursor);
  g.rings_offset = round_up(g.subscribers_offset + uint64_t{max_subscribers} * sizeof(SubscriberSlot), 4096);
  g.ring_bytes = uint64_t{depth} * g.slot_stride;
  g.segment_size = round_up(g.rings_offset + g.ring_bytes * max_publishers, 4096);
  if (g.segment_size > kMaxSegmentBytes) {
    fail(error, "topic needs " + std::to_string(g.segment_size >> 20) +
                    " MiB of shared memory (max_message_size x depth x max_publishers); the limit is " +
                    std::to_string(kMaxSegmentBytes >> 20) + " MiB");
    return std::nullopt;
  }
  return g;
}

std::optional<TopicGeometry> validate_topic_header(const TopicHeader& h, std::size_t mapped_size,
                                                   std::string* error) {
  if (mapped_size < sizeof(TopicHeader)) {
    fail(error, "segment smaller than its header");
    return std::nullopt;
  }
  if (h.magic != kTopicMagic || h.version != kLayoutVersion) {
    fail(error, "segment has a wrong magic or layout version");
    return std::nullopt;
  }
  auto g = compute_topic_geometry(h.max_message_size, h.depth, h.max_publishers, h.max_subscribers, error);
  if (!g) return std::nullopt;
  if (g->segment_size != h.segment_size || g->segment_size > mapped_size || g->slot_stride != h.slot_stride ||
      g->publishers_offset != h.publishers_offset || g->cursors_offset != h.cursors_offset ||
      g->subscribers_offset != h.subscribers_offset || g->rings_offset != h.rings_offset ||
      g->ring_bytes != h.ring_bytes || h.policy > kPolicyLossy ||
      std::memchr(h.name, '\0', sizeof(h.name)) == nullptr) {
    fail(error, "segment header is inconsistent with its settings");
    return std::nullopt;
  }
  return g;
}

void initialize_topic_segment(std::byte* base, const TopicGeometry& g, uint32_t topic_id, uint32_t policy,
                              uint32_t history, const std::string& name, uint32_t daemon_pid) {
  TopicHeader* h = topic_header(base);
  h->magic = kTopicMagic;
  h->version = kLayoutVersion;
  h->topic_id = topic_id;
  h->segment_size = g.segment_size;
  h->max_message_size = g.max_message_size;
  h->depth = g.depth;
  h->slot_stride = g.slot_stride;
  h->policy = policy;
  h->history = history;
  h->max_publishers = g.max_publishers;
  h->max_subscribers = g.max_subscribers;
  h->daemon_pid = daemon_pid;
  h->created_unix_ns = static_cast<uint64_t>(std::chrono::system_clock::now().time_since_epoch().count());
  const std::size_t n = std::min(name.size(), kMaxTopicNameBytes);
  std::memcpy(h->name, name.data(), n);
  h->name[n] = '\0';
  h->publishers_offset = g.publishers_offset;
  h->cursors_offset = g.cursors_offset;
  h->subscribers_offset = g.subscribers_offset;
  h->rings_offset = g.rings_offset;
  h->ring_bytes = g.ring_bytes;
  for (uint32_t p = 0; p < g.max_publishers; ++p) {
    for (uint32_t s = 0; s < g.max_subscribers; ++s) {
      // relaxed: nobody else maps the segment before the daemon hands out its descriptor.
      cursor(base, g, p, s)->value.store(kCursorInactive, std::memory_order_relaxed);
    }
  }
}

int latency_bucket(uint64_t ns) {
  if (ns < 4) return static_cast<int>(ns);
  const int exponent = 63 - std::countl_zero(ns);  // >= 2
  const int sub = static_cast<int>((ns >> (exponent - 2)) & 3);
  const int bucket = (exponent - 1) * 4 + sub;
  return bucket < kLatencyBuckets ? bucket : kLatencyBuckets - 1;
}

uint64_t latency_bucket_upper_ns(int bucket) {
  if (bucket < 4) return static_cast<uint64_t>(bucket);
  const int exponent = bucket / 4 + 1;
  const int sub = bucket % 4;
  return ((4ull + sub + 1) << (exponent - 2)) - 1;
}

}  // namespace shmbus::shm

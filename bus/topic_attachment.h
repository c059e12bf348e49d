// A client's mapping of one topic segment, validated before use. Geometry is copied out of shared memory once
// here; the hot path never re-reads offsets from the segment.
#pragma once

#include <string>

#include "bus/control_protocol.h"
#include "shm/segment.h"
#include "shm/topic_segment_layout.h"
#include "shmbus/status.h"

namespace shmbus::detail {

struct TopicAttachment {
  shm::Segment segment;
  shm::TopicGeometry geometry;
  std::string topic;
  uint32_t topic_id = 0;
  bool lossless = false;

  std::byte* base() const { return segment.data(); }
  shm::TopicHeader* header() const { return shm::topic_header(segment.data()); }

  // Maps the segment descriptor `fd` sent with `reply` (closes it) and validates its header.
  static Result<TopicAttachment> map(int fd, const Reply& reply, const std::string& topic);
};

}  // namespace shmbus::detail

#include "bus/topic_attachment.h"

#include <unistd.h>

#include <cstddef>
#include <cstring>

namespace shmbus::detail {

Result<TopicAttachment> TopicAttachment::map(int fd, const Reply& reply, const std::string& topic) {
  if (fd < 0) return Status{Errc::kProtocolError, "the daemon sent no segment for topic " + topic};
  TopicAttachment a;
  try {
    a.segment = shm::Segment::map_fd(fd, topic);
  } catch (const std::exception& e) {
    close(fd);
    return Status{Errc::kInternal, e.what()};
  }
  close(fd);
  std::string error;
  auto g = shm::validate_topic_header(*a.header(), a.segment.size(), &error);
  if (!g) return Status{Errc::kProtocolError, "topic " + topic + ": " + error};
  if (a.header()->topic_id != reply.topic_id || std::strncmp(a.header()->name, topic.c_str(), 256) != 0) {
    return Status{Errc::kProtocolError, "topic " + topic + ": the daemon sent another topic's segment"};
  }
  // A participant that cuts the segment short makes this mapping read as a closed topic: its users re-open
  // it through the daemon (which replaces the segment) instead of dying of SIGBUS.
  a.segment.set_truncation_word(offsetof(shm::TopicHeader, closed), shm::kTopicClosed);
  a.geometry = *g;
  a.topic = topic;
  a.topic_id = reply.topic_id;
  a.lossless = a.header()->policy == shm::kPolicyLossless;
  return a;
}

}  // namespace shmbus::detail

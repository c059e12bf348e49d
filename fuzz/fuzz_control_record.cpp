// Fuzzes the control-record decoders on arbitrary packets: check_record, then the record decoded the way its
// receiver does (requests as ControlServer::serve, replies and stats chunks as Connection). Whatever a peer
// sends must be refused or decoded without touching a byte outside the packet or the record.
#include <cstdint>
#include <cstring>

#include "bus/control_protocol.h"
#include "shmbus/topic_name.h"

using namespace shmbus;
using namespace shmbus::detail;

namespace {

template <typename Record>
Record decode_as(const unsigned char* buffer) {
  Record r;
  std::memcpy(&r, buffer, sizeof r);
  return r;
}

// Settings must survive a round trip through the wire form unchanged once decoded.
void check_settings(const WireSettings& wire) {
  const TopicSettings once = from_wire(wire);
  const TopicSettings twice = from_wire(to_wire(once));
  if (once.max_message_size != twice.max_message_size || once.depth != twice.depth ||
      once.policy != twice.policy || once.history != twice.history ||
      once.max_publishers != twice.max_publishers || once.max_subscribers != twice.max_subscribers) {
    __builtin_trap();
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  // The daemon receives into a buffer of kMaxRecordBytes; a longer packet is refused before decoding.
  if (size > kMaxRecordBytes) return 0;
  alignas(8) unsigned char buffer[kMaxRecordBytes];
  std::memcpy(buffer, data, size);
  RecordType type{};
  if (!check_record(buffer, size, &type).ok()) return 0;
  if (record_size(type) != size) __builtin_trap();  // check_record's promise the casts below rely on
  switch (type) {
    case RecordType::kHello:
      (void)read_string(decode_as<HelloRequest>(buffer).name, sizeof HelloRequest::name);
      break;
    case RecordType::kOpenPublisher:
    case RecordType::kOpenSubscriber: {
      const auto r = decode_as<OpenRequest>(buffer);
      if (const auto topic = read_string(r.topic, sizeof r.topic)) {
        if (topic->size() >= sizeof r.topic) __builtin_trap();
        (void)validate_topic_name(*topic);
      }
      check_settings(r.settings);
      break;
    }
    case RecordType::kOpenQueue: {
      const auto r = decode_as<OpenQueueRequest>(buffer);
      if (const auto name = read_string(r.name, sizeof r.name)) {
        if (name->size() >= sizeof r.name) __builtin_trap();
        (void)validate_topic_name(*name);
      }
      const QueueSettings s = from_wire(r.settings);
      if (s.sync && static_cast<uint32_t>(*s.sync) > static_cast<uint32_t>(SyncPolicy::kAlways))
        __builtin_trap();
      break;
    }
    case RecordType::kReclaimQueue: {
      const auto r = decode_as<ReclaimQueueRequest>(buffer);
      if (const auto name = read_string(r.name, sizeof r.name)) {
        if (name->size() >= sizeof r.name) __builtin_trap();
      }
      break;
    }
    case RecordType::kCloseQueue:
    case RecordType::kClose:
    case RecordType::kReclaim:
    case RecordType::kStats:
      break;  // plain integers; the registry, not the decoder, must check them before use as indices
    case RecordType::kReply: {
      const auto r = decode_as<Reply>(buffer);
      (void)read_string(r.message, sizeof r.message);
      check_settings(r.settings);
      break;
    }
    case RecordType::kStatsChunk: {
      const auto r = decode_as<StatsChunk>(buffer);
      if (r.size <= sizeof r.data) {  // Connection::stats refuses larger sizes
        std::string document;
        document.append(r.data, r.size);
      }
      break;
    }
  }
  return 0;
}

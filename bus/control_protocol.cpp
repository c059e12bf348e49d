#include "bus/control_protocol.h"

#include <cstring>

namespace shmbus::detail {

WireSettings to_wire(const TopicSettings& s) {
  WireSettings w{};
  if (s.max_message_size) w.present |= kHasMaxMessageSize, w.max_message_size = *s.max_message_size;
  if (s.depth) w.present |= kHasDepth, w.depth = *s.depth;
  if (s.policy) w.present |= kHasPolicy, w.policy = static_cast<uint32_t>(*s.policy);
  if (s.history) w.present |= kHasHistory, w.history = *s.history;
  if (s.max_publishers) w.present |= kHasMaxPublishers, w.max_publishers = *s.max_publishers;
  if (s.max_subscribers) w.present |= kHasMaxSubscribers, w.max_subscribers = *s.max_subscribers;
  return w;
}

TopicSettings from_wire(const WireSettings& w) {
  TopicSettings s;
  if (w.present & kHasMaxMessageSize) s.max_message_size = w.max_message_size;
  if (w.present & kHasDepth) s.depth = w.depth;
  if (w.present & kHasPolicy) s.policy = w.policy == 0 ? Policy::kLossless : Policy::kLossy;
  if (w.present & kHasHistory) s.history = w.history;
  if (w.present & kHasMaxPublishers) s.max_publishers = w.max_publishers;
  if (w.present & kHasMaxSubscribers) s.max_subscribers = w.max_subscribers;
  return s;
}

WireQueueSettings to_wire(const QueueSettings& s) {
  WireQueueSettings w{};
  auto put = [&](const auto& field, uint32_t bit, uint32_t* out) {
    if (field) {
      w.present |= bit;
      *out = static_cast<uint32_t>(*field);
    }
  };
  put(s.capacity, kHasCapacity, &w.capacity);
  put(s.max_message_size, kHasQueueMessageSize, &w.max_message_size);
  put(s.max_deliveries, kHasMaxDeliveries, &w.max_deliveries);
  put(s.durable, kHasDurable, &w.durable);
  put(s.sync, kHasSync, &w.sync);
  put(s.sync_interval_ms, kHasSyncInterval, &w.sync_interval_ms);
  return w;
}

QueueSettings from_wire(const WireQueueSettings& w) {
  QueueSettings s;
  if (w.present & kHasCapacity) s.capacity = w.capacity;
  if (w.present & kHasQueueMessageSize) s.max_message_size = w.max_message_size;
  if (w.present & kHasMaxDeliveries) s.max_deliveries = w.max_deliveries;
  if (w.present & kHasDurable) s.durable = w.durable != 0;
  if ((w.present & kHasSync) && w.sync <= static_cast<uint32_t>(SyncPolicy::kAlways)) {
    s.sync = static_cast<SyncPolicy>(w.sync);
  }
  if (w.present & kHasSyncInterval) s.sync_interval_ms = w.sync_interval_ms;
  return s;
}

RecordHeader make_header(RecordType type, uint32_t length, uint32_t request_id) {
  return RecordHeader{kProtocolMagic, kProtocolVersion, static_cast<uint16_t>(type), length, request_id};
}

void copy_string(std::string_view text, char* field, std::size_t field_size) {
  const std::size_t n = std::min(text.size(), field_size - 1);
  std::memcpy(field, text.data(), n);
  std::memset(field + n, 0, field_size - n);
}

std::optional<std::string> read_string(const char* field, std::size_t field_size) {
  const void* nul = std::memchr(field, '\0', field_size);
  if (nul == nullptr) return std::nullopt;
  return std::string(field, static_cast<const char*>(nul));
}

std::size_t record_size(RecordType type) {
  switch (type) {
    case RecordType::kHello:
      return sizeof(HelloRequest);
    case RecordType::kOpenPublisher:
    case RecordType::kOpenSubscriber:
      return sizeof(OpenRequest);
    case RecordType::kClose:
      return sizeof(CloseRequest);
    case RecordType::kStats:
      return sizeof(StatsRequest);
    case RecordType::kReclaim:
      return sizeof(ReclaimRequest);
    case RecordType::kOpenQueue:
      return sizeof(OpenQueueRequest);
    case RecordType::kCloseQueue:
      return sizeof(CloseQueueRequest);
    case RecordType::kReclaimQueue:
      return sizeof(ReclaimQueueRequest);
    case RecordType::kReply:
      return sizeof(Reply);
    case RecordType::kStatsChunk:
      return sizeof(StatsChunk);
  }
  return 0;
}

Status check_record(const void* data, std::size_t received, RecordType* type) {
  if (received < sizeof(RecordHeader)) {
    return {Errc::kProtocolError,
            "record of " + std::to_string(received) + " bytes is shorter than its header"};
  }
  RecordHeader h;
  std::memcpy(&h, data, sizeof h);
  if (h.magic != kProtocolMagic) return {Errc::kProtocolError, "record has a wrong magic"};
  if (h.version != kProtocolVersion) {
    return {Errc::kProtocolError, "protocol version " + std::to_string(h.version) + ", expected " +
                                      std::to_string(kProtocolVersion)};
  }
  const auto t = static_cast<RecordType>(h.type);
  const std::size_t expected = record_size(t);
  if (expected == 0) return {Errc::kProtocolError, "unknown record type " + std::to_string(h.type)};
  if (h.length != received || received != expected) {
    return {Errc::kProtocolError, "record type " + std::to_string(h.type) + " has length " +
                                      std::to_string(received) + ", expected " + std::to_string(expected)};
  }
  *type = t;
  return Status::Ok();
}

}  // namespace shmbus::detail

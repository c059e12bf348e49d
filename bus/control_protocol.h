// The control protocol between clients and shmbusd: fixed-size, packed request and reply records over a
// SOCK_SEQPACKET Unix socket (one record per packet). Replies to open requests carry the topic segment's
// descriptor (SCM_RIGHTS), so clients never open shared memory by name and the daemon alone decides access.
// Versioned: a record of another version is refused with kProtocolError. Decoders check every length,
// string termination and enum value; nothing from the wire is trusted.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "shmbus/options.h"
#include "shmbus/status.h"

namespace shmbus::detail {

inline constexpr uint32_t kProtocolMagic = 0x5442'5342;  // "BSBT"
inline constexpr uint16_t kProtocolVersion = 1;
inline constexpr std::size_t kMaxRecordBytes = 16384;

enum class RecordType : uint16_t {
  kHello = 1,           // HelloRequest -> Reply
  kOpenPublisher = 2,   // OpenRequest -> Reply (+ segment fd)
  kOpenSubscriber = 3,  // OpenRequest -> Reply (+ segment fd)
  kClose = 4,           // CloseRequest -> Reply
  kStats = 5,           // StatsRequest -> StatsChunk... (last one has last = 1)
  kReclaim = 6,         // ReclaimRequest -> Reply: after a daemon restart, take back an endpoint it adopted
  kOpenQueue = 7,       // OpenQueueRequest -> Reply (+ queue fd; topic_id carries the queue id)
  kCloseQueue = 8,      // CloseQueueRequest -> Reply
  kReclaimQueue = 9,    // ReclaimQueueRequest -> Reply: after a daemon restart, take back a queue role held
  kReply = 100,
  kStatsChunk = 101,
};

#pragma pack(push, 1)
struct RecordHeader {
  uint32_t magic;
  uint16_t version;
  uint16_t type;
  uint32_t length;  // whole record, header included
  uint32_t request_id;
};

// Topic settings on the wire: a field counts only if its bit is set in `present`.
struct WireSettings {
  uint32_t present;
  uint32_t max_message_size;
  uint32_t depth;
  uint32_t policy;
  uint32_t history;
  uint32_t max_publishers;
  uint32_t max_subscribers;
};

struct HelloRequest {
  RecordHeader header;
  char name[64];
};

struct OpenRequest {
  RecordHeader header;
  char topic[256];
  WireSettings settings;
  uint32_t history;  // subscribers: messages to deliver from before joining
  uint32_t reserved;
};

inline constexpr uint32_t kRolePublisher = 1;
inline constexpr uint32_t kRoleSubscriber = 2;

struct CloseRequest {
  RecordHeader header;
  uint32_t topic_id;
  uint32_t role;
  uint32_t slot;
  uint32_t generation;
};

struct ReclaimRequest {
  RecordHeader header;
  uint32_t topic_id;
  uint32_t role;
  uint32_t slot;
  uint32_t reserved;
  uint64_t endpoint_id;
};

// Work-queue settings on the wire: a field counts only if its bit is set in `present`.
struct WireQueueSettings {
  uint32_t present;
  uint32_t capacity;
  uint32_t max_message_size;
  uint32_t max_deliveries;
  uint32_t durable;
  uint32_t sync;
  uint32_t sync_interval_ms;
};

// Roles in OpenQueueRequest::role.
inline constexpr uint32_t kQueueProducer = 1;   // work queue: send
inline constexpr uint32_t kQueueConsumer = 2;   // work queue: receive, ack, reject
inline constexpr uint32_t kQueueInspector = 3;  // work queue: statistics, dead letters (needs consume rights)
inline constexpr uint32_t kServiceClient = 4;   // a service's request queue: send requests
inline constexpr uint32_t kServiceServer = 5;   // a service's request queue: receive requests
inline constexpr uint32_t kReplyOwner = 6;      // creates this client's private response queue
inline constexpr uint32_t kReplyWriter = 7;     // a server opening a client's response queue by id

struct OpenQueueRequest {
  RecordHeader header;
  char name[256];
  WireQueueSettings settings;
  uint32_t role;
  uint32_t queue_id;  // kReplyWriter: the response queue to open
};

struct CloseQueueRequest {
  RecordHeader header;
  uint32_t queue_id;
  uint32_t role;
};

// A queue role this participant held with a crashed daemon (kQueueProducer ... kReplyOwner), to be counted
// again by its successor, which adopted the queue from shared memory.
struct ReclaimQueueRequest {
  RecordHeader header;
  char name[256];  // as opened; empty for kReplyOwner
  uint32_t queue_id;
  uint32_t role;
  uint32_t count;  // how many handles of this role on this queue the participant holds: set, not added, so
                   // that a re-claim sent again (its answer was late) does not count them twice
};

struct StatsRequest {
  RecordHeader header;
};

struct Reply {
  RecordHeader header;
  int32_t code;  // Errc
  uint32_t topic_id;
  uint32_t slot;
  uint32_t generation;
  uint64_t participant_id;
  WireSettings settings;  // the topic's effective settings (all present)
  char message[512];
};

struct StatsChunk {
  RecordHeader header;
  uint32_t last;
  uint32_t size;
  char data[8192];
};
#pragma pack(pop)

static_assert(sizeof(RecordHeader) == 16);
static_assert(sizeof(OpenRequest) == 16 + 256 + 28 + 8);
static_assert(sizeof(Reply) <= kMaxRecordBytes && sizeof(StatsChunk) <= kMaxRecordBytes);

inline constexpr uint32_t kHasMaxMessageSize = 1u << 0;
inline constexpr uint32_t kHasDepth = 1u << 1;
inline constexpr uint32_t kHasPolicy = 1u << 2;
inline constexpr uint32_t kHasHistory = 1u << 3;
inline constexpr uint32_t kHasMaxPublishers = 1u << 4;
inline constexpr uint32_t kHasMaxSubscribers = 1u << 5;

inline constexpr uint32_t kHasCapacity = 1u << 0;
inline constexpr uint32_t kHasQueueMessageSize = 1u << 1;
inline constexpr uint32_t kHasMaxDeliveries = 1u << 2;
inline constexpr uint32_t kHasDurable = 1u << 3;
inline constexpr uint32_t kHasSync = 1u << 4;
inline constexpr uint32_t kHasSyncInterval = 1u << 5;

WireQueueSettings to_wire(const QueueSettings& settings);
// kProtocolError-free: out-of-range enum values come back unset and are refused by the daemon's checks.
QueueSettings from_wire(const WireQueueSettings& wire);

WireSettings to_wire(const TopicSettings& settings);
TopicSettings from_wire(const WireSettings& wire);

inline ReclaimRequest make_reclaim(uint32_t topic_id, uint32_t role, uint32_t slot, uint64_t endpoint_id) {
  ReclaimRequest r{};
  r.topic_id = topic_id;
  r.role = role;
  r.slot = slot;
  r.endpoint_id = endpoint_id;
  return r;
}

// Fills a record header for `type` and size `length`.
RecordHeader make_header(RecordType type, uint32_t length, uint32_t request_id);

// Copies `text` into a fixed field, truncated and always NUL-terminated.
void copy_string(std::string_view text, char* field, std::size_t field_size);
// The NUL-terminated string in a fixed field, or nullopt if it has no NUL (a malformed record).
std::optional<std::string> read_string(const char* field, std::size_t field_size);

// Checks a received record's header: magic, version, that `length` matches the bytes received and the size
// the type requires. Returns Ok or kProtocolError naming the problem.
Status check_record(const void* data, std::size_t received, RecordType* type);

// The record size each type must have, 0 for unknown types.
std::size_t record_size(RecordType type);

}  // namespace shmbus::detail

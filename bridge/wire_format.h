// The bridge's wire format, shared by the sending and the receiving side. Documented in bridge/README.md
// ("Wire format"); change both together and bump kWireVersion when the layout changes.
//
// A bridged ZeroMQ message is exactly two frames, carrying one or more messages of one topic from one origin:
//   [topic]  the wire topic name followed by one NUL byte. ZeroMQ filters subscriptions by byte prefix; the
//            terminator makes "a\0" a prefix of no other topic ("ab\0"), so names never match by accident.
//   [batch]  a batch header (kBatchHeaderSize bytes), then records back to back up to the end of the frame:
//            a record header (kRecordHeaderSize bytes) and that record's payload. All little-endian.
// The sender puts into one batch what its local subscriber has ready at that moment (it never waits to fill
// one): ZeroMQ's cost is per ZeroMQ message, so under load it is paid once per batch, and an idle link still
// sends each message at once, alone. A subscription upstream (XSUB -> XPUB) is one frame: 0x01 (subscribe) or
// 0x00 (unsubscribe), then the topic frame.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace shmbus::bridge {

inline constexpr uint32_t kWireMagic = 0x52425342;  // the bytes "BSBR" on the wire
inline constexpr uint8_t kWireVersion = 2;

// Batch header byte offsets. Magic and version stay at 0 and 4 in every version (version 1 had them there
// too): a receiver reads them first, and a frame of another version is counted as such, whatever its size.
inline constexpr std::size_t kBatchHeaderSize = 24;
inline constexpr std::size_t kOffsetMagic = 0;    // u32
inline constexpr std::size_t kOffsetVersion = 4;  // u8
inline constexpr std::size_t kOffsetHops = 5;     // u8: bridges crossed before this one (0 at the origin)
inline constexpr std::size_t kOffsetFlags = 6;    // u16: WireFlags; unknown bits are ignored
inline constexpr std::size_t kOffsetOrigin = 8;   // u64: origin host id
inline constexpr std::size_t kOffsetEpoch = 16;   // u64: origin bridge start (ns since the Unix epoch)

// Record header byte offsets, from the record's start.
inline constexpr std::size_t kRecordHeaderSize = 20;
inline constexpr std::size_t kRecordSequence = 0;  // u64: 1, 2, 3... per origin, epoch and topic
inline constexpr std::size_t kRecordPublishTime =
    8;  // u64: publish time at the origin, ns since the Unix epoch; 0: its publisher does not stamp
inline constexpr std::size_t kRecordSize = 16;  // u32: payload bytes that follow

// What a sender puts in one batch at most. A single message larger than the byte bound travels alone. A
// receiver refuses a batch of more records (what one frame may cost it stays bounded).
inline constexpr std::size_t kMaxBatchRecords = 256;
inline constexpr std::size_t kMaxBatchBytes = std::size_t{64} * 1024;
// The largest frame a sender makes: one message of the largest size a topic may hold (256 MiB), alone.
inline constexpr std::size_t kMaxFrameBytes = kBatchHeaderSize + kRecordHeaderSize + (std::size_t{256} << 20);
// What a peer sends our XPUB: subscription messages (a flag byte and a topic frame of at most 256 bytes) and
// ZeroMQ's own handshake commands, which the bound covers too (257 bytes refused every connection).
inline constexpr std::size_t kMaxSubscriptionBytes = 4096;

enum WireFlags : uint16_t {
  kFlagRelayed = 1,  // forwarded by a bridge other than the origin's
};

struct BatchHeader {
  uint8_t hops = 0;
  uint16_t flags = 0;
  uint64_t origin_id = 0;
  uint64_t origin_epoch = 0;
};

struct WireRecord {
  uint64_t sequence = 0;
  uint64_t publish_time_ns = 0;
  std::span<const std::byte> payload;  // into the frame it was decoded from
};

void encode_batch_header(const BatchHeader& header, std::span<std::byte, kBatchHeaderSize> out);
void encode_record_header(uint64_t sequence, uint64_t publish_time_ns, uint32_t size,
                          std::span<std::byte, kRecordHeaderSize> out);
// Bytes of the batch frame holding `records`.
std::size_t batch_size(std::span<const WireRecord> records);
// Writes the batch frame of `records` into `out`. REQUIRES: out.size() == batch_size(records).
void encode_batch(const BatchHeader& header, std::span<const WireRecord> records, std::span<std::byte> out);
// A whole batch frame in a vector (tests, fuzzing; the outbound hot path encodes in place).
std::vector<std::byte> encode_batch(const BatchHeader& header, std::span<const WireRecord> records);

enum class BatchError { kNone, kMalformed, kUnknownVersion };
// Checks the whole frame before it reports anything: kNone only for a frame of magic, this version, a full
// header and 1..kMaxBatchRecords whole records that end exactly at the frame's end. Then *header is filled
// and *records (cleared first) holds every record, its payload a span into `frame`. Never reads out of
// bounds.
BatchError decode_batch(std::span<const std::byte> frame, BatchHeader* header,
                        std::vector<WireRecord>* records);

// "name\0".
std::string topic_frame(std::string_view wire_topic);
// The topic of a topic frame, or nullopt if the frame is not a valid topic name followed by one NUL.
std::optional<std::string_view> parse_topic_frame(std::span<const std::byte> frame);

// The one-frame subscription message an XSUB sends upstream for `wire_topic`.
std::string subscription_frame(std::string_view wire_topic, bool subscribe);
// What an XPUB hands its owner when a peer (un)subscribes: nullopt for anything but a valid one.
struct Subscription {
  bool subscribe = false;
  std::string_view wire_topic;
};
std::optional<Subscription> parse_subscription_frame(std::span<const std::byte> frame);

}  // namespace shmbus::bridge

// The bridge's wire format, shared by the sending and the receiving side. Documented in bridge/README.md
// ("Wire format"); change both together and bump kWireVersion when the header changes.
//
// A bridged message is a ZeroMQ multipart message of exactly three frames:
//   [topic]   the wire topic name followed by one NUL byte. ZeroMQ filters subscriptions by byte prefix; the
//             terminator makes "a\0" a prefix of no other topic ("ab\0"), so names never match by accident.
//   [header]  kHeaderSize bytes, little-endian, laid out below.
//   [payload] the message bytes, as published on the origin host's bus.
// A subscription upstream (XSUB -> XPUB) is one frame: 0x01 (subscribe) or 0x00 (unsubscribe), then the
// topic frame.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>

namespace shmbus::bridge {

inline constexpr uint32_t kWireMagic = 0x52425342;  // the bytes "BSBR" on the wire
inline constexpr uint8_t kWireVersion = 1;
inline constexpr std::size_t kHeaderSize = 40;

// Header byte offsets (version 1). A receiver reads magic and version first: a frame of another version is
// counted as such, whatever its size.
inline constexpr std::size_t kOffsetMagic = 0;         // u32
inline constexpr std::size_t kOffsetVersion = 4;       // u8
inline constexpr std::size_t kOffsetHops = 5;          // u8: bridges crossed before this one (0 at the origin)
inline constexpr std::size_t kOffsetFlags = 6;         // u16: WireFlags; unknown bits are ignored
inline constexpr std::size_t kOffsetOrigin = 8;        // u64: origin host id
inline constexpr std::size_t kOffsetEpoch = 16;        // u64: origin bridge start (ns since the Unix epoch)
inline constexpr std::size_t kOffsetSequence = 24;     // u64: 1, 2, 3... per origin, epoch and topic
inline constexpr std::size_t kOffsetPublishTime = 32;  // u64: publish time at the origin, ns since the Unix epoch

enum WireFlags : uint16_t {
  kFlagRelayed = 1,  // forwarded by a bridge other than the origin's
};

struct WireHeader {
  uint8_t hops = 0;
  uint16_t flags = 0;
  uint64_t origin_id = 0;
  uint64_t origin_epoch = 0;
  uint64_t sequence = 0;
  uint64_t publish_time_ns = 0;
};

using HeaderBytes = std::array<std::byte, kHeaderSize>;

HeaderBytes encode_header(const WireHeader& header);

enum class HeaderError { kNone, kMalformed, kUnknownVersion };
// Fills *header from `bytes` when it returns kNone; never reads out of bounds.
HeaderError decode_header(std::span<const std::byte> bytes, WireHeader* header);

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

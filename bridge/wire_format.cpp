#include "bridge/wire_format.h"

#include "shmbus/topic_name.h"

namespace shmbus::bridge {
namespace {

// Explicit little-endian (de)serialisation: the header must read the same on every host, whatever its CPU.
template <typename T>
void put(HeaderBytes& out, std::size_t offset, T value) {
  for (std::size_t i = 0; i < sizeof(T); ++i) out[offset + i] = static_cast<std::byte>((value >> (8 * i)) & 0xff);
}

template <typename T>
T get(std::span<const std::byte> in, std::size_t offset) {
  T value = 0;
  for (std::size_t i = 0; i < sizeof(T); ++i) value |= static_cast<T>(static_cast<T>(in[offset + i]) << (8 * i));
  return value;
}

std::string_view as_chars(std::span<const std::byte> bytes) {
  return {reinterpret_cast<const char*>(bytes.data()), bytes.size()};
}

}  // namespace

HeaderBytes encode_header(const WireHeader& header) {
  HeaderBytes out{};
  put<uint32_t>(out, kOffsetMagic, kWireMagic);
  put<uint8_t>(out, kOffsetVersion, kWireVersion);
  put<uint8_t>(out, kOffsetHops, header.hops);
  put<uint16_t>(out, kOffsetFlags, header.flags);
  put<uint64_t>(out, kOffsetOrigin, header.origin_id);
  put<uint64_t>(out, kOffsetEpoch, header.origin_epoch);
  put<uint64_t>(out, kOffsetSequence, header.sequence);
  put<uint64_t>(out, kOffsetPublishTime, header.publish_time_ns);
  return out;
}

HeaderError decode_header(std::span<const std::byte> bytes, WireHeader* header) {
  if (bytes.size() < kOffsetVersion + 1 || get<uint32_t>(bytes, kOffsetMagic) != kWireMagic) {
    return HeaderError::kMalformed;
  }
  if (get<uint8_t>(bytes, kOffsetVersion) != kWireVersion) return HeaderError::kUnknownVersion;
  if (bytes.size() != kHeaderSize) return HeaderError::kMalformed;
  header->hops = get<uint8_t>(bytes, kOffsetHops);
  header->flags = get<uint16_t>(bytes, kOffsetFlags);
  header->origin_id = get<uint64_t>(bytes, kOffsetOrigin);
  header->origin_epoch = get<uint64_t>(bytes, kOffsetEpoch);
  header->sequence = get<uint64_t>(bytes, kOffsetSequence);
  header->publish_time_ns = get<uint64_t>(bytes, kOffsetPublishTime);
  return HeaderError::kNone;
}

std::string topic_frame(std::string_view wire_topic) {
  std::string frame(wire_topic);
  frame.push_back('\0');
  return frame;
}

std::optional<std::string_view> parse_topic_frame(std::span<const std::byte> frame) {
  if (frame.size() < 2 || frame.back() != std::byte{0}) return std::nullopt;
  const std::string_view name = as_chars(frame.first(frame.size() - 1));
  // validate_topic_name rejects NUL and every other byte outside the name alphabet.
  if (!validate_topic_name(name).ok()) return std::nullopt;
  return name;
}

std::string subscription_frame(std::string_view wire_topic, bool subscribe) {
  std::string frame(1, subscribe ? '\1' : '\0');
  frame += topic_frame(wire_topic);
  return frame;
}

std::optional<Subscription> parse_subscription_frame(std::span<const std::byte> frame) {
  if (frame.empty() || (frame[0] != std::byte{0} && frame[0] != std::byte{1})) return std::nullopt;
  auto topic = parse_topic_frame(frame.subspan(1));
  if (!topic) return std::nullopt;
  return Subscription{frame[0] == std::byte{1}, *topic};
}

}  // namespace shmbus::bridge

#include "bridge/wire_format.h"

#include <cstring>

#include "shmbus/topic_name.h"

namespace shmbus::bridge {
namespace {

// Explicit little-endian (de)serialisation: frames must read the same on every host, whatever its CPU.
template <typename T>
void put(std::span<std::byte> out, std::size_t offset, T value) {
  for (std::size_t i = 0; i < sizeof(T); ++i)
    out[offset + i] = static_cast<std::byte>((value >> (8 * i)) & 0xff);
}

template <typename T>
T get(std::span<const std::byte> in, std::size_t offset) {
  T value = 0;
  for (std::size_t i = 0; i < sizeof(T); ++i)
    value |= static_cast<T>(static_cast<T>(in[offset + i]) << (8 * i));
  return value;
}

std::string_view as_chars(std::span<const std::byte> bytes) {
  return {reinterpret_cast<const char*>(bytes.data()), bytes.size()};
}

}  // namespace

void encode_batch_header(const BatchHeader& header, std::span<std::byte, kBatchHeaderSize> out) {
  put<uint32_t>(out, kOffsetMagic, kWireMagic);
  put<uint8_t>(out, kOffsetVersion, kWireVersion);
  put<uint8_t>(out, kOffsetHops, header.hops);
  put<uint16_t>(out, kOffsetFlags, header.flags);
  put<uint64_t>(out, kOffsetOrigin, header.origin_id);
  put<uint64_t>(out, kOffsetEpoch, header.origin_epoch);
}

void encode_record_header(uint64_t sequence, uint64_t publish_time_ns, uint32_t size,
                          std::span<std::byte, kRecordHeaderSize> out) {
  put<uint64_t>(out, kRecordSequence, sequence);
  put<uint64_t>(out, kRecordPublishTime, publish_time_ns);
  put<uint32_t>(out, kRecordSize, size);
}

std::size_t batch_size(std::span<const WireRecord> records) {
  std::size_t size = kBatchHeaderSize;
  for (const WireRecord& r : records) size += kRecordHeaderSize + r.payload.size();
  return size;
}

void encode_batch(const BatchHeader& header, std::span<const WireRecord> records, std::span<std::byte> out) {
  encode_batch_header(header, out.first<kBatchHeaderSize>());
  std::size_t at = kBatchHeaderSize;
  for (const WireRecord& r : records) {
    encode_record_header(r.sequence, r.publish_time_ns, static_cast<uint32_t>(r.payload.size()),
                         out.subspan(at).first<kRecordHeaderSize>());
    at += kRecordHeaderSize;
    if (!r.payload.empty()) std::memcpy(out.data() + at, r.payload.data(), r.payload.size());
    at += r.payload.size();
  }
}

std::vector<std::byte> encode_batch(const BatchHeader& header, std::span<const WireRecord> records) {
  std::vector<std::byte> frame(batch_size(records));
  encode_batch(header, records, frame);
  return frame;
}

BatchError decode_batch(std::span<const std::byte> frame, BatchHeader* header,
                        std::vector<WireRecord>* records) {
  if (frame.size() < kOffsetVersion + 1 || get<uint32_t>(frame, kOffsetMagic) != kWireMagic) {
    return BatchError::kMalformed;
  }
  if (get<uint8_t>(frame, kOffsetVersion) != kWireVersion) return BatchError::kUnknownVersion;
  if (frame.size() < kBatchHeaderSize) return BatchError::kMalformed;
  records->clear();
  std::size_t at = kBatchHeaderSize;
  while (at < frame.size()) {
    // Both subtractions are of a smaller from a larger: at < frame.size() here, and the record header fits.
    if (frame.size() - at < kRecordHeaderSize || records->size() == kMaxBatchRecords)
      return BatchError::kMalformed;
    const std::span<const std::byte> record = frame.subspan(at);
    const uint32_t size = get<uint32_t>(record, kRecordSize);
    if (size > record.size() - kRecordHeaderSize) return BatchError::kMalformed;
    records->push_back({get<uint64_t>(record, kRecordSequence), get<uint64_t>(record, kRecordPublishTime),
                        record.subspan(kRecordHeaderSize, size)});
    at += kRecordHeaderSize + size;
  }
  if (records->empty()) return BatchError::kMalformed;
  header->hops = get<uint8_t>(frame, kOffsetHops);
  header->flags = get<uint16_t>(frame, kOffsetFlags);
  header->origin_id = get<uint64_t>(frame, kOffsetOrigin);
  header->origin_epoch = get<uint64_t>(frame, kOffsetEpoch);
  return BatchError::kNone;
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

// Fuzzes the bridge's wire-format decoders on arbitrary multipart messages, the way a peer's bytes reach
// them: the inbound side's checks (bridge/inbound.cpp, Inbound::receive_one: frame count, topic frame,
// batch, then the sequence tracker per record) and the outbound side's subscription parser
// (Outbound::handle_subscriptions, whose XPUB hands it the first frame in a 512-byte buffer). Whatever
// arrives must be refused or decoded without reading outside its frame, and what is decoded must be what the
// encoder would have sent.
//
// Input: up to kMaxFrames frames, each a 2-byte little-endian length and that many bytes (a length beyond the
// end of the input takes the rest). Each frame gets an allocation of its own exact size, as a ZeroMQ frame
// has, so that AddressSanitizer sees a read one byte past it.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <optional>
#include <span>
#include <string_view>
#include <vector>

#include "bridge/sequence_tracker.h"
#include "bridge/wire_format.h"
#include "shmbus/topic_name.h"

using namespace shmbus::bridge;

namespace {

constexpr std::size_t kMaxFrames = 4;          // two make a message; more exercise the "drained whole" path
constexpr std::size_t kSubscriptionBuf = 512;  // Outbound::handle_subscriptions' receive buffer

using Frame = std::vector<std::byte>;

std::vector<Frame> split(const uint8_t* data, std::size_t size) {
  std::vector<Frame> frames;
  std::size_t at = 0;
  while (at < size && frames.size() < kMaxFrames) {
    std::size_t length = data[at];
    if (at + 1 < size) length |= static_cast<std::size_t>(data[at + 1]) << 8;
    at += 2;
    if (at > size) at = size;
    length = std::min(length, size - at);
    const auto* begin = reinterpret_cast<const std::byte*>(data + at);
    frames.emplace_back(begin, begin + length);
    at += length;
  }
  return frames;
}

bool same_bytes(std::span<const std::byte> a, std::string_view b) {
  return a.size() == b.size() && (a.empty() || std::memcmp(a.data(), b.data(), a.size()) == 0);
}

// parse_topic_frame's promise: a valid topic name, the frame without its one trailing NUL.
std::optional<std::string_view> checked_topic(std::span<const std::byte> frame) {
  const auto topic = parse_topic_frame(frame);
  if (!topic) return std::nullopt;
  if (frame.size() != topic->size() + 1 || frame.back() != std::byte{0}) __builtin_trap();
  if (reinterpret_cast<const std::byte*>(topic->data()) != frame.data()) __builtin_trap();
  if (topic->find('\0') != std::string_view::npos || !shmbus::validate_topic_name(*topic).ok())
    __builtin_trap();
  if (!same_bytes(frame, topic_frame(*topic))) __builtin_trap();  // the encoder sends exactly this frame
  return topic;
}

// decode_batch's promise: kNone only for a frame of magic and version kWireVersion holding one or more whole
// records (at most kMaxBatchRecords), which the encoder rebuilds byte for byte (every byte is a field) from
// payloads inside the frame; kUnknownVersion only with the magic and another version.
std::optional<BatchHeader> checked_batch(std::span<const std::byte> frame, std::vector<WireRecord>* records) {
  BatchHeader h;
  const BatchError e = decode_batch(frame, &h, records);
  const bool magic = frame.size() >= 5 && frame[0] == std::byte{0x42} && frame[1] == std::byte{0x53} &&
                     frame[2] == std::byte{0x42} && frame[3] == std::byte{0x52};
  switch (e) {
    case BatchError::kNone: {
      if (!magic || frame[kOffsetVersion] != std::byte{kWireVersion} || records->empty() ||
          records->size() > kMaxBatchRecords) {
        __builtin_trap();
      }
      for (const WireRecord& r : *records) {
        if (r.payload.data() < frame.data() + kBatchHeaderSize + kRecordHeaderSize ||
            r.payload.data() + r.payload.size() > frame.data() + frame.size()) {
          __builtin_trap();
        }
      }
      const std::vector<std::byte> again = encode_batch(h, *records);
      if (again.size() != frame.size() || std::memcmp(again.data(), frame.data(), frame.size()) != 0)
        __builtin_trap();
      return h;
    }
    case BatchError::kUnknownVersion:
      if (!magic || frame[kOffsetVersion] == std::byte{kWireVersion}) __builtin_trap();
      return std::nullopt;
    case BatchError::kMalformed:
      if (magic && frame[kOffsetVersion] != std::byte{kWireVersion})
        __builtin_trap();  // that is kUnknownVersion
      return std::nullopt;
  }
  __builtin_trap();  // no other value
}

// What Outbound::handle_subscriptions does with one frame from its XPUB.
void subscription(std::span<const std::byte> frame) {
  if (frame.size() > kSubscriptionBuf) return;  // refused before parsing
  const auto s = parse_subscription_frame(frame);
  if (!s) return;
  if (frame[0] != std::byte{0} && frame[0] != std::byte{1}) __builtin_trap();
  if (s->subscribe != (frame[0] == std::byte{1})) __builtin_trap();
  const auto topic = checked_topic(frame.subspan(1));
  if (!topic || *topic != s->wire_topic) __builtin_trap();
  if (!same_bytes(frame, subscription_frame(s->wire_topic, s->subscribe))) __builtin_trap();
}

// What Inbound::receive_one does before it publishes: topic, batch, frame count, then de-duplication of
// each record (Inbound::deliver).
void message(const std::vector<Frame>& frames) {
  const auto wire = checked_topic(frames[0]);
  if (frames.size() < 2 || !wire) return;  // counted as malformed, dropped whole
  std::vector<WireRecord> records;
  const auto h = checked_batch(frames[1], &records);
  if (!h || frames.size() != 2) return;
  // A fresh tracker: the first record of a stream is delivered, the same sequence again (from another path,
  // or relayed with one more hop) is a duplicate, and an earlier epoch of the same origin is stale.
  SequenceTracker tracker;
  const WireRecord& r = records.front();
  const auto first = tracker.observe(h->origin_id, h->origin_epoch, *wire, r.sequence);
  if (first.verdict != SequenceTracker::Verdict::kDeliver || first.missing != 0) __builtin_trap();
  const BatchHeader relayed{.hops = static_cast<uint8_t>(h->hops + 1),  // as Inbound::deliver relays it
                            .flags = static_cast<uint16_t>(h->flags | kFlagRelayed),
                            .origin_id = h->origin_id,
                            .origin_epoch = h->origin_epoch};
  const std::vector<std::byte> bytes = encode_batch(relayed, std::span(&r, 1));
  BatchHeader back;
  std::vector<WireRecord> back_records;
  if (decode_batch(bytes, &back, &back_records) != BatchError::kNone || back.hops != relayed.hops ||
      back.flags != relayed.flags || back.origin_id != h->origin_id || back_records.size() != 1 ||
      back_records[0].sequence != r.sequence || back_records[0].payload.size() != r.payload.size()) {
    __builtin_trap();
  }
  if (tracker.observe(back.origin_id, back.origin_epoch, *wire, back_records[0].sequence).verdict !=
      SequenceTracker::Verdict::kDuplicate) {
    __builtin_trap();
  }
  // The sequence just below the first one seen may still come along a slower path: once, late.
  if (r.sequence > 1) {
    const auto late = tracker.observe(h->origin_id, h->origin_epoch, *wire, r.sequence - 1);
    if (late.verdict != SequenceTracker::Verdict::kLate || late.filled_gap) __builtin_trap();
    if (tracker.observe(h->origin_id, h->origin_epoch, *wire, r.sequence - 1).verdict !=
        SequenceTracker::Verdict::kDuplicate) {
      __builtin_trap();
    }
  }
  if (h->origin_epoch > 0 &&
      tracker.observe(h->origin_id, h->origin_epoch - 1, *wire, r.sequence + 1).verdict !=
          SequenceTracker::Verdict::kStale) {
    __builtin_trap();
  }
  if (r.sequence < UINT64_MAX - 1) {
    const auto next = tracker.observe(h->origin_id, h->origin_epoch, *wire, r.sequence + 2);
    if (next.verdict != SequenceTracker::Verdict::kDeliver || next.missing != 1) __builtin_trap();
  }
  // The rest of the batch as the inbound side sees it: each record delivered or refused, never a crash.
  for (std::size_t i = 1; i < records.size(); ++i)
    (void)tracker.observe(h->origin_id, h->origin_epoch, *wire, records[i].sequence);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::vector<Frame> frames = split(data, size);
  if (frames.empty()) return 0;
  subscription(frames[0]);
  message(frames);
  return 0;
}

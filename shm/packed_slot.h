// A packed slot: several small messages of one batch in one ring slot (SlotHeader::flags & kSlotPacked), so
// that a batch of 64 B messages costs one cache line a message instead of two (a header line and a payload
// line each). Written only by RingWriter::write_batch on lossless rings, whose slots are never overwritten
// while a reader is on them.
//
//   payload: uint32_t count | uint32_t size[count] | pad to 32 | message 0 | pad to 32 | message 1 | ...
//
// Each message starts at a multiple of kPayloadAlignment (32) from the payload, as a slot's single message
// does, so a typed message read in place stays aligned. SlotHeader::size is the bytes used, table included.
//
// A reader trusts nothing here: every count, size and offset is checked against the slot's size before use
// (a buggy writer corrupts only what its readers get, never their memory).
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>

#include "shm/topic_segment_layout.h"

namespace shmbus::shm {

inline constexpr uint64_t round_up_payload(uint64_t bytes) {
  return (bytes + kPayloadAlignment - 1) & ~uint64_t{kPayloadAlignment - 1};
}
// Where the first message starts: after the count and the size table. 64-bit: a count read from shared
// memory may be anything.
inline constexpr uint64_t packed_first_offset(uint64_t count) {
  return round_up_payload(sizeof(uint32_t) * (1 + count));
}

// One message of a packed slot, and where the next one starts.
struct PackedMessage {
  const std::byte* data;
  uint32_t size;
  uint32_t next_offset;  // where message index + 1 starts
  bool last;             // no message follows in this slot
};

// Message `index` of the packed slot whose payload is `payload` (`total` bytes used, as checked against the
// topic's maximum). `offset` is where it starts: the previous message's next_offset (ignored for index 0).
// False if the slot's table does not hold such a message inside `total`. Reads each shared word once.
inline bool packed_message(const std::byte* payload, uint32_t total, uint32_t index, uint32_t offset,
                           PackedMessage* out) {
  if (total < sizeof(uint32_t)) return false;
  uint32_t count = 0;
  std::memcpy(&count, payload, sizeof count);
  const uint64_t first = packed_first_offset(count);
  if (index >= count || first > total) return false;
  const uint64_t at = index == 0 ? first : offset;
  if (at < first) return false;
  uint32_t size = 0;
  std::memcpy(&size, payload + sizeof(uint32_t) * (1 + uint64_t{index}), sizeof size);
  if (at > total || size > total - at) return false;
  out->data = payload + at;
  out->size = size;
  // total <= the topic's maximum (< 2^32 - 32): rounding up stays within 32 bits.
  out->next_offset = static_cast<uint32_t>(round_up_payload(at + size));
  out->last = index + 1 == count;
  return true;
}

// Messages in a packed slot's table, 0 if the table does not fit in `total` (what a reader says it lost
// when it skips a corrupt slot).
inline uint32_t packed_count(const std::byte* payload, uint32_t total) {
  if (total < sizeof(uint32_t)) return 0;
  uint32_t count = 0;
  std::memcpy(&count, payload, sizeof count);
  return packed_first_offset(count) <= total ? count : 0;
}

}  // namespace shmbus::shm

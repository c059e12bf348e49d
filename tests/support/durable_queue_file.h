// Where a durable queue file keeps its entries, read from its header on disk, for tests that damage the file
// at a chosen entry.
#pragma once

#include <cstdint>
#include <fstream>
#include <optional>
#include <string>

#include "shm/work_queue_layout.h"

namespace shmbus::test {

struct QueueFileLayout {
  uint64_t entries_offset = 0;  // of entry slot 0
  uint64_t slot_stride = 0;     // bytes from one entry slot to the next
  uint64_t capacity = 0;        // entry slots
  // Where entry slot `i` starts in the file.
  uint64_t entry(uint64_t i) const { return entries_offset + i * slot_stride; }
};

// The layout in the header at the start of `file`, or nothing if the file is shorter than a header.
inline std::optional<QueueFileLayout> read_queue_layout(const std::string& file) {
  alignas(shm::WorkQueueHeader) char bytes[sizeof(shm::WorkQueueHeader)];
  std::ifstream f(file, std::ios::binary);
  if (!f.read(bytes, sizeof bytes)) return std::nullopt;
  const auto* h = reinterpret_cast<const shm::WorkQueueHeader*>(bytes);
  return QueueFileLayout{h->entries_offset, h->slot_stride, h->capacity};
}

}  // namespace shmbus::test

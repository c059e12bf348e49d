// A second virtual mapping of the first bytes of a shared mapping, for a thread that must keep using those
// pages while their original mapping may be unmapped by another thread (a subscriber re-opening a reshaped
// topic).
#pragma once

#include <cstddef>
#include <cstdint>

#include "shm/truncation_guard.h"
#include "shmbus/status.h"

namespace shmbus::detail {

class MappingAlias {
 public:
  MappingAlias() = default;
  MappingAlias(MappingAlias&& other) noexcept;
  MappingAlias& operator=(MappingAlias&& other) noexcept;
  ~MappingAlias();  // unmaps the alias; the original mapping is untouched

  // Maps the same pages as [original, original + length) at a new address (mremap with old_size 0, which only
  // shared mappings support), guarded as shm::Segment guards its mappings: a segment cut short replaces the
  // alias with zero pages and writes `truncation_value` at `truncation_word` (shm/truncation_guard.h).
  // REQUIRES: `original` is the page-aligned start of a MAP_SHARED mapping at least `length` bytes long.
  static Result<MappingAlias> create(std::byte* original, std::size_t length,
                                     std::size_t truncation_word = shm::kNoWord,
                                     uint32_t truncation_value = 0);

  std::byte* data() const { return data_; }

 private:
  std::byte* data_ = nullptr;
  std::size_t length_ = 0;
};

}  // namespace shmbus::detail

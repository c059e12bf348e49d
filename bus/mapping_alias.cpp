#include "bus/mapping_alias.h"

#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>
#include <utility>

#include "shm/truncation_guard.h"

namespace shmbus::detail {

MappingAlias::MappingAlias(MappingAlias&& other) noexcept
    : data_(std::exchange(other.data_, nullptr)), length_(std::exchange(other.length_, 0)) {}

MappingAlias& MappingAlias::operator=(MappingAlias&& other) noexcept {
  if (this != &other) {
    if (data_ != nullptr) {
      shm::unguard_mapping(data_);
      munmap(data_, length_);
    }
    data_ = std::exchange(other.data_, nullptr);
    length_ = std::exchange(other.length_, 0);
  }
  return *this;
}

MappingAlias::~MappingAlias() {
  if (data_ != nullptr) {
    shm::unguard_mapping(data_);
    munmap(data_, length_);
  }
}

Result<MappingAlias> MappingAlias::create(std::byte* original, std::size_t length,
                                          std::size_t truncation_word, uint32_t truncation_value) {
  const auto page = static_cast<std::size_t>(sysconf(_SC_PAGESIZE));
  const std::size_t rounded = (length + page - 1) / page * page;
  void* p = mremap(original, 0, rounded, MREMAP_MAYMOVE);
  if (p == MAP_FAILED) {
    return Status{Errc::kInternal, std::string("cannot alias a topic mapping: ") + std::strerror(errno)};
  }
  MappingAlias alias;
  alias.data_ = static_cast<std::byte*>(p);
  alias.length_ = rounded;
  shm::guard_mapping(alias.data_, alias.length_, truncation_word, truncation_value);
  return alias;
}

}  // namespace shmbus::detail

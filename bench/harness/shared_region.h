#pragma once
// Nameless shared memory for a process pair.

#include <sys/mman.h>

#include <cerrno>
#include <cstddef>
#include <string>
#include <system_error>

namespace bench {

// An anonymous MAP_SHARED mapping made before fork: parent and child see the same pages and
// there is no name to leak in /dev/shm if either dies. MAP_POPULATE pre-faults every page,
// because a minor fault costs ~13 µs here (README trap 2) and must not land in a measurement.
class SharedRegion {
 public:
  explicit SharedRegion(size_t bytes) : size_(bytes) {
    void* p = mmap(nullptr, size_, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
    if (p == MAP_FAILED)
      throw std::system_error(errno, std::generic_category(),
                              "mmap " + std::to_string(bytes) + " shared bytes");
    data_ = p;
  }
  ~SharedRegion() { munmap(data_, size_); }
  SharedRegion(const SharedRegion&) = delete;
  SharedRegion& operator=(const SharedRegion&) = delete;

  // Page-aligned, zero-filled at creation.
  void* data() const { return data_; }
  size_t size() const { return size_; }

 private:
  void* data_ = nullptr;
  size_t size_ = 0;
};

}  // namespace bench

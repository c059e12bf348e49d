// A named POSIX shared-memory segment, created and mapped through Boost.Interprocess.
//
// The daemon creates segments (owner-only or group mode, never world-readable by default); clients open the
// names the daemon hands them. Mappings are pre-faulted (MAP_POPULATE) because a minor page fault costs more
// than many whole messages on the hot path.
#pragma once

#include <sys/types.h>

#include <boost/interprocess/mapped_region.hpp>
#include <boost/interprocess/shared_memory_object.hpp>
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace shmbus::shm {

class Segment {
 public:
  Segment() = default;
  ~Segment();
  Segment(Segment&& other) noexcept;
  Segment& operator=(Segment&& other) noexcept;

  // Creates `name` (which must start with '/'), sized `size` bytes, zero-filled, with permission bits `mode`
  // and, when given (not -1), group `gid`. Fails if it exists. Throws std::runtime_error with the reason.
  static Segment create(const std::string& name, std::size_t size, mode_t mode,
                        gid_t gid = static_cast<gid_t>(-1));

  // Opens and maps an existing segment read-write. Throws std::runtime_error with the reason (including
  // "permission denied" when the caller's uid/gid may not open it).
  static Segment open(const std::string& name);

  // Maps a segment from a descriptor received from the daemon (SCM_RIGHTS); `size` from fstat. The caller
  // keeps ownership of `fd` (it may close it after this returns). Throws std::runtime_error.
  static Segment map_fd(int fd, const std::string& name);

  // A duplicate descriptor of this segment's shared-memory object, for passing to a client. -1 on failure.
  int duplicate_fd() const;

  // Removes the name; existing mappings stay valid. Returns false if it did not exist.
  static bool remove(const std::string& name);

  // Names (with the leading '/') of the segments in /dev/shm that start with `prefix` (also with '/').
  static std::vector<std::string> list(const std::string& prefix);

  // A peer that cuts the segment short (ftruncate) cannot kill this process with SIGBUS: the mapping is
  // guarded (shm/truncation_guard.h), and replaced by private zero pages at the first access past the new
  // end. `value` is then written at `offset` of the replacement (a word that tells its users the segment is
  // gone).
  void set_truncation_word(std::size_t offset, uint32_t value);
  // True once the mapping was replaced that way: it no longer shows the shared segment.
  bool replaced() const;
  // The segment's current size (fstat), for creators and openers by name; size() when it cannot tell.
  std::size_t current_size() const;
  // Grows a segment cut short back to size() (the lost pages come back zero-filled). Creators and openers
  // by name only. False on failure.
  bool restore_size() const;
  // Writes `value` at `offset` of the segment through its descriptor, for when this mapping was replaced.
  // Creators and openers by name only. False on failure.
  bool write_through(std::size_t offset, uint32_t value) const;

  std::byte* data() const { return static_cast<std::byte*>(region_.get_address()); }
  std::size_t size() const { return region_.get_size(); }
  const std::string& name() const { return name_; }
  bool valid() const { return data() != nullptr; }

 private:
  void guard();

  std::string name_;
  int fd_ = -1;  // kept by creators for duplicate_fd(); closed by the destructor
  bool guarded_ = false;
  boost::interprocess::mapped_region region_;
};

}  // namespace shmbus::shm

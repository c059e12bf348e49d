// A regular file mapped MAP_SHARED through Boost.Interprocess: the backing of durable work queues. Changes
// reach the page cache at once (so they survive any process crash) and the disk on msync or writeback.
#pragma once

#include <boost/interprocess/file_mapping.hpp>
#include <boost/interprocess/mapped_region.hpp>
#include <cstddef>
#include <cstdint>
#include <string>

namespace shmbus::shm {

class MappedFile {
 public:
  MappedFile() = default;
  ~MappedFile();
  MappedFile(MappedFile&& other) noexcept;
  MappedFile& operator=(MappedFile&& other) noexcept;

  // Opens `path` (created owner-only if missing), grows it to `size` bytes if shorter (zero-filled, its
  // blocks allocated at once, so a full disk fails here rather than as SIGBUS later) and maps `size` bytes.
  // `*previous_size` gets the size the file had (0 if new). Throws std::runtime_error ("not enough disk
  // space for <path>" on ENOSPC; a file it created is removed again).
  static MappedFile open(const std::string& path, std::size_t size, std::size_t* previous_size);
  // The size of the file at `path`, or -1 if it cannot be read.
  static long long file_size(const std::string& path);

  // A duplicate descriptor of the file, for passing to a client. -1 on failure.
  int duplicate_fd() const;

  // As shm::Segment: the mapping is guarded against a participant cutting the file short
  // (shm/truncation_guard.h); `value` is written at `offset` of its replacement.
  void set_truncation_word(std::size_t offset, uint32_t value);
  bool replaced() const;
  // The file's current size (fstat); size() when it cannot tell.
  std::size_t current_size() const;
  // Writes `value` at `offset` of the file, for when this mapping was replaced. False on failure.
  bool write_through(std::size_t offset, uint32_t value) const;

  std::byte* data() const { return static_cast<std::byte*>(region_.get_address()); }
  std::size_t size() const { return region_.get_size(); }
  const std::string& path() const { return path_; }

 private:
  int fd() const { return file_.get_mapping_handle().handle; }

  std::string path_;
  bool guarded_ = false;
  boost::interprocess::file_mapping file_;
  boost::interprocess::mapped_region region_;
};

}  // namespace shmbus::shm

#include "shm/mapped_file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <stdexcept>
#include <string>
#include <utility>

#include "shm/truncation_guard.h"

namespace shmbus::shm {

namespace bip = boost::interprocess;

long long MappedFile::file_size(const std::string& path) {
  struct stat st {};
  return stat(path.c_str(), &st) == 0 ? static_cast<long long>(st.st_size) : -1;
}

MappedFile MappedFile::open(const std::string& path, std::size_t size, std::size_t* previous_size) {
  // Created and sized with POSIX calls (Boost.Interprocess maps files but does not create or grow them).
  const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (fd < 0) throw std::runtime_error("cannot open " + path + ": " + std::strerror(errno));
  struct stat st {};
  if (fstat(fd, &st) != 0) {
    const int e = errno;
    ::close(fd);
    throw std::runtime_error("cannot size " + path + ": " + std::strerror(e));
  }
  if (static_cast<std::size_t>(st.st_size) < size) {
    // Blocks are reserved now, not at the first write: ftruncate alone makes a sparse file, and a full disk
    // would then surface as SIGBUS in whichever process first touches an unbacked page of the mapping.
    const int e = posix_fallocate(fd, 0, static_cast<off_t>(size));
    if (e != 0) {
      // A file we created holds nothing yet: leave no empty file behind. A shorter existing one is kept.
      if (st.st_size == 0) ::unlink(path.c_str());
      ::close(fd);
      throw std::runtime_error(
          (e == ENOSPC || e == EDQUOT ? "not enough disk space for " : "cannot allocate ") + path + " (" +
          std::to_string(size) + " bytes): " + std::strerror(e));
    }
  }
  ::close(fd);
  if (previous_size) *previous_size = static_cast<std::size_t>(st.st_size);
  MappedFile f;
  f.path_ = path;
  try {
    f.file_ = bip::file_mapping(path.c_str(), bip::read_write);
    f.region_ = bip::mapped_region(f.file_, bip::read_write, 0, size);
    f.guarded_ = guard_mapping(f.data(), f.size());
  } catch (const bip::interprocess_exception& e) {
    throw std::runtime_error("cannot map " + path + ": " + e.what());
  }
  return f;
}

int MappedFile::duplicate_fd() const {
  return fcntl(fd(), F_DUPFD_CLOEXEC, 0);
}

MappedFile::~MappedFile() {
  if (guarded_) unguard_mapping(data());
}

MappedFile::MappedFile(MappedFile&& other) noexcept
    : path_(std::move(other.path_)),
      guarded_(std::exchange(other.guarded_, false)),
      file_(std::move(other.file_)),
      region_(std::move(other.region_)) {}

MappedFile& MappedFile::operator=(MappedFile&& other) noexcept {
  if (this != &other) {
    if (guarded_) unguard_mapping(data());  // before the move below unmaps it
    path_ = std::move(other.path_);
    guarded_ = std::exchange(other.guarded_, false);
    file_ = std::move(other.file_);
    region_ = std::move(other.region_);
  }
  return *this;
}

void MappedFile::set_truncation_word(std::size_t offset, uint32_t value) {
  if (guarded_) shm::set_truncation_word(data(), offset, value);
}

bool MappedFile::replaced() const {
  return guarded_ && mapping_replaced(data());
}

std::size_t MappedFile::current_size() const {
  struct stat st {};
  if (data() == nullptr || fstat(fd(), &st) != 0 || st.st_size < 0) return size();
  return static_cast<std::size_t>(st.st_size);
}

bool MappedFile::write_through(std::size_t offset, uint32_t value) const {
  return data() != nullptr && pwrite(fd(), &value, sizeof value, static_cast<off_t>(offset)) == sizeof value;
}

}  // namespace shmbus::shm

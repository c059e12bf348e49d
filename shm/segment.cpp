#include "shm/segment.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <boost/interprocess/exceptions.hpp>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <stdexcept>
#include <utility>

#include "shm/truncation_guard.h"

namespace shmbus::shm {
namespace bip = boost::interprocess;

namespace {

// MAP_POPULATE pre-faults the whole mapping at setup instead of on the hot path.
const bip::map_options_t kMapOptions = MAP_POPULATE;

std::runtime_error failure(const std::string& what, const std::string& name,
                           const bip::interprocess_exception& e) {
  std::string reason = e.what();
  if (e.get_error_code() == bip::security_error) reason = "permission denied";
  return std::runtime_error(what + " shared-memory segment " + name + ": " + reason);
}

}  // namespace

Segment Segment::create(const std::string& name, std::size_t size, mode_t mode, gid_t gid) {
  Segment s;
  s.name_ = name;
  try {
    bip::permissions perms(mode);
    bip::shared_memory_object object(bip::create_only, name.c_str(), bip::read_write, perms);
    const int fd = object.get_mapping_handle().handle;
    // Boost applies the mode through umask-free fchmod only on some versions; make it explicit.
    if (fchmod(fd, mode) != 0 ||
        (gid != static_cast<gid_t>(-1) && fchown(fd, static_cast<uid_t>(-1), gid) != 0)) {
      const int err = errno;
      bip::shared_memory_object::remove(name.c_str());
      throw std::runtime_error("cannot set permissions on " + name + ": " + std::strerror(err));
    }
    object.truncate(static_cast<bip::offset_t>(size));
    // Reserve the pages now: tmpfs grows lazily, MAP_POPULATE ignores a failure to allocate, and a full
    // /dev/shm would otherwise surface as SIGBUS in whichever process first touches an unbacked page.
    if (const int err = posix_fallocate(fd, 0, static_cast<off_t>(size)); err != 0) {
      bip::shared_memory_object::remove(name.c_str());
      throw std::runtime_error(
          (err == ENOSPC ? "not enough shared memory (/dev/shm is full) for segment " : "cannot allocate ") +
          name + " (" + std::to_string(size) + " bytes): " + std::strerror(err));
    }
    s.region_ = bip::mapped_region(object, bip::read_write, 0, size, nullptr, kMapOptions);
    s.fd_ = fcntl(fd, F_DUPFD_CLOEXEC, 0);
    s.guard();
  } catch (const bip::interprocess_exception& e) {
    bip::shared_memory_object::remove(name.c_str());
    throw failure("cannot create", name, e);
  }
  return s;
}

Segment Segment::open(const std::string& name) {
  Segment s;
  s.name_ = name;
  try {
    bip::shared_memory_object object(bip::open_only, name.c_str(), bip::read_write);
    s.region_ = bip::mapped_region(object, bip::read_write, 0, 0, nullptr, kMapOptions);
    s.fd_ = fcntl(object.get_mapping_handle().handle, F_DUPFD_CLOEXEC, 0);
    s.guard();
  } catch (const bip::interprocess_exception& e) {
    throw failure("cannot open", name, e);
  }
  return s;
}

namespace {
// Lets Boost map a descriptor that did not come from a name (one received over the control socket).
struct DescriptorMapping {
  int fd;
  bip::mapping_handle_t get_mapping_handle() const {
    return bip::ipcdetail::mapping_handle_from_file_handle(fd);
  }
};
}  // namespace

Segment Segment::map_fd(int fd, const std::string& name) {
  struct stat st {};
  if (fstat(fd, &st) != 0 || st.st_size <= 0) {
    throw std::runtime_error("cannot map shared-memory segment " + name + ": bad descriptor");
  }
  Segment s;
  s.name_ = name;
  try {
    s.region_ = bip::mapped_region(DescriptorMapping{fd}, bip::read_write, 0,
                                   static_cast<std::size_t>(st.st_size), nullptr, kMapOptions);
    s.guard();
  } catch (const bip::interprocess_exception& e) {
    throw failure("cannot map", name, e);
  }
  return s;
}

int Segment::duplicate_fd() const {
  return fd_ < 0 ? -1 : fcntl(fd_, F_DUPFD_CLOEXEC, 0);
}

void Segment::guard() {
  guarded_ = guard_mapping(data(), size());
}

void Segment::set_truncation_word(std::size_t offset, uint32_t value) {
  if (guarded_) shm::set_truncation_word(data(), offset, value);
}

bool Segment::replaced() const {
  return guarded_ && mapping_replaced(data());
}

std::size_t Segment::current_size() const {
  struct stat st {};
  if (fd_ < 0 || fstat(fd_, &st) != 0 || st.st_size < 0) return size();
  return static_cast<std::size_t>(st.st_size);
}

bool Segment::restore_size() const {
  return fd_ >= 0 && ftruncate(fd_, static_cast<off_t>(size())) == 0 &&
         posix_fallocate(fd_, 0, static_cast<off_t>(size())) == 0;
}

bool Segment::write_through(std::size_t offset, uint32_t value) const {
  return fd_ >= 0 && pwrite(fd_, &value, sizeof value, static_cast<off_t>(offset)) == sizeof value;
}

Segment::~Segment() {
  if (guarded_) unguard_mapping(data());
  if (fd_ >= 0) close(fd_);
}

Segment::Segment(Segment&& other) noexcept
    : name_(std::move(other.name_)),
      fd_(std::exchange(other.fd_, -1)),
      guarded_(std::exchange(other.guarded_, false)),
      region_(std::move(other.region_)) {}

Segment& Segment::operator=(Segment&& other) noexcept {
  if (this != &other) {
    if (guarded_) unguard_mapping(data());  // before the move below unmaps it
    if (fd_ >= 0) close(fd_);
    name_ = std::move(other.name_);
    fd_ = std::exchange(other.fd_, -1);
    guarded_ = std::exchange(other.guarded_, false);
    region_ = std::move(other.region_);
  }
  return *this;
}

bool Segment::remove(const std::string& name) {
  return bip::shared_memory_object::remove(name.c_str());
}

std::vector<std::string> Segment::list(const std::string& prefix) {
  std::vector<std::string> names;
  std::error_code ec;
  const std::string bare = prefix.empty() || prefix[0] != '/' ? prefix : prefix.substr(1);
  for (const auto& entry : std::filesystem::directory_iterator("/dev/shm", ec)) {
    const std::string file = entry.path().filename().string();
    if (file.rfind(bare, 0) == 0) names.push_back("/" + file);
  }
  return names;
}

}  // namespace shmbus::shm

#include "bridge/curve_keys.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zmq.h>

#include <array>
#include <cerrno>
#include <cstring>
#include <fstream>

namespace shmbus::bridge {
namespace {

Status write_new_file(const std::string& path, const std::string& text, mode_t mode) {
  // O_EXCL: never overwrite a key someone may rely on.
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
  if (fd < 0) return {Errc::kInvalidArgument, path + ": " + std::strerror(errno)};
  const bool ok = ::write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size());
  ::close(fd);
  if (!ok) return {Errc::kInternal, path + ": short write"};
  return Status::Ok();
}

}  // namespace

bool is_z85_key(const std::string& key) {
  std::array<uint8_t, 32> raw{};
  return key.size() == 40 && zmq_z85_decode(raw.data(), key.c_str()) != nullptr;
}

Result<std::string> read_key_file(const std::string& path) {
  std::ifstream in(path);
  if (!in)
    return Status{Errc::kInvalidArgument, "cannot read key file " + path + ": " + std::strerror(errno)};
  for (std::string line; std::getline(in, line);) {
    const auto first = line.find_first_not_of(" \t\r");
    if (first == std::string::npos || line[first] == '#') continue;
    const auto last = line.find_last_not_of(" \t\r");
    std::string key = line.substr(first, last - first + 1);
    if (!is_z85_key(key))
      return Status{Errc::kInvalidArgument, "key file " + path + " does not hold a Z85 CURVE key"};
    return key;
  }
  return Status{Errc::kInvalidArgument, "key file " + path + " is empty"};
}

Result<std::string> public_key_of(const std::string& secret_key) {
  std::array<char, 41> pub{};
  if (!is_z85_key(secret_key) || zmq_curve_public(pub.data(), secret_key.c_str()) != 0) {
    return Status{Errc::kInvalidArgument, "not a CURVE secret key"};
  }
  return std::string(pub.data(), 40);
}

Status generate_key_files(const std::string& prefix) {
  std::array<char, 41> pub{}, sec{};
  if (zmq_curve_keypair(pub.data(), sec.data()) != 0) {
    return {Errc::kInternal, std::string("zmq_curve_keypair: ") + zmq_strerror(zmq_errno())};
  }
  auto s = write_new_file(
      prefix + ".key",
      "# shmbus-bridge CURVE secret key: keep private\n" + std::string(sec.data(), 40) + "\n", 0600);
  if (!s.ok()) return s;
  return write_new_file(prefix + ".pub",
                        "# shmbus-bridge CURVE public key\n" + std::string(pub.data(), 40) + "\n", 0644);
}

}  // namespace shmbus::bridge

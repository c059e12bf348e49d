#include "bus/runtime_paths.h"

#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>

namespace shmbus::detail {

Status validate_instance_name(const std::string& instance) {
  if (instance.empty() || instance.size() > 64) {
    return {Errc::kInvalidArgument, "instance name must be 1..64 characters"};
  }
  for (char c : instance) {
    const bool ok =
        (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '-';
    if (!ok) return {Errc::kInvalidArgument, "instance name '" + instance + "' may hold only [A-Za-z0-9_-]"};
  }
  return Status::Ok();
}

std::string resolve_instance(const std::string& requested) {
  if (!requested.empty()) return requested;
  const char* env = std::getenv("SHMBUS_INSTANCE");
  return env && *env ? env : "default";
}

std::string resolve_runtime_dir(const std::string& requested, bool create) {
  if (!requested.empty()) return requested;
  const char* env = std::getenv("SHMBUS_RUNTIME_DIR");
  if (env && *env) return env;
  struct stat st {};
  if (stat("/run/shmbus", &st) == 0 && S_ISDIR(st.st_mode)) return "/run/shmbus";
  if (create && mkdir("/run/shmbus", 0755) == 0) return "/run/shmbus";
  return "/tmp/shmbus";
}

std::string socket_path(const std::string& runtime_dir, const std::string& instance) {
  return runtime_dir + "/" + instance + ".sock";
}

std::string lock_path(const std::string& runtime_dir, const std::string& instance) {
  return runtime_dir + "/" + instance + ".lock";
}

std::string segment_prefix(const std::string& instance) {
  return "/shmbus." + instance + ".";
}

}  // namespace shmbus::detail

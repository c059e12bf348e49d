// Where an instance's daemon socket, lock file and shared-memory names are.
#pragma once

#include <string>

#include "shmbus/status.h"

namespace shmbus::detail {

// Instance names: 1..64 of [A-Za-z0-9_-] (they become parts of file and segment names).
Status validate_instance_name(const std::string& instance);

// `requested`, else $SHMBUS_INSTANCE, else "default".
std::string resolve_instance(const std::string& requested);
// `requested`, else $SHMBUS_RUNTIME_DIR, else /run/shmbus if it exists or can be created, else /tmp/shmbus.
std::string resolve_runtime_dir(const std::string& requested, bool create);

std::string socket_path(const std::string& runtime_dir, const std::string& instance);
std::string lock_path(const std::string& runtime_dir, const std::string& instance);
// Every segment of an instance starts with this ("/shmbus.<instance>.").
std::string segment_prefix(const std::string& instance);

}  // namespace shmbus::detail

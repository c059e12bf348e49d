// Which local topics have subscribers that are not this process, read from the daemon's statistics document
// (the only view of other participants' endpoints the client API offers).
#pragma once

#include <sys/types.h>

#include <set>
#include <string>

#include "shmbus/status.h"

namespace shmbus::bridge {

// kProtocolError if the document does not parse.
Result<std::set<std::string>> topics_with_foreign_subscribers(const std::string& daemon_statistics, pid_t self);

}  // namespace shmbus::bridge

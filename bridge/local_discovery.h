// Which local topics have subscribers that are not this process, read from the daemon's statistics document
// (the only view of other participants' endpoints the client API offers).
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <set>
#include <string>

#include "shmbus/status.h"

namespace shmbus::bridge {

// kProtocolError if the document does not parse. `daemon_pid` (if given) receives the daemon's pid from the
// document's [daemon] table (0 if absent): a different pid than last time means the daemon was restarted.
Result<std::set<std::string>> topics_with_foreign_subscribers(const std::string& daemon_statistics,
                                                              pid_t self, int64_t* daemon_pid = nullptr);

}  // namespace shmbus::bridge

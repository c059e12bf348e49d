// Who may publish or subscribe: principals from the configuration, matched against the kernel's view of a
// peer (SO_PEERCRED uid/gid plus the supplementary groups of its process). Nothing the client says counts.
#pragma once

#include <sys/types.h>

#include <optional>
#include <string>
#include <vector>

#include "shmbus/status.h"

namespace shmbus::daemon {

struct Principal {
  enum class Kind { kAnyone, kUser, kGroup } kind = Kind::kAnyone;
  uint32_t id = 0;
};

// One allow list: "*", "user:NAME", "uid:N", "group:NAME", "gid:N". Names are resolved when parsed.
using AllowList = std::vector<Principal>;

// Parses one principal; kInvalidArgument naming it when malformed or unknown.
Result<Principal> parse_principal(const std::string& text);

// True if a process with `uid`, primary `gid` and supplementary `groups` matches one of `allow`.
bool allowed(const AllowList& allow, uid_t uid, gid_t gid, const std::vector<gid_t>& groups);

// The supplementary groups of the process at the other end of the connected Unix socket `fd`, as the kernel
// recorded them when it connected (SO_PEERGROUPS; not /proc/<pid>, which a reused pid could answer for).
// Empty when unavailable.
std::vector<gid_t> peer_groups(int fd);

// The default when no rule speaks: the daemon's own user and root; everyone else is denied.
AllowList default_allow_list();

}  // namespace shmbus::daemon

#include "daemon/access_policy.h"

#include <grp.h>
#include <pwd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <fstream>
#include <sstream>

namespace shmbus::daemon {
namespace {

std::optional<uint32_t> number(const std::string& s) {
  if (s.empty() || s.size() > 10 || !std::all_of(s.begin(), s.end(), ::isdigit)) return std::nullopt;
  const unsigned long v = std::stoul(s);
  if (v > 0xfffffffful) return std::nullopt;
  return static_cast<uint32_t>(v);
}

}  // namespace

Result<Principal> parse_principal(const std::string& text) {
  if (text == "*") return Principal{};
  const auto colon = text.find(':');
  const std::string kind = text.substr(0, colon),
                    value = colon == std::string::npos ? "" : text.substr(colon + 1);
  auto bad = [&](const std::string& why) {
    return Status{Errc::kInvalidArgument, "principal '" + text + "': " + why};
  };
  if (value.empty()) return bad("expected *, user:NAME, uid:N, group:NAME or gid:N");
  if (kind == "uid" || kind == "gid") {
    auto n = number(value);
    if (!n) return bad("not a number");
    return Principal{kind == "uid" ? Principal::Kind::kUser : Principal::Kind::kGroup, *n};
  }
  if (kind == "user") {
    const passwd* pw = getpwnam(value.c_str());
    if (!pw) return bad("no such user");
    return Principal{Principal::Kind::kUser, pw->pw_uid};
  }
  if (kind == "group") {
    const group* gr = getgrnam(value.c_str());
    if (!gr) return bad("no such group");
    return Principal{Principal::Kind::kGroup, gr->gr_gid};
  }
  return bad("expected *, user:NAME, uid:N, group:NAME or gid:N");
}

bool allowed(const AllowList& allow, uid_t uid, gid_t gid, const std::vector<gid_t>& groups) {
  for (const Principal& p : allow) {
    switch (p.kind) {
      case Principal::Kind::kAnyone:
        return true;
      case Principal::Kind::kUser:
        if (p.id == uid) return true;
        break;
      case Principal::Kind::kGroup:
        if (p.id == gid || std::find(groups.begin(), groups.end(), p.id) != groups.end()) return true;
        break;
    }
  }
  return false;
}

std::vector<gid_t> peer_groups(int fd) {
  std::vector<gid_t> groups(64);
  for (int attempt = 0; attempt < 4; ++attempt) {
    socklen_t len = static_cast<socklen_t>(groups.size() * sizeof(gid_t));
    if (getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, groups.data(), &len) == 0) {
      groups.resize(len / sizeof(gid_t));
      return groups;
    }
    if (errno != ERANGE) break;
    groups.resize(len / sizeof(gid_t) + 1);  // the kernel said how many it has
  }
  return {};
}

AllowList default_allow_list() {
  AllowList list{{Principal::Kind::kUser, 0}};
  if (geteuid() != 0) list.push_back({Principal::Kind::kUser, static_cast<uint32_t>(geteuid())});
  return list;
}

}  // namespace shmbus::daemon

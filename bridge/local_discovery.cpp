#include "bridge/local_discovery.h"

#include <toml++/toml.h>

namespace shmbus::bridge {

Result<std::set<std::string>> topics_with_foreign_subscribers(const std::string& daemon_statistics,
                                                              pid_t self, int64_t* daemon_pid) {
  toml::table doc;
  try {
    doc = toml::parse(daemon_statistics);
  } catch (const toml::parse_error& e) {
    return Status{Errc::kProtocolError,
                  std::string("unreadable daemon statistics: ") + std::string(e.description())};
  }
  if (daemon_pid) *daemon_pid = doc["daemon"]["pid"].value_or<int64_t>(0);
  std::set<std::string> topics;
  const toml::array* all = doc["topic"].as_array();
  if (!all) return topics;
  for (const toml::node& t : *all) {
    const toml::node_view<const toml::node> topic{t};
    auto name = topic["name"].value<std::string>();
    const toml::array* subs = topic["subscriber"].as_array();
    if (!name || !subs) continue;
    for (const toml::node& s : *subs) {
      auto pid = toml::node_view<const toml::node>{s}["pid"].value<int64_t>();
      if (pid && *pid != self) {
        topics.insert(*name);
        break;
      }
    }
  }
  return topics;
}

}  // namespace shmbus::bridge

#include "bridge/topic_mapper.h"

#include "shmbus/topic_name.h"
#include "shmbus/topic_pattern.h"

namespace shmbus::bridge {
namespace {

constexpr std::string_view kReservedPrefix = "shmbus/";

bool applies(Direction rule, Direction way) {
  return rule == Direction::kBoth || rule == way;
}

}  // namespace

std::optional<Mapping> TopicMapper::map(std::string_view from, Direction way, bool from_local) const {
  for (const Rule& r : rules_) {
    if (!applies(r.direction, way)) continue;
    const std::string& from_prefix = from_local ? r.local_prefix : r.remote_prefix;
    const std::string& to_prefix = from_local ? r.remote_prefix : r.local_prefix;
    if (from.size() <= from_prefix.size() || from.substr(0, from_prefix.size()) != from_prefix) continue;
    const std::string_view rest = from.substr(from_prefix.size());
    if (!validate_topic_name(rest).ok() || !topic_matches(r.pattern, rest)) continue;
    std::string to = to_prefix + std::string(rest);
    const std::string_view local = from_local ? from : std::string_view(to);
    if (local.substr(0, kReservedPrefix.size()) == kReservedPrefix) return std::nullopt;
    if (!validate_topic_name(to).ok()) return std::nullopt;
    return Mapping{std::move(to), &r};
  }
  return std::nullopt;
}

std::optional<Mapping> TopicMapper::local_to_wire(std::string_view local, Direction way) const {
  return map(local, way, /*from_local=*/true);
}

std::optional<Mapping> TopicMapper::wire_to_local(std::string_view wire, Direction way) const {
  return map(wire, way, /*from_local=*/false);
}

}  // namespace shmbus::bridge

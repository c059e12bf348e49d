// Which topics cross the bridge, and under which name: the configuration's rules applied to topic names.
// Topics under "shmbus/" (the bus's own, such as bridge statistics) never cross.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "bridge/bridge_config.h"

namespace shmbus::bridge {

struct Mapping {
  std::string name;  // the topic on the other side
  const Rule* rule;  // the rule that selected it (points into the mapper's rules)
};

class TopicMapper {
 public:
  explicit TopicMapper(std::vector<Rule> rules) : rules_(std::move(rules)) {}

  // A local topic to its wire name, by the first rule with direction `way` (kOut or kIn) or kBoth.
  std::optional<Mapping> local_to_wire(std::string_view local, Direction way) const;
  // A wire topic to its local name, likewise.
  std::optional<Mapping> wire_to_local(std::string_view wire, Direction way) const;

 private:
  std::optional<Mapping> map(std::string_view from, Direction way, bool from_local) const;
  std::vector<Rule> rules_;
};

}  // namespace shmbus::bridge

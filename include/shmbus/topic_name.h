// Topic names: hierarchical, `/`-separated segments of [A-Za-z0-9_.-], 1..255 bytes, no empty segment.
#pragma once

#include <string_view>

#include "shmbus/status.h"

namespace shmbus {

// Ok, or kInvalidTopic with the reason and the offending position.
Status validate_topic_name(std::string_view name);

}  // namespace shmbus

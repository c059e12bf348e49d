// Topic patterns for configuration rules and bridge selections: segments separated by '/', where '*' matches
// exactly one segment and '**' any number of segments (zero included). "robot/*/pose", "camera/**", "**".
#pragma once

#include <string_view>

#include "shmbus/status.h"

namespace shmbus {

// Ok, or kInvalidTopic: a pattern follows the topic name rules, except that a segment may be '*' or '**'.
Status validate_topic_pattern(std::string_view pattern);

// True if `topic` matches `pattern`. REQUIRES: both valid.
bool topic_matches(std::string_view pattern, std::string_view topic);

}  // namespace shmbus

// The library's logger: spdlog, to stderr (never stdout), level from $SHMBUS_LOG_LEVEL (default "warn").
#pragma once

#include <spdlog/spdlog.h>

namespace shmbus::detail {
spdlog::logger& log();
}

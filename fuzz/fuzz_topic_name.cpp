// Fuzzes validate_topic_name on arbitrary bytes and checks what it accepts against the documented rules:
// 1..255 bytes of [A-Za-z0-9_.-/], no empty segment. The message of a refusal is built from the input, so
// it is exercised too.
#include <cstdint>
#include <string_view>

#include "shmbus/topic_name.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view name(reinterpret_cast<const char*>(data), size);
  const shmbus::Status s = shmbus::validate_topic_name(name);
  if (!s.ok()) {
    if (s.code() != shmbus::Errc::kInvalidTopic || s.message().empty()) __builtin_trap();
    return 0;
  }
  if (name.empty() || name.size() > 255 || name.front() == '/' || name.back() == '/' ||
      name.find("//") != std::string_view::npos) {
    __builtin_trap();
  }
  for (const char c : name) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
                    c == '.' || c == '-' || c == '/';
    if (!ok) __builtin_trap();
  }
  return 0;
}

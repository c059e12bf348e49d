#include "shmbus/topic_name.h"

#include <string>

namespace shmbus {

Status validate_topic_name(std::string_view name) {
  auto bad = [&](const std::string& why) {
    return Status{Errc::kInvalidTopic, "topic '" + std::string(name.substr(0, 300)) + "': " + why};
  };
  if (name.empty()) return bad("empty name");
  if (name.size() > 255) return bad("longer than 255 bytes");
  std::size_t segment_length = 0;
  for (std::size_t i = 0; i < name.size(); ++i) {
    const char c = name[i];
    if (c == '/') {
      if (segment_length == 0) return bad("empty segment at byte " + std::to_string(i));
      segment_length = 0;
      continue;
    }
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
                    c == '.' || c == '-';
    if (!ok)
      return bad("character " + std::to_string(static_cast<unsigned char>(c)) + " at byte " +
                 std::to_string(i) + " is not one of [A-Za-z0-9_.-/]");
    ++segment_length;
  }
  if (segment_length == 0) return bad("ends with '/'");
  return Status::Ok();
}

}  // namespace shmbus

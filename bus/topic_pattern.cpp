#include "shmbus/topic_pattern.h"

#include <algorithm>
#include <string>
#include <vector>

#include "shmbus/topic_name.h"

namespace shmbus {
namespace {

std::vector<std::string_view> split(std::string_view s) {
  std::vector<std::string_view> parts;
  std::size_t start = 0;
  for (;;) {
    const std::size_t slash = s.find('/', start);
    parts.push_back(
        s.substr(start, slash == std::string_view::npos ? std::string_view::npos : slash - start));
    if (slash == std::string_view::npos) return parts;
    start = slash + 1;
  }
}

// Dynamic programming over (pattern segment, topic segment): linear in their product even with many '**'.
bool match(const std::vector<std::string_view>& p, const std::vector<std::string_view>& t) {
  // reach[j]: the first i pattern segments can match the first j topic segments.
  std::vector<char> reach(t.size() + 1, 0), next(t.size() + 1, 0);
  reach[0] = 1;
  for (std::string_view segment : p) {
    std::fill(next.begin(), next.end(), 0);
    if (segment == "**") {
      char any = 0;
      for (std::size_t j = 0; j <= t.size(); ++j) next[j] = any = static_cast<char>(any | reach[j]);
    } else {
      for (std::size_t j = 0; j < t.size(); ++j) {
        if (reach[j] && (segment == "*" || segment == t[j])) next[j + 1] = 1;
      }
    }
    reach.swap(next);
  }
  return reach[t.size()] != 0;
}

}  // namespace

Status validate_topic_pattern(std::string_view pattern) {
  if (pattern.empty() || pattern.size() > 255) {
    return {Errc::kInvalidTopic, "pattern must be 1..255 bytes"};
  }
  std::string as_name;
  for (std::string_view part : split(pattern)) {
    if (!as_name.empty()) as_name += '/';
    as_name += (part == "*" || part == "**") ? std::string("x") : std::string(part);
    if (part.find('*') != std::string_view::npos && part != "*" && part != "**") {
      return {Errc::kInvalidTopic, "pattern '" + std::string(pattern) + "': '*' must be a whole segment"};
    }
  }
  if (Status s = validate_topic_name(as_name); !s.ok()) {
    return {Errc::kInvalidTopic, "pattern '" + std::string(pattern) + "': " + s.message()};
  }
  return Status::Ok();
}

bool topic_matches(std::string_view pattern, std::string_view topic) {
  return match(split(pattern), split(topic));
}

}  // namespace shmbus

// Fuzzes validate_topic_pattern and topic_matches. Input: "<pattern>\n<topic>". Every valid pair is matched
// by topic_matches and by a plain memoised recursion written from the documented rules ('*' = one segment,
// '**' = any number, zero included); they must agree. A valid topic name must also be a valid pattern that
// matches itself.
#include <cstdint>
#include <string_view>
#include <vector>

#include "shmbus/topic_name.h"
#include "shmbus/topic_pattern.h"

namespace {

std::vector<std::string_view> segments(std::string_view s) {
  std::vector<std::string_view> out;
  for (std::size_t start = 0;;) {
    const std::size_t slash = s.find('/', start);
    out.push_back(s.substr(start, slash - start));  // npos - start: the rest
    if (slash == std::string_view::npos) return out;
    start = slash + 1;
  }
}

class ReferenceMatcher {
 public:
  ReferenceMatcher(std::string_view pattern, std::string_view topic)
      : p_(segments(pattern)), t_(segments(topic)), memo_((p_.size() + 1) * (t_.size() + 1), kUnknown) {}
  bool matches() { return match(0, 0); }

 private:
  static constexpr char kUnknown = 2;
  bool match(std::size_t i, std::size_t j) {
    char& m = memo_[i * (t_.size() + 1) + j];
    if (m == kUnknown) {
      if (i == p_.size()) {
        m = j == t_.size();
      } else if (p_[i] == "**") {
        m = match(i + 1, j) || (j < t_.size() && match(i, j + 1));
      } else {
        m = j < t_.size() && (p_[i] == "*" || p_[i] == t_[j]) && match(i + 1, j + 1);
      }
    }
    return m != 0;
  }
  std::vector<std::string_view> p_, t_;
  std::vector<char> memo_;
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  const std::size_t newline = input.find('\n');
  const std::string_view pattern = input.substr(0, newline);
  const std::string_view topic =
      newline == std::string_view::npos ? std::string_view() : input.substr(newline + 1);

  const bool pattern_ok = shmbus::validate_topic_pattern(pattern).ok();
  const bool topic_ok = shmbus::validate_topic_name(topic).ok();
  if (topic_ok && (!shmbus::validate_topic_pattern(topic).ok() || !shmbus::topic_matches(topic, topic) ||
                   !shmbus::topic_matches("**", topic))) {
    __builtin_trap();
  }
  if (pattern_ok && topic_ok &&
      shmbus::topic_matches(pattern, topic) != ReferenceMatcher(pattern, topic).matches()) {
    __builtin_trap();
  }
  return 0;
}

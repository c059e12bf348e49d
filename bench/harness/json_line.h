#pragma once
// One JSON object on one line: the only thing a bench program writes to stdout.

#include <cstdint>
#include <cstdio>
#include <string>
#include <string_view>

namespace bench {

// Fields appear in the order they are added; keys are trusted literals, string values escaped.
class JsonLine {
 public:
  JsonLine& add(std::string_view key, std::string_view value) {
    begin_field(key);
    text_ += '"';
    for (char c : value) {
      if (c == '"' || c == '\\') {
        text_ += '\\';
        text_ += c;
      } else if (static_cast<unsigned char>(c) < 0x20) {
        char escaped[8];
        std::snprintf(escaped, sizeof(escaped), "\\u%04x", static_cast<unsigned>(c));
        text_ += escaped;
      } else {
        text_ += c;
      }
    }
    text_ += '"';
    return *this;
  }
  JsonLine& add(std::string_view key, const char* value) { return add(key, std::string_view(value)); }

  JsonLine& add(std::string_view key, uint64_t value) {
    begin_field(key);
    text_ += std::to_string(value);
    return *this;
  }

  JsonLine& add(std::string_view key, bool value) {
    begin_field(key);
    text_ += value ? "true" : "false";
    return *this;
  }

  // Rates: six significant digits are more than these machines can reproduce.
  JsonLine& add(std::string_view key, double value) {
    begin_field(key);
    char number[32];
    std::snprintf(number, sizeof(number), "%.6g", value);
    text_ += number;
    return *this;
  }

  std::string str() const { return text_ + "}"; }

  // Writes the line and flushes, so a line is never lost or duplicated by a later fork.
  void print() const {
    std::fputs((str() + "\n").c_str(), stdout);
    std::fflush(stdout);
  }

 private:
  void begin_field(std::string_view key) {
    text_ += text_.size() == 1 ? "\"" : ",\"";
    text_ += key;
    text_ += "\":";
  }

  std::string text_ = "{";
};

}  // namespace bench

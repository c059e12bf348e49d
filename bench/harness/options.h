#pragma once
// Command line shared by every bench program.

#include <cerrno>
#include <cstdint>
#include <cstdlib>
#include <stdexcept>
#include <string>
#include <string_view>

namespace bench {

enum class Mode {
  round_trip,  // A sends, B echoes the same size back; latency per round trip
  stream,      // A sends one way as fast as it can; B measures the receive rate
  probe,       // bench-floor only: a short cache-line ping-pong to calibrate a row against
};

inline constexpr uint64_t kMinSize = 8;           // the sequence number travels in the payload
inline constexpr uint64_t kMaxSize = 4ull << 20;  // largest size the run and RouDi pools cover

struct BenchOptions {
  Mode mode = Mode::round_trip;
  uint64_t size = 64;            // payload bytes per message, kMinSize..kMaxSize
  uint64_t count = 200000;       // measured round trips (rtt) or messages (stream)
  uint64_t warmup = 10000;       // unmeasured ones before them; stream uses at least 1
  int cpu_a = -1;                // CPU for the measuring process A; -1 = not pinned
  int cpu_b = -1;                // CPU for the echo/receiving process B; -1 = not pinned
  uint64_t probe_rounds = 2000;  // cache-line ping-pong rounds in the same process pair just
                                 // before and after the row (README trap 1); 0 = none
  unsigned timeout_s = 600;      // watchdog: the whole run is killed and cleaned up after this
};

inline const char* mode_name(Mode mode) {
  switch (mode) {
    case Mode::round_trip:
      return "rtt";
    case Mode::stream:
      return "stream";
    case Mode::probe:
      return "probe";
  }
  return "?";
}

inline std::string usage(std::string_view program) {
  return "usage: " + std::string(program) +
         " [--mode rtt|stream] [--size BYTES] [--count N] [--warmup N]\n"
         "       [--cpu-a CPU] [--cpu-b CPU] [--probe-rounds N] [--timeout SECONDS]" +
         (program == "bench-floor" ? " [--probe N]" : "") + "\n";
}

// Throws std::invalid_argument with a message naming the bad flag; "--help" throws the usage.
inline BenchOptions parse_options(int argc, char** argv, std::string_view program) {
  BenchOptions options;
  auto number = [&](int& i, std::string_view flag) -> uint64_t {
    if (i + 1 >= argc) throw std::invalid_argument(std::string(flag) + " needs a value");
    const char* text = argv[++i];
    char* end = nullptr;
    errno = 0;
    unsigned long long value = std::strtoull(text, &end, 10);
    if (errno != 0 || end == text || *end != '\0' || text[0] == '-')
      throw std::invalid_argument(std::string(flag) + ": not a non-negative integer: " + text);
    return value;
  };
  auto cpu = [&](int& i, std::string_view flag) -> int {
    uint64_t value = number(i, flag);
    if (value > 4095) throw std::invalid_argument(std::string(flag) + ": cpu out of range");
    return static_cast<int>(value);
  };
  for (int i = 1; i < argc; ++i) {
    std::string_view flag = argv[i];
    if (flag == "--mode") {
      if (i + 1 >= argc) throw std::invalid_argument("--mode needs a value");
      std::string_view value = argv[++i];
      if (value == "rtt")
        options.mode = Mode::round_trip;
      else if (value == "stream")
        options.mode = Mode::stream;
      else
        throw std::invalid_argument("--mode must be rtt or stream, not " + std::string(value));
    } else if (flag == "--size") {
      options.size = number(i, flag);
    } else if (flag == "--count") {
      options.count = number(i, flag);
    } else if (flag == "--warmup") {
      options.warmup = number(i, flag);
    } else if (flag == "--cpu-a") {
      options.cpu_a = cpu(i, flag);
    } else if (flag == "--cpu-b") {
      options.cpu_b = cpu(i, flag);
    } else if (flag == "--probe-rounds") {
      options.probe_rounds = number(i, flag);
    } else if (flag == "--timeout") {
      options.timeout_s = static_cast<unsigned>(number(i, flag));
    } else if (flag == "--probe" && program == "bench-floor") {
      options.mode = Mode::probe;
      options.count = number(i, flag);
      options.warmup = options.count / 10;
      options.probe_rounds = 0;  // the row is itself the probe
    } else if (flag == "--help" || flag == "-h") {
      throw std::invalid_argument(usage(program));
    } else {
      throw std::invalid_argument("unknown flag " + std::string(flag) + "\n" + usage(program));
    }
  }
  if (options.size < kMinSize || options.size > kMaxSize)
    throw std::invalid_argument("--size must be between " + std::to_string(kMinSize) + " and " +
                                std::to_string(kMaxSize) + " bytes");
  if (options.count == 0) throw std::invalid_argument("--count must be at least 1");
  if (options.timeout_s == 0) throw std::invalid_argument("--timeout must be at least 1 second");
  return options;
}

}  // namespace bench

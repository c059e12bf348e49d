#include "support/bridge_host.h"

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cctype>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <thread>

namespace shmbus::test {
namespace {

using Clock = std::chrono::steady_clock;

std::string unique_instance(const std::string& name) {
  static std::atomic<int> counter{0};
  return "br" + std::to_string(getpid()) + "x" + std::to_string(counter++) + name;
}

// A small recursive-descent JSON reader: enough for the documents toml++'s json_formatter writes.
class JsonReader {
 public:
  explicit JsonReader(std::string_view text) : text_(text) {}

  toml::table document() {
    toml::table t = object();
    skip_space();
    if (pos_ != text_.size()) fail("trailing characters");
    return t;
  }

 private:
  [[noreturn]] void fail(const std::string& what) const {
    throw std::runtime_error("JSON: " + what + " at offset " + std::to_string(pos_));
  }
  void skip_space() {
    while (pos_ < text_.size() && std::isspace(static_cast<unsigned char>(text_[pos_]))) ++pos_;
  }
  void expect(char c) {
    skip_space();
    if (pos_ >= text_.size() || text_[pos_] != c) fail(std::string("expected '") + c + "'");
    ++pos_;
  }
  // Consumes `c` if it comes next.
  bool consume(char c) {
    skip_space();
    if (pos_ >= text_.size() || text_[pos_] != c) return false;
    ++pos_;
    return true;
  }
  bool literal(std::string_view word) {
    skip_space();
    if (text_.substr(pos_, word.size()) != word) return false;
    pos_ += word.size();
    return true;
  }

  std::string string() {
    expect('"');
    std::string out;
    while (pos_ < text_.size() && text_[pos_] != '"') {
      char c = text_[pos_++];
      if (c == '\\') {
        if (pos_ >= text_.size()) fail("truncated escape");
        const char e = text_[pos_++];
        if (e == 'u') {
          // Only what our documents can hold: code points below 0x80 (toml++ escapes control characters).
          const unsigned long cp = std::strtoul(std::string(text_.substr(pos_, 4)).c_str(), nullptr, 16);
          pos_ += 4;
          if (cp >= 0x80) fail("non-ASCII \\u escape");
          c = static_cast<char>(cp);
        } else {
          static constexpr std::string_view kFrom = "ntrbf", kTo = "\n\t\r\b\f";
          const auto k = kFrom.find(e);
          c = k == std::string_view::npos ? e : kTo[k];  // \" \\ \/ stand for themselves
        }
      }
      out.push_back(c);
    }
    expect('"');
    return out;
  }

  // One value, handed to `sink`; JSON null hands nothing (an absent key).
  template <typename Sink>
  void value(Sink&& sink) {
    skip_space();
    if (pos_ >= text_.size()) fail("value expected");
    const char c = text_[pos_];
    if (c == '{') return sink(object());
    if (c == '[') return sink(array());
    if (c == '"') return sink(string());
    if (literal("true")) return sink(true);
    if (literal("false")) return sink(false);
    if (literal("null")) return;
    const std::size_t start = pos_;
    while (pos_ < text_.size() && std::strchr("+-0123456789.eE", text_[pos_]) != nullptr) ++pos_;
    const std::string number(text_.substr(start, pos_ - start));
    if (number.empty()) fail("unexpected character");
    if (number.find_first_of(".eE") == std::string::npos) return sink(int64_t{std::stoll(number)});
    return sink(std::stod(number));
  }

  toml::table object() {
    toml::table t;
    expect('{');
    if (consume('}')) return t;
    do {
      const std::string key = string();
      expect(':');
      value([&](auto&& v) { t.insert_or_assign(key, std::forward<decltype(v)>(v)); });
    } while (consume(','));
    expect('}');
    return t;
  }

  toml::array array() {
    toml::array a;
    expect('[');
    if (consume(']')) return a;
    do {
      value([&](auto&& v) { a.push_back(std::forward<decltype(v)>(v)); });
    } while (consume(','));
    expect(']');
    return a;
  }

  std::string_view text_;
  std::size_t pos_ = 0;
};

}  // namespace

toml::table parse_json(std::string_view json) {
  return JsonReader(json).document();
}

std::string read_text_file(const std::string& path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

int free_tcp_port() {
  const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  if (bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 ||
      getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) != 0) {
    close(fd);
    throw std::runtime_error("no free port");
  }
  close(fd);
  return ntohs(a.sin_port);
}

int64_t stat(const toml::table& doc, const char* section, const char* key) {
  return doc[section][key].value_or<int64_t>(0);
}

BridgeHost::BridgeHost(const Topology& topology, int index, std::string name)
    : topology_(topology), index_(index), name_(std::move(name)), instance_(unique_instance(name_)) {
  dir_ = "/tmp/shmbus-" + instance_;
  std::filesystem::create_directories(dir_);
  port_ = free_tcp_port();
  if (run_process({SHMBUS_BRIDGE_PATH, "--generate-keys", dir_ + "/" + name_}).status != 0) {
    throw std::runtime_error("key generation failed");
  }
  if (!start_daemon()) throw std::runtime_error("shmbusd did not start for " + name_);
}

BridgeHost::~BridgeHost() {
  stop_bridge();
  stop_daemon();
  const std::string prefix = "shmbus." + instance_ + ".";
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator("/dev/shm", ec)) {
    if (e.path().filename().string().rfind(prefix, 0) == 0) std::filesystem::remove(e.path(), ec);
  }
  std::filesystem::remove_all(dir_, ec);
}

std::vector<std::string> BridgeHost::on_host(std::vector<std::string> argv) const {
  std::vector<std::string> full = topology_.exec_prefix(index_);
  full.insert(full.end(), argv.begin(), argv.end());
  return full;
}

BusOptions BridgeHost::bus_options(const std::string& participant) const {
  return BusOptions{.instance = instance_, .runtime_dir = dir_, .name = participant};
}

bool BridgeHost::start_daemon(const std::string& daemon_toml) {
  std::vector<std::string> argv{SHMBUSD_PATH, "--instance",  instance_, "--runtime-dir",
                                dir_,         "--log-level", "warn"};
  if (!daemon_toml.empty()) {
    const std::string path = dir_ + "/shmbusd.toml";
    std::ofstream(path) << daemon_toml;
    argv.insert(argv.end(), {"--config", path});
  }
  daemon_ = std::make_unique<ChildProcess>(on_host(argv));
  const auto deadline = Clock::now() + std::chrono::seconds(10);
  while (Clock::now() < deadline) {
    if (Bus::connect(bus_options("probe")).ok()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return false;
}

int BridgeHost::stop_daemon(int signal) {
  if (!daemon_) return -1;
  daemon_->kill(signal);
  const int status = daemon_->wait(20);
  daemon_.reset();
  return status;
}

std::string BridgeHost::write_bridge_config(const std::string& config_toml, const std::string& file) const {
  const std::string path = dir_ + "/" + file;
  std::ofstream(path) << config_toml;
  return path;
}

ProcessResult BridgeHost::cli(const std::vector<std::string>& args) const {
  // The daemon's socket is a path in dir_: reachable from outside the host's network namespace.
  std::vector<std::string> argv{SHMBUS_CLI_PATH, "--instance", instance_, "--runtime-dir", dir_};
  argv.insert(argv.end(), args.begin(), args.end());
  return run_process(argv, 30);
}

bool BridgeHost::start_bridge(const std::string& config_toml, const std::string& log_file) {
  const std::string path = write_bridge_config(config_toml);
  std::vector<std::string> argv{SHMBUS_BRIDGE_PATH, "--config", path, "--log-level", "warn"};
  if (!log_file.empty()) {
    // sh redirects stderr, then execs the bridge: the child's pid stays the bridge's.
    argv.insert(argv.begin(), {"/bin/sh", "-c", "log=$1; shift; exec \"$@\" 2>>\"$log\"", "sh", log_file});
  }
  bridge_ = std::make_unique<ChildProcess>(on_host(argv));
  for (std::string line; !(line = bridge_->read_line(20)).empty();) {
    if (line == "ready") return true;
  }
  return false;
}

int BridgeHost::stop_bridge(int signal) {
  if (!bridge_) return -1;
  bridge_->kill(signal);
  const int status = bridge_->wait(20);
  bridge_.reset();
  return status;
}

Bus BridgeHost::connect(const std::string& participant) const {
  auto bus = Bus::connect(bus_options(participant));
  if (!bus) throw std::runtime_error(bus.status().to_string());
  return std::move(bus).value();
}

toml::table BridgeHost::bridge_stats(double timeout_s) const {
  auto bus = Bus::connect(bus_options("stats-reader"));
  if (!bus) return {};
  SubscriberOptions o;
  o.history = 1;
  auto sub = bus->subscriber("shmbus/bridge/" + name_ + "/stats", o);
  if (!sub) return {};
  Sample m = sub->take(
      std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::duration<double>(timeout_s)));
  if (!m) return {};
  try {
    return toml::parse(std::string_view(reinterpret_cast<const char*>(m.data()), m.size()));
  } catch (const toml::parse_error&) {
    return {};
  }
}

bool BridgeHost::wait_stats(const std::function<bool(const toml::table&)>& ready, double timeout_s) const {
  const auto deadline = Clock::now() + std::chrono::duration<double>(timeout_s);
  while (Clock::now() < deadline) {
    if (ready(bridge_stats(1))) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return false;
}

std::string BridgeHost::endpoint_for(int other) const {
  return "tcp://" + topology_.address(index_, other) + ":" + std::to_string(port_);
}

std::string BridgeHost::bind_list() const {
  std::string list;
  for (const auto& a : topology_.addresses(index_)) {
    list += std::string(list.empty() ? "" : ", ") + "\"tcp://" + a + ":" + std::to_string(port_) + "\"";
  }
  return "[" + list + "]";
}

std::string BridgeHost::bus_section() const {
  return "[bus]\ninstance = \"" + instance_ + "\"\nruntime_dir = \"" + dir_ + "\"\n";
}

}  // namespace shmbus::test

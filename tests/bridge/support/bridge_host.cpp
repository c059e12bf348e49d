#include "support/bridge_host.h"

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <stdexcept>
#include <thread>

namespace shmbus::test {
namespace {

using Clock = std::chrono::steady_clock;

std::string unique_instance(const std::string& name) {
  static std::atomic<int> counter{0};
  return "br" + std::to_string(getpid()) + "x" + std::to_string(counter++) + name;
}

}  // namespace

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

bool BridgeHost::start_daemon() {
  daemon_ = std::make_unique<ChildProcess>(
      on_host({SHMBUSD_PATH, "--instance", instance_, "--runtime-dir", dir_, "--log-level", "warn"}));
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

bool BridgeHost::start_bridge(const std::string& config_toml) {
  const std::string path = dir_ + "/bridge.toml";
  std::ofstream(path) << config_toml;
  bridge_ =
      std::make_unique<ChildProcess>(on_host({SHMBUS_BRIDGE_PATH, "--config", path, "--log-level", "warn"}));
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

// shmbus-bridge: forwards selected topics between shmbus instances on different hosts over ZeroMQ.
#include <signal.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>
#include <unistd.h>
#include <CLI/CLI.hpp>

#include <cstdio>
#include <exception>
#include <iostream>

#include "bridge/bridge.h"
#include "bridge/bridge_config.h"
#include "bridge/bridge_stats_view.h"
#include "bridge/curve_keys.h"

namespace {

int show_stats(const shmbus::BusOptions& options, bool json) {
  auto bus = shmbus::Bus::connect(options);
  if (!bus) {
    std::cerr << "shmbus-bridge: " << bus.status().to_string() << "\n";
    return 1;
  }
  auto doc = bus->daemon_statistics();
  if (!doc) {
    std::cerr << "shmbus-bridge: " << doc.status().to_string() << "\n";
    return 1;
  }
  if (auto s = shmbus::bridge::render_bridge_stats(bus.value(), doc.value(), json, std::cout); !s.ok()) {
    std::cerr << "shmbus-bridge: " << s.to_string() << "\n";
    return 1;
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) try {
  using namespace shmbus::bridge;
  CLI::App app{
      "shmbus-bridge: forwards the topics its configuration selects to and from peer bridges on other "
      "hosts."};
  std::string config_path, instance, runtime_dir, log_level, key_prefix;
  bool check = false, print_config = false, stats = false, json = false;
  app.add_option("-c,--config", config_path, "TOML configuration file (see --print-config)");
  app.add_option("-i,--instance", instance, "shmbus instance (overrides [bus] instance)");
  app.add_option("-r,--runtime-dir", runtime_dir, "daemon socket directory (overrides [bus] runtime_dir)");
  app.add_option("-l,--log-level", log_level, "trace, debug, info, warn, error (default info)");
  app.add_flag("--check", check, "validate the configuration and exit (0 valid, 2 invalid)");
  app.add_flag("--print-config", print_config, "print a documented example configuration and exit");
  app.add_option("--generate-keys", key_prefix,
                 "write a new CURVE key pair to PREFIX.key and PREFIX.pub and exit");
  app.add_flag("--stats", stats, "print the statistics of every bridge of the instance and exit");
  app.add_flag("--json", json, "with --stats: JSON, one object per bridge");
  CLI11_PARSE(app, argc, argv);

  if (print_config) {
    std::cout << kExampleConfig;
    return 0;
  }
  if (!key_prefix.empty()) {
    if (auto s = generate_key_files(key_prefix); !s.ok()) {
      std::cerr << "shmbus-bridge: " << s.message() << "\n";
      return 1;
    }
    return 0;
  }
  if (stats)
    return show_stats({.instance = instance, .runtime_dir = runtime_dir, .name = "shmbus-bridge-stats"},
                      json);
  if (config_path.empty()) {
    std::cerr << "shmbus-bridge: --config is required (see --help)\n";
    return 2;
  }
  auto config = load_bridge_config(config_path);
  if (!config) {
    std::cerr << "shmbus-bridge: " << config.status().message() << "\n";
    return 2;
  }
  if (check) {
    std::cout << config_path << ": valid\n";
    return 0;
  }
  if (!instance.empty()) config->instance = instance;
  if (!runtime_dir.empty()) config->runtime_dir = runtime_dir;

  spdlog::set_default_logger(spdlog::stderr_color_mt("shmbus-bridge"));
  spdlog::set_level(spdlog::level::from_str(log_level.empty() ? "info" : log_level));
  // Every thread (ZeroMQ's included) inherits this mask: termination signals reach only sigwait below.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  // A failed bridge thread stops the bridge and wakes the sigwait below, which then exits with status 1.
  auto bridge = Bridge::start(std::move(config).value(), [] { kill(getpid(), SIGTERM); });
  if (!bridge) {
    std::cerr << "shmbus-bridge: " << bridge.status().message() << "\n";
    return 1;
  }
  // Machine-readable start-up lines on stdout (logs go to stderr): where we listen, then "ready".
  for (const auto& e : bridge.value()->bound_endpoints()) std::cout << "listening " << e << "\n";
  std::cout << "ready" << std::endl;
  int received = 0;
  sigwait(&signals, &received);
  if (!bridge.value()->failed()) spdlog::info("signal {}: stopping", received);
  bridge.value()->stop();                        // joins the threads
  const bool failed = bridge.value()->failed();  // also a thread that failed while stopping
  bridge.value().reset();
  return failed ? 1 : 0;
} catch (const std::exception& e) {
  // Whatever escaped (a filesystem or logging error): a clear message and a failure, not std::terminate.
  std::fprintf(stderr, "shmbus-bridge: %s\n", e.what());
  return 1;
}

// shmbusd: the supervising daemon of one shmbus instance.
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>
#include <CLI/CLI.hpp>

#include <cstdio>
#include <exception>
#include <iostream>

#include "bus/runtime_paths.h"
#include "daemon/control_server.h"
#include "daemon/daemon_config.h"

int main(int argc, char** argv) try {
  using namespace shmbus;
  CLI::App app{
      "shmbusd: admits shmbus participants, owns the shared memory, reclaims what crashed processes held."};
  std::string instance, runtime_dir, config_path, log_level;
  bool print_config = false;
  app.add_option("-i,--instance", instance, "instance name (default: $SHMBUS_INSTANCE, else \"default\")");
  app.add_option(
      "-r,--runtime-dir", runtime_dir,
      "directory for the socket and lock (default: $SHMBUS_RUNTIME_DIR, else /run/shmbus, else /tmp/shmbus)");
  app.add_option("-c,--config", config_path, "TOML configuration file (optional; see --print-config)");
  app.add_option("-l,--log-level", log_level,
                 "trace, debug, info, warn, error, critical, off (overrides the config)")
      ->check(CLI::IsMember({"trace", "debug", "info", "warn", "error", "critical", "off"}));
  app.add_flag("--print-config", print_config, "print a documented example configuration and exit");
  app.footer(std::string("Example configuration (every key optional):\n\n") + daemon::kExampleConfig);
  CLI11_PARSE(app, argc, argv);
  if (print_config) {
    std::cout << daemon::kExampleConfig;
    return 0;
  }
  spdlog::set_default_logger(spdlog::stderr_color_mt("shmbusd"));
  daemon::DaemonConfig config;
  if (!config_path.empty()) {
    auto loaded = daemon::load_daemon_config(config_path);
    if (!loaded) {
      std::cerr << "shmbusd: " << loaded.status().message() << "\n";
      return 2;
    }
    config = loaded.value();
  }
  spdlog::set_level(spdlog::level::from_str(log_level.empty() ? config.log_level : log_level));
  instance = detail::resolve_instance(instance);
  runtime_dir = detail::resolve_runtime_dir(runtime_dir, /*create=*/true);
  auto server = daemon::ControlServer::start(instance, runtime_dir, config);
  if (!server) {
    std::cerr << "shmbusd: " << server.status().message() << "\n";
    return 1;
  }
  return server.value()->run();
} catch (const std::exception& e) {
  // Whatever escaped (a filesystem or logging error): a clear message and a failure, not std::terminate.
  std::fprintf(stderr, "shmbusd: %s\n", e.what());
  return 1;
}

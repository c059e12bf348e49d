// One "host" of a bridge test: its own shmbusd instance and shmbus-bridge, run on a Topology host (inside
// its network namespace, or on loopback), with its own CURVE key pair. Everything it started or created is
// stopped and removed on destruction, pass or fail.
#pragma once

#include <toml++/toml.h>
#include <csignal>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "shmbus/bus.h"
#include "support/test_daemon.h"
#include "support/topology.h"

namespace shmbus::test {

class BridgeHost {
 public:
  BridgeHost(const Topology& topology, int index, std::string name);
  ~BridgeHost();
  BridgeHost(const BridgeHost&) = delete;
  BridgeHost& operator=(const BridgeHost&) = delete;

  // Starts shmbusd; with `daemon_toml` non-empty, writes it to the daemon's config file and passes --config.
  bool start_daemon(const std::string& daemon_toml = "");
  int stop_daemon(int signal = SIGTERM);
  // Writes `config_toml` (the bridge's whole configuration) and starts the bridge; true once it says "ready".
  // With `log_file` non-empty the bridge's stderr (its log) is appended to that file instead of the test's.
  bool start_bridge(const std::string& config_toml, const std::string& log_file = "");
  int stop_bridge(int signal = SIGTERM);
  pid_t bridge_pid() const { return bridge_ ? bridge_->pid() : -1; }
  // Writes a bridge configuration to a file in this host's directory (for a bridge the daemon starts).
  std::string write_bridge_config(const std::string& config_toml,
                                  const std::string& file = "bridge.toml") const;
  // Runs the `shmbus` CLI against this host's daemon: cli({"stats", "--json"}).
  ProcessResult cli(const std::vector<std::string>& args) const;

  Bus connect(const std::string& participant = "test") const;
  BusOptions bus_options(const std::string& participant = "test") const;
  // The bridge's latest statistics document (empty table if none arrived within timeout_s).
  toml::table bridge_stats(double timeout_s = 5) const;
  // Polls the statistics until `ready` holds; false after timeout_s.
  bool wait_stats(const std::function<bool(const toml::table&)>& ready, double timeout_s = 20) const;

  // The endpoint peer host `other` connects to.
  std::string endpoint_for(int other) const;
  // `[network] bind = [...]` for every address of this host.
  std::string bind_list() const;
  // The [bus] section pointing at this host's daemon.
  std::string bus_section() const;

  const std::string& name() const { return name_; }
  const std::string& dir() const { return dir_; }
  std::string secret_key() const { return dir_ + "/" + name_ + ".key"; }
  std::string public_key() const { return dir_ + "/" + name_ + ".pub"; }
  int index() const { return index_; }
  const std::string& instance() const { return instance_; }

 private:
  std::vector<std::string> on_host(std::vector<std::string> argv) const;
  const Topology& topology_;
  int index_;
  std::string name_;
  std::string instance_;
  std::string dir_;
  int port_ = 0;
  std::unique_ptr<ChildProcess> daemon_;
  std::unique_ptr<ChildProcess> bridge_;
};

// A TCP port free on 127.0.0.1 right now.
int free_tcp_port();
// An integer from a statistics document, 0 if absent: stat(doc, "in", "messages").
int64_t stat(const toml::table& doc, const char* section, const char* key);
// A JSON document (as `shmbus stats --json` prints) as a TOML table, so that stat() and toml++ node views
// read it; JSON null becomes an absent key. Throws std::runtime_error on malformed input.
toml::table parse_json(std::string_view json);
// The whole content of a file ("" if unreadable).
std::string read_text_file(const std::string& path);

}  // namespace shmbus::test

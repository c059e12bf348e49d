// Reading and showing bridge statistics from any bus client: the hook for `shmbus stats`, also used by
// `shmbus-bridge --stats` and the tests. Every bridge publishes a TOML document on shmbus/bridge/<name>/stats
// (bridge/stats_document.h); the daemon's statistics list those topics, so no bridge needs to be named.
#pragma once

#include <chrono>
#include <ostream>
#include <string>
#include <vector>

#include "shmbus/bus.h"

namespace shmbus::bridge {

struct BridgeStatsDocument {
  std::string name;  // the bridge's name
  std::string toml;  // its latest statistics document
};

// The latest document of every bridge listed in `daemon_statistics` (the text of Bus::daemon_statistics()).
// A bridge whose document does not arrive within `wait` is left out.
Result<std::vector<BridgeStatsDocument>> read_bridge_stats(
    Bus& bus, const std::string& daemon_statistics,
    std::chrono::milliseconds wait = std::chrono::milliseconds(500));

// Prints a BRIDGE table (messages and bytes each way, messages lost in gaps, late, duplicates, malformed,
// refused peers), link states and the streams missing sequences; with `json`, one JSON object per bridge.
// Prints nothing without bridges.
Status render_bridge_stats(Bus& bus, const std::string& daemon_statistics, bool json, std::ostream& out);

}  // namespace shmbus::bridge

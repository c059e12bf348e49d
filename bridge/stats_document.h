// The bridge's statistics as a TOML document, published on the local bus topic shmbus/bridge/<name>/stats
// (kept as history, so a late reader gets the latest at once). `shmbus-bridge --stats` and the `shmbus stats`
// hook (bridge/bridge_stats_view.h) read it. Sections: [bridge], [out], [in], [auth], [[peer]], [[listener]],
// [[stream]] (per origin and topic: delivered, missing = sequences skipped and not filled late).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "bridge/bridge_config.h"
#include "bridge/bridge_shared.h"
#include "bridge/link_monitor.h"
#include "bridge/sequence_tracker.h"

namespace shmbus::bridge {

std::string stats_topic(std::string_view bridge_name);
inline constexpr uint32_t kStatsMaxSize = 256 * 1024;  // the stats topic's max_message_size
// [[stream]] rows in one document (those missing the most first), ~250 bytes each: it stays within
// kStatsMaxSize whatever the number of origins and topics ([in] streams counts them all).
inline constexpr std::size_t kMaxStreamRows = 500;

struct StatsInput {
  const BridgeConfig& config;
  uint64_t epoch;
  uint64_t uptime_ms;
  const Counters& counters;
  const LinkMonitor& links;
  const SequenceTracker& tracker;
  std::size_t subscribed_topics;  // wire topics we subscribe to for local subscribers
  std::size_t local_publishers;
  bool bus_connected;
};

std::string render_stats_document(const StatsInput& in);

}  // namespace shmbus::bridge

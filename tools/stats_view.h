// Renders the daemon's statistics document (TOML) for people (`list`, `stats`) and programs (`stats --json`).
#pragma once

#include <ostream>
#include <string>

#include "shmbus/bus.h"
#include "shmbus/status.h"

namespace shmbus::tools {

enum class StatsFormat { kTopicList, kFull, kJson };

// Ok, or kProtocolError when the document does not parse.
Status render_stats(const std::string& toml_document, StatsFormat format, std::ostream& out);

#ifdef SHMBUS_WITH_BRIDGE
// `document` with a [[bridge]] table per running bridge (its latest statistics) added.
std::string with_bridge_stats(Bus& bus, const std::string& document);
#endif

}  // namespace shmbus::tools

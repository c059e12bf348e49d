// Renders the daemon's statistics document (TOML) for people (`list`, `stats`) and programs (`stats --json`).
#pragma once

#include <ostream>
#include <string>

#include "shmbus/status.h"

namespace shmbus::tools {

enum class StatsFormat { kTopicList, kFull, kJson };

// Ok, or kProtocolError when the document does not parse.
Status render_stats(const std::string& toml_document, StatsFormat format, std::ostream& out);

}  // namespace shmbus::tools

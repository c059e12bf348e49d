// shmbusd's configuration: optional TOML file, embedded defaults otherwise. See `shmbusd --help` and the
// README.
#pragma once

#include <string>
#include <vector>

#include "daemon/access_policy.h"
#include "daemon/process_supervisor.h"
#include "shmbus/options.h"
#include "shmbus/status.h"

namespace shmbus::daemon {

// Who may publish and subscribe; unset lists fall back to the [defaults] lists, then to default_allow_list()
// (the daemon's own user and root: other users are denied unless the configuration names them).
struct TopicAccess {
  std::optional<AllowList> publish;
  std::optional<AllowList> subscribe;
};

struct TopicRule {
  std::string pattern;     // topic pattern (`*` one level, `**` any number)
  TopicSettings settings;  // the fields set here are fixed for matching topics
  TopicAccess access;
};

struct QueueRule {
  std::string pattern;     // queue or service name pattern
  QueueSettings settings;  // the fields set here are fixed for matching queues
  TopicAccess access;      // allow_publish: who may send (or call); allow_subscribe: who may receive (serve)
};

struct DaemonConfig {
  std::string log_level = "info";  // trace, debug, info, warn, error, off
  uint32_t max_topics = 1024;
  uint32_t max_participants = 1024;
  // Seconds a dead publisher's ring waits for subscribers to drain it before it is reclaimed anyway.
  double dead_ring_grace_s = 5.0;
  TopicSettings defaults{.max_message_size = 4096,
                         .depth = 64,
                         .policy = Policy::kLossy,
                         .history = 0,
                         .max_publishers = 8,
                         .max_subscribers = 32};
  TopicAccess default_access;
  std::vector<TopicRule> topics;       // first match wins
  std::vector<ProcessSpec> processes;  // started and kept running by the daemon
  uint32_t max_queues = 256;
  // Where durable queues keep their files (<data_dir>/<instance>/). Empty: $SHMBUS_DATA_DIR, else
  // /var/lib/shmbus.
  std::string data_dir;
  QueueSettings queue_defaults{.capacity = 256,
                               .max_message_size = 4096,
                               .max_deliveries = 5,
                               .durable = false,
                               .sync = SyncPolicy::kInterval,
                               .sync_interval_ms = 100};
  std::vector<QueueRule> queues;  // first match wins
};

// Parses a configuration document; errors name the line and the key.
Result<DaemonConfig> parse_daemon_config(std::string_view toml_text, std::string_view source_name);
Result<DaemonConfig> load_daemon_config(const std::string& path);

// The documented example configuration (printed by --help).
extern const char* const kExampleConfig;

}  // namespace shmbus::daemon

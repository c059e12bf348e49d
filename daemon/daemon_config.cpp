#include "daemon/daemon_config.h"

#include <toml++/toml.h>
#include <algorithm>
#include <bit>
#include <filesystem>
#include <fstream>

#include "shm/topic_segment_layout.h"
#include "shmbus/topic_pattern.h"

namespace shmbus::daemon {

const char* const kExampleConfig = R"(# shmbusd.toml: every key is optional.
log_level = "info"          # trace, debug, info, warn, error, off
max_topics = 1024
max_participants = 1024
max_queues = 256
data_dir = "/var/lib/shmbus" # durable queues live in <data_dir>/<instance>/
dead_ring_grace_s = 5.0     # how long a dead publisher's messages wait for slow subscribers

[defaults]                  # settings of topics that no [[topic]] rule matches
max_message_size = 4096     # bytes
depth = 64                  # slots per publisher ring, power of two
policy = "lossy"            # "lossy" (never blocks) or "lossless" (publisher waits for the slowest)
history = 0                 # messages kept for late joiners, <= depth - 2 (a packed batch's slot counts once)
max_publishers = 8
max_subscribers = 32
# Who may publish / subscribe: "*", "user:NAME", "uid:N", "group:NAME", "gid:N". Without a list only the
# daemon's own user and root may; identities come from the kernel (SO_PEERCRED), never from the client.
allow_publish = ["group:root"]
allow_subscribe = ["*"]

[[topic]]                   # rules, first match wins; the keys set here are fixed for matching topics
pattern = "camera/**"
max_message_size = 4194304
depth = 8
policy = "lossless"
allow_publish = ["uid:0"]   # rule lists replace the [defaults] lists for matching topics

[[queue]]                   # work queues and services (request queues); rules, first match wins
pattern = "jobs/**"
capacity = 1024             # messages held: ready + in flight + dead letters
max_message_size = 65536
max_deliveries = 5          # deliveries (rejects, timeouts, dead consumers) before a dead letter
durable = true              # a file in data_dir: survives daemon crashes, restarts and reboots
sync = "interval"           # "never", "interval" (every sync_interval_ms) or "always" (every send and ack)
sync_interval_ms = 100
allow_publish = ["*"]       # who may send (for a service: call)
allow_subscribe = ["*"]     # who may receive (for a service: serve)

[[process]]                 # programs the daemon starts, shows in `shmbus list` and restarts when they die
name = "bridge"
command = ["shmbus-bridge", "--config", "/etc/shmbus/bridge.toml"]
restart = true
)";

namespace {

std::string where(std::string_view source, const toml::source_region& r) {
  return std::string(source) + ":" + std::to_string(r.begin.line);
}

Status read_u32(const toml::table& t, std::string_view key, std::string_view source,
                std::optional<uint32_t>* out) {
  const toml::node* n = t.get(key);
  if (!n) return Status::Ok();
  // value_exact: integers only. value<int64_t>() would also convert a float, and toml++ 3.3 casts an
  // out-of-range one (1e24) to int64_t before it checks the range: undefined behaviour, found by fuzzing.
  const auto v = n->value_exact<int64_t>();
  if (!v || *v < 0 || *v > 0xffffffffLL) {
    return {Errc::kInvalidArgument,
            where(source, n->source()) + ": '" + std::string(key) + "' must be an integer in 0..4294967295"};
  }
  *out = static_cast<uint32_t>(*v);
  return Status::Ok();
}

Status read_settings(const toml::table& t, std::string_view source, TopicSettings* s,
                     std::initializer_list<std::string_view> extra_keys) {
  for (const auto& [key, node] : t) {
    static constexpr std::string_view kKnown[] = {"max_message_size", "depth",          "policy",
                                                  "history",          "max_publishers", "max_subscribers",
                                                  "allow_publish",    "allow_subscribe"};
    bool known = std::find(std::begin(kKnown), std::end(kKnown), key.str()) != std::end(kKnown) ||
                 std::find(extra_keys.begin(), extra_keys.end(), key.str()) != extra_keys.end();
    if (!known)
      return {Errc::kInvalidArgument,
              where(source, node.source()) + ": unknown key '" + std::string(key.str()) + "'"};
  }
  for (auto [key, field] :
       {std::pair{"max_message_size", &s->max_message_size}, std::pair{"depth", &s->depth},
        std::pair{"history", &s->history}, std::pair{"max_publishers", &s->max_publishers},
        std::pair{"max_subscribers", &s->max_subscribers}}) {
    if (Status st = read_u32(t, key, source, field); !st.ok()) return st;
  }
  // Within the limits a topic can have (shm/topic_segment_layout.h): a wrong value is reported here, with its
  // line, not at every open of a topic it applies to.
  struct Limit {
    std::string_view key;
    const std::optional<uint32_t>* value;
    uint32_t low, high;
    bool power_of_two;
  };
  for (const Limit& l :
       {Limit{"max_message_size", &s->max_message_size, 1, shm::kMaxMessageSizeLimit, false},
        Limit{"depth", &s->depth, 2, shm::kMaxDepthLimit, true},
        Limit{"max_publishers", &s->max_publishers, 1, shm::kMaxPublishersLimit, false},
        Limit{"max_subscribers", &s->max_subscribers, 1, shm::kMaxSubscribersLimit, false}}) {
    if (!*l.value) continue;
    const uint32_t v = **l.value;
    if (v < l.low || v > l.high || (l.power_of_two && !std::has_single_bit(v))) {
      return {Errc::kInvalidArgument, where(source, t.get(l.key)->source()) + ": '" + std::string(l.key) +
                                          "' must be " + (l.power_of_two ? "a power of two in " : "") +
                                          std::to_string(l.low) + ".." + std::to_string(l.high)};
    }
  }
  if (s->history && s->depth && uint64_t{*s->history} + 2 > *s->depth) {
    return {Errc::kInvalidArgument,
            where(source, t.get("history")->source()) +
                ": 'history' must be at most depth - 2 = " + std::to_string(*s->depth - 2)};
  }
  if (const toml::node* n = t.get("policy")) {
    const auto v = n->value<std::string>();
    if (v == "lossy") {
      s->policy = Policy::kLossy;
    } else if (v == "lossless") {
      s->policy = Policy::kLossless;
    } else {
      return {Errc::kInvalidArgument,
              where(source, n->source()) + ": 'policy' must be \"lossy\" or \"lossless\""};
    }
  }
  return Status::Ok();
}

Status read_access(const toml::table& t, std::string_view source, TopicAccess* access) {
  for (auto [key, field] :
       {std::pair{"allow_publish", &access->publish}, std::pair{"allow_subscribe", &access->subscribe}}) {
    const toml::node* n = t.get(key);
    if (!n) continue;
    const toml::array* list = n->as_array();
    if (!list)
      return {Errc::kInvalidArgument,
              where(source, n->source()) + ": '" + key + "' must be a list of strings"};
    AllowList allow;
    for (const toml::node& item : *list) {
      const auto text = item.value<std::string>();
      if (!text)
        return {Errc::kInvalidArgument, where(source, item.source()) + ": '" + key + "' must hold strings"};
      auto principal = parse_principal(*text);
      if (!principal)
        return {Errc::kInvalidArgument, where(source, item.source()) + ": " + principal.status().message()};
      allow.push_back(principal.value());
    }
    *field = std::move(allow);
  }
  return Status::Ok();
}

Status read_queue_rule(const toml::table& t, std::string_view source, QueueRule* rule) {
  static constexpr std::string_view kKnown[] = {"pattern",          "capacity",      "max_message_size",
                                                "max_deliveries",   "durable",       "sync",
                                                "sync_interval_ms", "allow_publish", "allow_subscribe"};
  for (const auto& [key, node] : t) {
    if (std::find(std::begin(kKnown), std::end(kKnown), key.str()) == std::end(kKnown)) {
      return {Errc::kInvalidArgument,
              where(source, node.source()) + ": unknown key '" + std::string(key.str()) + "'"};
    }
  }
  const auto pattern = t["pattern"].value<std::string>();
  if (!pattern) return {Errc::kInvalidArgument, where(source, t.source()) + ": [[queue]] needs a 'pattern'"};
  if (Status s = validate_topic_pattern(*pattern); !s.ok()) {
    return {Errc::kInvalidArgument, where(source, t.source()) + ": " + s.message()};
  }
  rule->pattern = *pattern;
  QueueSettings& s = rule->settings;
  for (auto [key, field] :
       {std::pair{"capacity", &s.capacity}, std::pair{"max_message_size", &s.max_message_size},
        std::pair{"max_deliveries", &s.max_deliveries}, std::pair{"sync_interval_ms", &s.sync_interval_ms}}) {
    if (Status st = read_u32(t, key, source, field); !st.ok()) return st;
  }
  if (const toml::node* n = t.get("durable")) {
    const auto v = n->value<bool>();
    if (!v) return {Errc::kInvalidArgument, where(source, n->source()) + ": 'durable' must be true or false"};
    s.durable = *v;
  }
  if (const toml::node* n = t.get("sync")) {
    const auto v = n->value<std::string>();
    if (v == "never") {
      s.sync = SyncPolicy::kNever;
    } else if (v == "interval") {
      s.sync = SyncPolicy::kInterval;
    } else if (v == "always") {
      s.sync = SyncPolicy::kAlways;
    } else {
      return {Errc::kInvalidArgument,
              where(source, n->source()) + ": 'sync' must be \"never\", \"interval\" or \"always\""};
    }
  }
  return read_access(t, source, &rule->access);
}

}  // namespace

Result<DaemonConfig> parse_daemon_config(std::string_view text, std::string_view source) {
  toml::table root;
  try {
    root = toml::parse(text, source);
  } catch (const toml::parse_error& e) {
    return Status{Errc::kInvalidArgument, where(source, e.source()) + ": " + std::string(e.description())};
  }
  DaemonConfig config;
  for (const auto& [key, node] : root) {
    static constexpr std::string_view kKnown[] = {
        "log_level", "max_topics", "max_participants", "dead_ring_grace_s", "defaults",
        "topic",     "process",    "max_queues",       "data_dir",          "queue"};
    if (std::find(std::begin(kKnown), std::end(kKnown), key.str()) == std::end(kKnown)) {
      return Status{Errc::kInvalidArgument,
                    where(source, node.source()) + ": unknown key '" + std::string(key.str()) + "'"};
    }
  }
  if (const toml::node* n = root.get("log_level")) {
    const auto v = n->value<std::string>();
    static constexpr std::string_view kLevels[] = {"trace", "debug",    "info", "warn",
                                                   "error", "critical", "off"};
    if (!v || std::find(std::begin(kLevels), std::end(kLevels), *v) == std::end(kLevels)) {
      return Status{Errc::kInvalidArgument, where(source, n->source()) +
                                                ": 'log_level' must be one of trace, "
                                                "debug, info, warn, error, critical, off"};
    }
    config.log_level = *v;
  }
  std::optional<uint32_t> u;
  if (Status s = read_u32(root, "max_topics", source, &u); !s.ok()) return s;
  if (u) config.max_topics = *u;
  u.reset();
  if (Status s = read_u32(root, "max_participants", source, &u); !s.ok()) return s;
  if (u) config.max_participants = *u;
  u.reset();
  if (Status s = read_u32(root, "max_queues", source, &u); !s.ok()) return s;
  if (u) config.max_queues = *u;
  if (const toml::node* n = root.get("data_dir")) {
    const auto v = n->value<std::string>();
    if (!v || v->empty()) {
      return Status{Errc::kInvalidArgument, where(source, n->source()) + ": 'data_dir' must be a path"};
    }
    config.data_dir = *v;
  }
  if (const toml::node* n = root.get("queue")) {
    const toml::array* rules = n->as_array();
    if (!rules) {
      return Status{Errc::kInvalidArgument,
                    where(source, n->source()) + ": 'queue' must be [[queue]] tables"};
    }
    for (const toml::node& r : *rules) {
      const toml::table* t = r.as_table();
      if (!t)
        return Status{Errc::kInvalidArgument, where(source, r.source()) + ": each [[queue]] must be a table"};
      QueueRule rule;
      if (Status s = read_queue_rule(*t, source, &rule); !s.ok()) return s;
      config.queues.push_back(std::move(rule));
    }
  }
  if (const toml::node* n = root.get("dead_ring_grace_s")) {
    const auto v = n->value<double>();
    if (!v || *v < 0 || *v > 3600) {
      return Status{Errc::kInvalidArgument,
                    where(source, n->source()) + ": 'dead_ring_grace_s' must be 0..3600"};
    }
    config.dead_ring_grace_s = *v;
  }
  if (const toml::node* n = root.get("defaults")) {
    const toml::table* t = n->as_table();
    if (!t)
      return Status{Errc::kInvalidArgument, where(source, n->source()) + ": 'defaults' must be a table"};
    if (Status s = read_settings(*t, source, &config.defaults, {}); !s.ok()) return s;
    if (Status s = read_access(*t, source, &config.default_access); !s.ok()) return s;
  }
  if (const toml::node* n = root.get("topic")) {
    const toml::array* rules = n->as_array();
    if (!rules)
      return Status{Errc::kInvalidArgument,
                    where(source, n->source()) + ": 'topic' must be [[topic]] tables"};
    for (const toml::node& r : *rules) {
      const toml::table* t = r.as_table();
      if (!t)
        return Status{Errc::kInvalidArgument, where(source, r.source()) + ": each [[topic]] must be a table"};
      TopicRule rule;
      const auto pattern = (*t)["pattern"].value<std::string>();
      if (!pattern)
        return Status{Errc::kInvalidArgument, where(source, t->source()) + ": [[topic]] needs a 'pattern'"};
      if (Status s = validate_topic_pattern(*pattern); !s.ok()) {
        return Status{Errc::kInvalidArgument, where(source, t->source()) + ": " + s.message()};
      }
      rule.pattern = *pattern;
      if (Status s = read_settings(*t, source, &rule.settings, {"pattern"}); !s.ok()) return s;
      if (Status s = read_access(*t, source, &rule.access); !s.ok()) return s;
      config.topics.push_back(std::move(rule));
    }
  }
  if (const toml::node* n = root.get("process")) {
    const toml::array* list = n->as_array();
    if (!list)
      return Status{Errc::kInvalidArgument,
                    where(source, n->source()) + ": 'process' must be [[process]] tables"};
    for (const toml::node& item : *list) {
      const toml::table* t = item.as_table();
      if (!t)
        return Status{Errc::kInvalidArgument,
                      where(source, item.source()) + ": each [[process]] must be a table"};
      for (const auto& [key, node] : *t) {
        if (key.str() != "name" && key.str() != "command" && key.str() != "restart") {
          return Status{Errc::kInvalidArgument,
                        where(source, node.source()) + ": unknown key '" + std::string(key.str()) + "'"};
        }
      }
      ProcessSpec spec;
      const auto name = (*t)["name"].value<std::string>();
      const toml::array* command = (*t)["command"].as_array();
      if (!name || name->empty() || !command || command->empty()) {
        return Status{
            Errc::kInvalidArgument,
            where(source, t->source()) + ": [[process]] needs a 'name' and a non-empty 'command' list"};
      }
      spec.name = *name;
      for (const toml::node& arg : *command) {
        const auto text = arg.value<std::string>();
        if (!text)
          return Status{Errc::kInvalidArgument,
                        where(source, arg.source()) + ": 'command' must hold strings"};
        spec.command.push_back(*text);
      }
      if (const toml::node* r = t->get("restart")) {
        const auto v = r->value<bool>();
        if (!v)
          return Status{Errc::kInvalidArgument,
                        where(source, r->source()) + ": 'restart' must be true or false"};
        spec.restart = *v;
      }
      config.processes.push_back(std::move(spec));
    }
  }
  return config;
}

Result<DaemonConfig> load_daemon_config(const std::string& path) {
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec)) {
    return Status{Errc::kInvalidArgument, "cannot read config file " + path + ": it is a directory"};
  }
  std::ifstream in(path);
  if (!in) return Status{Errc::kInvalidArgument, "cannot read config file " + path};
  // Read up to a bound: a FIFO (-c <(...)) is fine, /dev/zero must not be read for ever.
  constexpr std::size_t kMaxConfigBytes = 1 << 20;
  std::string text(kMaxConfigBytes + 1, '\0');
  in.read(text.data(), static_cast<std::streamsize>(text.size()));
  if (in.bad()) return Status{Errc::kInvalidArgument, "cannot read config file " + path};
  text.resize(static_cast<std::size_t>(in.gcount()));
  if (text.size() > kMaxConfigBytes) {
    return Status{Errc::kInvalidArgument, "config file " + path + " is larger than 1 MiB"};
  }
  return parse_daemon_config(text, path);
}

}  // namespace shmbus::daemon

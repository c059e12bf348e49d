#include "bridge/bridge_config.h"

#include <toml++/toml.h>
#include <bit>
#include <filesystem>
#include <fstream>
#include <initializer_list>
#include <sstream>

#include "bridge/curve_keys.h"
#include "bridge/wire_format.h"
#include "shm/topic_segment_layout.h"
#include "shmbus/topic_name.h"
#include "shmbus/topic_pattern.h"

namespace shmbus::bridge {

const char* const kExampleConfig =
    R"(# shmbus-bridge configuration. Relative key paths are relative to this file.
name = "site-a"                      # participant name, stats topic shmbus/bridge/site-a/stats, origin id
# origin_id = 1                      # default: a hash of name; must differ between bridges that talk

[bus]                                # the local instance (default: $SHMBUS_INSTANCE, $SHMBUS_RUNTIME_DIR)
instance = "default"

[network]
bind = ["tcp://10.0.0.1:7447"]       # peers connect here to receive what this host offers ('*' port: any)
high_water_mark = 10000              # batches (1-256 messages, <= 64 KiB) queued per peer connection
lossless = false                     # true: wait for slow peers (send_timeout_ms) instead of dropping
discovery_interval_ms = 50           # how often local subscribers are looked up
stats_interval_ms = 1000
idle_spin_us = 0                     # busy-poll this long before sleeping (lower latency, a core per thread)

[security]                           # CURVE encryption; leave out only on trusted links
secret_key = "keys/site-a.key"       # from: shmbus-bridge --generate-keys keys/site-a
allow = ["keys/site-b.pub"]          # public keys allowed to connect; nobody else gets in

[[peer]]                             # a bridge to receive from: it must list our key in its allow
endpoint = "tcp://10.0.0.2:7447"
server_key = "keys/site-b.pub"

[[rule]]                             # first match wins
pattern = "robot/*/pose"             # '*' one level, '**' any number of levels
direction = "both"                   # out (local -> peers), in (peers -> local), both

[[rule]]
pattern = "**"
direction = "in"
local_prefix = "remote/site-b/"      # site-b's "camera/x" arrives here as "remote/site-b/camera/x"
remote_prefix = ""
policy = "lossless"                  # settings of the local topics this bridge publishes into
max_message_size = 65536
)";

uint64_t origin_id_of(std::string_view name) {
  uint64_t h = 14695981039346656037ull;  // FNV-1a: stable across builds and hosts
  for (unsigned char c : name) h = (h ^ c) * 1099511628211ull;
  return h;
}

namespace {

class Parser {
 public:
  Parser(std::string_view source, std::string base_dir) : source_(source), base_dir_(std::move(base_dir)) {}

  Status error(const toml::node* node, std::string_view key, const std::string& what) const {
    std::string where(source_);
    if (node) where += ":" + std::to_string(node->source().begin.line);
    return {Errc::kInvalidArgument, where + ": " + std::string(key) + ": " + what};
  }

  // Every key of `table` must be one of `allowed`: a typo must not silently mean "default".
  Status only_keys(const toml::table& table, std::string_view section,
                   std::initializer_list<std::string_view> allowed) const {
    for (const auto& [key, value] : table) {
      bool known = false;
      for (auto a : allowed) known = known || key.str() == a;
      if (!known) {
        std::string name =
            section.empty() ? std::string(key.str()) : std::string(section) + "." + std::string(key.str());
        return error(&value, name, "unknown key");
      }
    }
    return Status::Ok();
  }

  Status get_string(const toml::table& t, std::string_view key, std::string* out) const {
    const toml::node* n = t.get(key);
    if (!n) return Status::Ok();
    auto v = n->value<std::string>();
    if (!v) return error(n, key, "must be a string");
    *out = *v;
    return Status::Ok();
  }

  Status get_int(const toml::table& t, std::string_view key, int64_t min, int64_t max, int64_t* out) const {
    const toml::node* n = t.get(key);
    if (!n) return Status::Ok();
    auto v = n->value_exact<int64_t>();
    if (!v) return error(n, key, "must be an integer");
    if (*v < min || *v > max) {
      return error(n, key, "must be between " + std::to_string(min) + " and " + std::to_string(max));
    }
    *out = *v;
    return Status::Ok();
  }

  Status get_ms(const toml::table& t, std::string_view key, std::chrono::milliseconds* out) const {
    int64_t v = out->count();
    if (auto s = get_int(t, key, 1, 3600000, &v); !s.ok()) return s;
    *out = std::chrono::milliseconds(v);
    return Status::Ok();
  }

  Status get_bool(const toml::table& t, std::string_view key, bool* out) const {
    const toml::node* n = t.get(key);
    if (!n) return Status::Ok();
    auto v = n->value_exact<bool>();
    if (!v) return error(n, key, "must be true or false");
    *out = *v;
    return Status::Ok();
  }

  Status get_strings(const toml::table& t, std::string_view key, std::vector<std::string>* out,
                     std::vector<int>* lines = nullptr) const {
    const toml::node* n = t.get(key);
    if (!n) return Status::Ok();
    const toml::array* a = n->as_array();
    if (!a) return error(n, key, "must be an array of strings");
    for (const toml::node& e : *a) {
      auto v = e.value<std::string>();
      if (!v) return error(&e, key, "must be an array of strings");
      out->push_back(*v);
      if (lines) lines->push_back(static_cast<int>(e.source().begin.line));
    }
    return Status::Ok();
  }

  Result<std::string> key_from_file(const toml::node* n, std::string_view key,
                                    const std::string& path) const {
    std::filesystem::path p(path);
    if (p.is_relative() && !base_dir_.empty()) p = std::filesystem::path(base_dir_) / p;
    auto k = read_key_file(p.string());
    if (!k) return error(n, key, k.status().message());
    return k;
  }

  static bool valid_prefix(const std::string& prefix) {
    if (prefix.empty()) return true;
    return prefix.back() == '/' &&
           validate_topic_name(std::string_view(prefix).substr(0, prefix.size() - 1)).ok();
  }

  Status parse_rule(const toml::table& t, Rule* rule) const {
    if (auto s = only_keys(t, "rule",
                           {"pattern", "direction", "local_prefix", "remote_prefix", "max_message_size",
                            "depth", "policy", "history", "max_publishers", "max_subscribers"});
        !s.ok()) {
      return s;
    }
    rule->line = static_cast<int>(t.source().begin.line);
    const toml::node* pattern = t.get("pattern");
    if (!pattern) return error(&t, "rule.pattern", "missing (every [[rule]] needs a pattern)");
    if (auto s = get_string(t, "pattern", &rule->pattern); !s.ok()) return s;
    if (auto s = validate_topic_pattern(rule->pattern); !s.ok())
      return error(pattern, "rule.pattern", s.message());
    std::string direction = "both";
    if (auto s = get_string(t, "direction", &direction); !s.ok()) return s;
    if (direction == "out") {
      rule->direction = Direction::kOut;
    } else if (direction == "in") {
      rule->direction = Direction::kIn;
    } else if (direction == "both") {
      rule->direction = Direction::kBoth;
    } else {
      return error(t.get("direction"), "rule.direction", "\"" + direction + "\" is not one of out, in, both");
    }
    for (auto [key, field] :
         {std::pair{"local_prefix", &rule->local_prefix}, std::pair{"remote_prefix", &rule->remote_prefix}}) {
      if (auto s = get_string(t, key, field); !s.ok()) return s;
      if (!valid_prefix(*field)) {
        return error(t.get(key), std::string("rule.") + key,
                     "\"" + *field + "\" must be empty or a valid topic name followed by '/'");
      }
    }
    // Within the limits a topic can have (shm/topic_segment_layout.h), as the daemon checks its own rules: a
    // wrong value is reported here, not as a publish failure on every message.
    auto& ts = rule->topic;
    for (auto [key, field, min, max] :
         {std::tuple{"max_message_size", &ts.max_message_size, 1ll, int64_t{shm::kMaxMessageSizeLimit}},
          std::tuple{"depth", &ts.depth, 2ll, int64_t{shm::kMaxDepthLimit}},
          std::tuple{"history", &ts.history, 0ll, int64_t{shm::kMaxDepthLimit} - 2},
          std::tuple{"max_publishers", &ts.max_publishers, 1ll, int64_t{shm::kMaxPublishersLimit}},
          std::tuple{"max_subscribers", &ts.max_subscribers, 1ll, int64_t{shm::kMaxSubscribersLimit}}}) {
      int64_t v = -1;
      if (auto s = get_int(t, key, min, max, &v); !s.ok()) return s;
      if (v >= 0) *field = static_cast<uint32_t>(v);
    }
    if (ts.depth && !std::has_single_bit(*ts.depth)) {
      return error(t.get("depth"), "rule.depth", std::to_string(*ts.depth) + " is not a power of two");
    }
    if (ts.history && ts.depth && uint64_t{*ts.history} + 2 > *ts.depth) {
      return error(t.get("history"), "rule.history",
                   "must be at most depth - 2 = " + std::to_string(*ts.depth - 2));
    }
    std::string policy;
    if (auto s = get_string(t, "policy", &policy); !s.ok()) return s;
    if (policy == "lossless") {
      ts.policy = Policy::kLossless;
    } else if (policy == "lossy") {
      ts.policy = Policy::kLossy;
    } else if (!policy.empty()) {
      return error(t.get("policy"), "rule.policy", "\"" + policy + "\" is not lossy or lossless");
    }
    return Status::Ok();
  }

  Result<BridgeConfig> parse(const toml::table& doc) const {
    BridgeConfig c;
    if (auto s = only_keys(doc, "", {"name", "origin_id", "bus", "network", "security", "peer", "rule"});
        !s.ok())
      return s;
    if (!doc.get("name")) return error(nullptr, "name", "missing (the bridge needs a name)");
    if (auto s = get_string(doc, "name", &c.name); !s.ok()) return s;
    if (c.name.empty() || c.name.find('/') != std::string::npos || !validate_topic_name(c.name).ok()) {
      return error(doc.get("name"), "name", "\"" + c.name + "\" must be one topic segment ([A-Za-z0-9_.-])");
    }
    // Its statistics topic, shmbus/bridge/<name>/stats, must be a valid topic name too.
    if (!validate_topic_name("shmbus/bridge/" + c.name + "/stats").ok()) {
      return error(doc.get("name"), "name",
                   "is too long for its statistics topic shmbus/bridge/<name>/stats");
    }
    c.origin_id = origin_id_of(c.name);
    int64_t origin = 0;
    if (auto s = get_int(doc, "origin_id", 1, INT64_MAX, &origin); !s.ok()) return s;
    if (origin > 0) c.origin_id = static_cast<uint64_t>(origin);

    if (const toml::node* n = doc.get("bus")) {
      const toml::table* t = n->as_table();
      if (!t) return error(n, "bus", "must be a table");
      if (auto s = only_keys(*t, "bus", {"instance", "runtime_dir"}); !s.ok()) return s;
      if (auto s = get_string(*t, "instance", &c.instance); !s.ok()) return s;
      if (auto s = get_string(*t, "runtime_dir", &c.runtime_dir); !s.ok()) return s;
    }
    if (const toml::node* n = doc.get("network")) {
      const toml::table* t = n->as_table();
      if (!t) return error(n, "network", "must be a table");
      if (auto s = only_keys(*t, "network",
                             {"bind", "high_water_mark", "lossless", "send_timeout_ms",
                              "discovery_interval_ms", "stats_interval_ms", "full_timeout_ms", "max_hops",
                              "relay", "idle_spin_us", "max_frame_bytes"});
          !s.ok()) {
        return s;
      }
      std::vector<int> lines;
      if (auto s = get_strings(*t, "bind", &c.bind, &lines); !s.ok()) return s;
      for (std::size_t i = 0; i < c.bind.size(); ++i) {
        if (c.bind[i].rfind("tcp://", 0) != 0) {
          return Status{Errc::kInvalidArgument, std::string(source_) + ":" + std::to_string(lines[i]) +
                                                    ": network.bind: \"" + c.bind[i] +
                                                    "\" is not a tcp:// endpoint"};
        }
      }
      int64_t v = c.high_water_mark;
      if (auto s = get_int(*t, "high_water_mark", 1, 100000000, &v); !s.ok()) return s;
      c.high_water_mark = static_cast<int>(v);
      v = c.max_hops;
      if (auto s = get_int(*t, "max_hops", 1, 255, &v); !s.ok()) return s;
      c.max_hops = static_cast<int>(v);
      if (auto s = get_bool(*t, "lossless", &c.lossless); !s.ok()) return s;
      if (auto s = get_bool(*t, "relay", &c.relay); !s.ok()) return s;
      if (auto s = get_ms(*t, "send_timeout_ms", &c.send_timeout); !s.ok()) return s;
      if (auto s = get_ms(*t, "discovery_interval_ms", &c.discovery_interval); !s.ok()) return s;
      if (auto s = get_ms(*t, "stats_interval_ms", &c.stats_interval); !s.ok()) return s;
      if (auto s = get_ms(*t, "full_timeout_ms", &c.full_timeout); !s.ok()) return s;
      v = c.idle_spin.count();
      if (auto s = get_int(*t, "idle_spin_us", 0, 1000000, &v); !s.ok()) return s;
      c.idle_spin = std::chrono::microseconds(v);
      if (auto s = get_int(*t, "max_frame_bytes", static_cast<int64_t>(kMaxBatchBytes),
                           static_cast<int64_t>(kMaxFrameBytes), &c.max_frame_bytes);
          !s.ok())
        return s;
    }
    if (const toml::node* n = doc.get("security")) {
      const toml::table* t = n->as_table();
      if (!t) return error(n, "security", "must be a table");
      if (auto s = only_keys(*t, "security", {"secret_key", "allow"}); !s.ok()) return s;
      const toml::node* secret = t->get("secret_key");
      if (!secret) return error(n, "security.secret_key", "missing: CURVE needs this host's secret key file");
      std::string path;
      if (auto s = get_string(*t, "secret_key", &path); !s.ok()) return s;
      auto key = key_from_file(secret, "security.secret_key", path);
      if (!key) return key.status();
      c.secret_key = key.value();
      auto pub = public_key_of(c.secret_key);
      if (!pub) return error(secret, "security.secret_key", pub.status().message());
      c.public_key = pub.value();
      c.curve = true;
      std::vector<int> lines;
      if (auto s = get_strings(*t, "allow", &c.allowed_key_files, &lines); !s.ok()) return s;
      for (const auto& file : c.allowed_key_files) {
        auto k = key_from_file(t->get("allow"), "security.allow", file);
        if (!k) return k.status();
        c.allowed_keys.push_back(k.value());
      }
    }
    if (const toml::node* n = doc.get("peer")) {
      const toml::array* peers = n->as_array();
      if (!peers || !peers->is_array_of_tables()) return error(n, "peer", "must be [[peer]] tables");
      for (const toml::node& e : *peers) {
        const toml::table& t = *e.as_table();
        if (auto s = only_keys(t, "peer", {"endpoint", "server_key"}); !s.ok()) return s;
        Peer p;
        if (auto s = get_string(t, "endpoint", &p.endpoint); !s.ok()) return s;
        if (p.endpoint.rfind("tcp://", 0) != 0) {
          return error(t.get("endpoint") ? t.get("endpoint") : &t, "peer.endpoint",
                       "\"" + p.endpoint + "\" is not a tcp:// endpoint");
        }
        if (const toml::node* k = t.get("server_key")) {
          std::string path;
          if (auto s = get_string(t, "server_key", &path); !s.ok()) return s;
          auto key = key_from_file(k, "peer.server_key", path);
          if (!key) return key.status();
          p.server_key = key.value();
        } else if (c.curve) {
          return error(&t, "peer.server_key",
                       "missing: with [security] every peer needs its public key file");
        }
        c.peers.push_back(std::move(p));
      }
    }
    if (const toml::node* n = doc.get("rule")) {
      const toml::array* rules = n->as_array();
      if (!rules || !rules->is_array_of_tables()) return error(n, "rule", "must be [[rule]] tables");
      for (const toml::node& e : *rules) {
        Rule r;
        if (auto s = parse_rule(*e.as_table(), &r); !s.ok()) return s;
        c.rules.push_back(std::move(r));
      }
    }
    if (c.rules.empty()) return error(nullptr, "rule", "no [[rule]]: the bridge would forward nothing");
    if (c.bind.empty() && c.peers.empty())
      return error(nullptr, "network", "neither bind endpoints nor peers");
    return c;
  }

 private:
  std::string_view source_;
  std::string base_dir_;
};

}  // namespace

Result<BridgeConfig> parse_bridge_config(std::string_view toml_text, std::string_view source_name,
                                         const std::string& base_dir) {
  toml::table doc;
  try {
    doc = toml::parse(toml_text, source_name);
  } catch (const toml::parse_error& e) {
    return Status{Errc::kInvalidArgument, std::string(source_name) + ":" +
                                              std::to_string(e.source().begin.line) + ": " +
                                              std::string(e.description())};
  }
  return Parser(source_name, base_dir).parse(doc);
}

Result<BridgeConfig> load_bridge_config(const std::string& path) {
  std::ifstream in(path);
  if (!in) return Status{Errc::kInvalidArgument, "cannot read configuration file " + path};
  std::stringstream text;
  text << in.rdbuf();
  return parse_bridge_config(text.str(), path, std::filesystem::path(path).parent_path().string());
}

}  // namespace shmbus::bridge

// shmbus-bridge's configuration: a TOML file. Every error names the file, the line and the key. The
// documented example is kExampleConfig (printed by `shmbus-bridge --print-config`, repeated in
// bridge/README.md).
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "bridge/wire_format.h"
#include "shmbus/options.h"
#include "shmbus/status.h"

namespace shmbus::bridge {

enum class Direction { kOut, kIn, kBoth };

// One selection: local topic = local_prefix + X and wire topic = remote_prefix + X, for every X that matches
// `pattern` (as mosquitto's bridge `topic` lines). Prefixes are empty or end in '/'.
struct Rule {
  std::string pattern;
  Direction direction = Direction::kBoth;
  std::string local_prefix;
  std::string remote_prefix;
  // Settings of local topics this bridge publishes into (direction in): unset fields take the topic's.
  TopicSettings topic;
  int line = 0;  // where the rule starts, for messages
};

struct Peer {
  std::string endpoint;    // tcp://host:port of a peer bridge's `bind` endpoint; we receive from it
  std::string server_key;  // the peer's CURVE public key (Z85, 40 characters); required when CURVE is on
};

struct BridgeConfig {
  // The bridge's name: participant name, stats topic shmbus/bridge/<name>/stats, and (hashed) the origin id.
  std::string name;
  // The origin host id in every header this bridge originates. Default: FNV-1a of `name`. Must differ between
  // all bridges that exchange messages.
  uint64_t origin_id = 0;

  // The local bus ([bus]); empty: $SHMBUS_INSTANCE / $SHMBUS_RUNTIME_DIR as every client.
  std::string instance;
  std::string runtime_dir;

  // [network]
  std::vector<std::string> bind;  // our XPUB endpoints (tcp://addr:port, port may be '*'); peers connect here
  std::vector<Peer> peers;        // [[peer]]: XPUB endpoints we connect our XSUB to
  int high_water_mark =
      10000;  // ZeroMQ messages (batches) queued per peer connection before ZeroMQ drops (or blocks)
  // false: a slow peer loses messages at the high-water mark (counted downstream as sequence gaps).
  // true: the bridge waits up to send_timeout for the slowest peer (back-pressure to lossless local topics),
  // then drops and counts; one slow peer then slows every peer.
  bool lossless = false;
  std::chrono::milliseconds send_timeout{1000};
  std::chrono::milliseconds discovery_interval{50};  // how often local subscribers are looked up
  std::chrono::milliseconds stats_interval{1000};    // how often the stats topic is published
  std::chrono::milliseconds full_timeout{1000};      // wait on a full lossless local topic before dropping
  int max_hops = 8;   // a message that crossed more bridges is dropped (a guard, loops are cut before)
  bool relay = true;  // re-offer what arrives from one peer to the others (multi-hop topologies)
  // How long the outbound and inbound threads busy-poll for the next message before they sleep. 0: sleep at
  // once (the default: a spinning thread takes a core from the processes it serves). A spin longer than the
  // gap between messages keeps the path awake: on a VM, each wake-up of a sleeping thread costs tens of
  // microseconds, two of them per message on the bridges' path (bridge/README.md, Performance).
  std::chrono::microseconds idle_spin{0};
  // A peer that sends a larger frame is disconnected (ZeroMQ's ZMQ_MAXMSGSIZE; it reconnects, and the frame
  // is lost). Default: the largest frame a bridge sends (kMaxFrameBytes). Lower it to what the largest
  // message of any peer's topics needs (that plus 44 bytes), to bound what one peer's frame may cost.
  int64_t max_frame_bytes = static_cast<int64_t>(kMaxFrameBytes);

  // [security]: CURVE on when secret_key_file is set.
  bool curve = false;
  std::string public_key;                 // Z85, derived from the secret key
  std::string secret_key;                 // Z85
  std::vector<std::string> allowed_keys;  // Z85 public keys of peers allowed to connect to us
  std::vector<std::string> allowed_key_files;

  std::vector<Rule> rules;  // [[rule]], first match wins
};

// Parses a configuration document. Relative key file paths are resolved against `base_dir`.
Result<BridgeConfig> parse_bridge_config(std::string_view toml_text, std::string_view source_name,
                                         const std::string& base_dir);
Result<BridgeConfig> load_bridge_config(const std::string& path);

uint64_t origin_id_of(std::string_view name);

extern const char* const kExampleConfig;

}  // namespace shmbus::bridge

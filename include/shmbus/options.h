// Options of the bus, its topics and endpoints: plain structs with defaults, one comment per field.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>

namespace shmbus {

enum class Policy : uint32_t {
  kLossless = 0,  // a publisher waits (up to its timeout) while the slowest subscriber's ring is full
  kLossy = 1,     // a publisher never waits; lapped subscribers skip ahead and count what they missed
};

// Settings of a topic. The first endpoint to open a topic fixes them (else the daemon's config or defaults
// apply); later endpoints may leave any field unset (nullopt: accept what the topic has). Set fields must
// match the topic; max_message_size must fit within it. The daemon sizes the topic's shared memory from them:
// max_publishers x depth x (max_message_size + 32) bytes, rounded to cache lines.
struct TopicSettings {
  std::optional<uint32_t>
      max_message_size;                     // default 4096 bytes (typed endpoints ask for at least sizeof(T))
  std::optional<uint32_t> depth;            // slots per publisher ring; power of two; default 64
  std::optional<Policy> policy;             // default kLossy
  std::optional<uint32_t> history;          // messages kept for late joiners (<= depth - 2); default 0
  std::optional<uint32_t> max_publishers;   // default 8
  std::optional<uint32_t> max_subscribers;  // default 32
};

struct BusOptions {
  // Which daemon instance to talk to. Empty: $SHMBUS_INSTANCE, else "default".
  std::string instance;
  // Directory holding the daemon's socket. Empty: $SHMBUS_RUNTIME_DIR, else /run/shmbus, else /tmp/shmbus.
  std::string runtime_dir;
  // Name shown by `shmbus stats` for this participant. Empty: the program's name.
  std::string name;
  // How long a control call (opening a publisher, say) waits for the daemon before kTimeout.
  std::chrono::milliseconds control_timeout{5000};
};

struct PublisherOptions {
  TopicSettings topic;
  // Lossless topics: how long loan() and publish() wait for the slowest subscriber before kTimeout.
  std::chrono::milliseconds full_timeout{1000};
};

struct SubscriberOptions {
  TopicSettings topic;
  // Messages of each live publisher to deliver from before this subscriber joined (<= the topic's history).
  uint32_t history = 0;
  // Samples this subscriber may hold at once; holding a sample of a lossless topic keeps its slot from reuse.
  uint32_t max_held_samples = 16;
  // take(timeout) busy-polls this long before sleeping on a futex: lower wake-up latency, more CPU.
  std::chrono::microseconds spin{50};
};

}  // namespace shmbus

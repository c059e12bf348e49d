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
      max_message_size;           // default 4096 bytes (typed endpoints ask for at least sizeof(T))
  std::optional<uint32_t> depth;  // slots per publisher ring; power of two; default 64
  std::optional<Policy> policy;   // default kLossy
  // Messages kept for late joiners (<= depth - 2); default 0. Counted in slots: the slot of a packed batch
  // (Publisher::publish_batch) counts once, so a joiner may get more.
  std::optional<uint32_t> history;
  std::optional<uint32_t> max_publishers;   // default 8
  std::optional<uint32_t> max_subscribers;  // default 32
};

// When a durable queue's changes reach the disk (they reach the shared page cache at once, so a daemon or
// client crash loses nothing; this is about power loss and reboots).
enum class SyncPolicy : uint32_t {
  kNever = 0,     // the kernel writes back when it likes (typically within 30 s)
  kInterval = 1,  // the daemon syncs the file every sync_interval_ms
  kAlways = 2,    // every send and every ack syncs its pages before returning (slowest, safest)
};

// Settings of a work queue or a service's request queue. The first endpoint (or the daemon's [[queue]] rules)
// fixes them; later endpoints may leave fields unset. The daemon sizes the queue's memory from them:
// capacity x (max_message_size + 128) bytes plus a page.
struct QueueSettings {
  std::optional<uint32_t> capacity;  // messages the queue holds (ready + in flight + dead); default 256
  std::optional<uint32_t> max_message_size;  // default 4096 bytes
  std::optional<uint32_t> max_deliveries;    // deliveries before a message becomes a dead letter; default 5
  std::optional<bool> durable;               // backed by a file in the daemon's data_dir; default false
  std::optional<SyncPolicy> sync;            // durable queues; default kInterval
  std::optional<uint32_t> sync_interval_ms;  // kInterval; default 100
};

struct QueueProducerOptions {
  QueueSettings queue;
  // How long send() and loan() wait for room in a full queue before kTimeout.
  std::chrono::milliseconds full_timeout{1000};
};

struct QueueConsumerOptions {
  QueueSettings queue;
  // A delivery not acknowledged within this time is taken back and delivered again (to anyone).
  std::chrono::milliseconds visibility_timeout{30000};
};

struct ServerOptions {
  QueueSettings queue;  // of the service's request queue
  // How long respond() waits for room in a client's full response queue.
  std::chrono::milliseconds full_timeout{1000};
};

struct ClientOptions {
  QueueSettings queue;  // of the service's request queue
  // Responses this client can hold unread, and their largest size.
  uint32_t response_capacity = 16;
  uint32_t max_response_size = 4096;
  // How long call() waits for room in the service's full request queue (counts against the deadline).
  std::chrono::milliseconds full_timeout{1000};
  // call() busy-polls for its response this long before sleeping on a futex: a wake-up from the futex costs
  // tens of microseconds on a VM, a busy poll a fraction of one.
  std::chrono::microseconds spin{50};
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
  // Stamp each message with its publish time (SampleView::publish_time, and the sampled waiting times that
  // `shmbus stats` shows). One TSC read a publish: ~10 ns on the 2-vCPU VM, more than all the rest of a
  // 64 B zero-copy publish (~7 ns). Off: this publisher's messages carry no time (has_publish_time() is
  // false) and subscribers sample no waiting time from them.
  bool stamp_publish_time = true;
};

struct SubscriberOptions {
  TopicSettings topic;
  // Messages of each live publisher to deliver from before this subscriber joined (<= the topic's history).
  // Counted in slots, as TopicSettings::history: a packed batch's slot counts once.
  uint32_t history = 0;
  // Samples this subscriber may hold at once; holding a sample of a lossless topic keeps its slot from reuse.
  uint32_t max_held_samples = 16;
  // take(timeout) busy-polls this long before sleeping on a futex: lower wake-up latency, more CPU.
  std::chrono::microseconds spin{50};
};

}  // namespace shmbus

// The inbound side of the bridge (one thread): subscribes upstream (XSUB) to the wire topics our local
// subscribers need, receives from peers, validates and de-duplicates each message, publishes it on the local
// bus and queues it for relaying to our own peers. It also watches link state (socket monitors) and publishes
// the bridge's statistics. Owns the XSUB socket and the monitor sockets while it runs.
#pragma once

#include <zmq.h>

#include <chrono>
#include <functional>
#include <map>
#include <optional>
#include <set>
#include <span>
#include <string>
#include <unordered_map>
#include <vector>

#include "bridge/bridge_config.h"
#include "bridge/bridge_shared.h"
#include "bridge/idle_spin.h"
#include "bridge/link_monitor.h"
#include "bridge/peer_endpoints.h"
#include "bridge/sequence_tracker.h"
#include "bridge/topic_mapper.h"
#include "bridge/wire_format.h"
#include "bridge/zmq_message.h"
#include "shmbus/bus.h"

namespace shmbus::bridge {

struct InboundSockets {
  void* xsub = nullptr;
  void* xsub_monitor = nullptr;  // PAIR connected to the XSUB's monitor
  void* xpub_monitor = nullptr;  // PAIR connected to the XPUB's monitor
};

class Inbound {
 public:
  Inbound(const BridgeConfig& config, const TopicMapper& mapper, InboundSockets sockets, uint64_t epoch,
          LinkMonitor links, Shared& shared);
  // Runs until shared.stop is set.
  void run();

 private:
  struct Route {  // what a wire topic maps to, cached: rules are matched once per topic, not per message
    bool selected = false;
    std::string local;
    const Rule* rule = nullptr;
    std::optional<std::string> relay_frame;  // the frame to relay under, if an out rule selects the topic
    std::string relay_topic;                 // the same without the NUL
    uint64_t interest_version = ~0ull;       // RemoteInterest version relay_wanted was computed at
    bool relay_wanted = false;               // a peer subscribes to relay_topic
    bool subscribed = false;                 // in subscribed_: a local subscriber wants it
  };
  static constexpr std::size_t kMaxRoutes = 8192;  // cached wire topics (see route_of)
  struct Hash {
    using is_transparent = void;
    std::size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
  };

  // Messages for one local publisher received but not yet published: published together (one release, one
  // wake-up of sleeping local subscribers) when the receive burst ends or a message for another topic comes.
  struct PendingBatch {
    struct Record {
      std::size_t frame;  // index into frames
      std::size_t offset;
      std::size_t size;
    };
    Publisher* publisher = nullptr;
    std::vector<ZmqMessage> frames;  // the batch frames the records are in
    std::vector<Record> records;
    std::vector<std::span<const std::byte>> spans;  // scratch for publish_batch
  };

  // zmq_poll over `items` for up to `timeout`; busy-polls instead while within config_.idle_spin of the
  // last time something was ready.
  int poll(std::span<zmq_pollitem_t> items, std::chrono::milliseconds timeout);
  // Receives and handles one ZeroMQ message: -1 when none was waiting, else the records it delivered.
  int receive_one();
  // True if the route's messages go on to our peers: relay is on and a peer subscribes to its out topic.
  bool relayed(Route& route);
  void deliver(Route& route, const BatchHeader& header, const std::vector<WireRecord>& records,
               ZmqMessage&& frame);
  // Publishes one message at once; false if a full lossless topic timed out (counted).
  bool publish_now(Publisher& p, std::span<const std::byte> bytes);
  void flush_pending();
  Route& route_of(std::string_view wire);
  Publisher* publisher_for(const Route& route);
  void discover();
  void lose_bus(const Status& why);
  bool ensure_bus();
  void publish_stats();
  void drain_monitor(void* monitor, bool listening);
  void update_own_publishers();
  void redial_dropped_peers();

  const BridgeConfig& config_;
  const TopicMapper& mapper_;
  InboundSockets sockets_;
  uint64_t epoch_;
  LinkMonitor links_;
  PeerEndpoints peer_endpoints_;  // names the configured peer each XSUB monitor event is about
  Shared& shared_;
  Counters& counters_;
  std::chrono::steady_clock::time_point started_;
  IdleSpin spin_;  // poll() busy-polls within it

  std::optional<Bus> bus_;
  int64_t daemon_pid_ = 0;  // of the daemon bus_ talks to, from its statistics (0: not known yet)
  std::chrono::steady_clock::time_point next_connect_{};
  std::unordered_map<std::string, Route, Hash, std::equal_to<>> routes_;  // bounded: see route_of
  // The last topic frame seen and its route: a stream of one topic skips the parse and the lookup.
  std::string last_topic_frame_;
  Route* last_route_ = nullptr;
  std::unordered_map<std::string, Publisher> publishers_;  // by local topic
  std::set<std::string> shadowed_;  // local topics an earlier rule keeps from receiving (warned once)
  // Ids of publishers we had and let go (or that re-opened under a new id), still announced as ours for
  // kRetiredFor: their messages may sit unread in the outbound side's rings, and sent from there they would
  // go out again under our origin (duplicates downstream). Ids are unique per daemon: cleared when it
  // changes.
  static constexpr std::chrono::seconds kRetiredFor{30};
  std::vector<std::pair<uint64_t, std::chrono::steady_clock::time_point>> retired_ids_;  // oldest first
  std::vector<uint64_t> announced_ids_;  // current + retired, as last given to shared_.own_publishers
  std::unordered_map<std::string, std::chrono::steady_clock::time_point> publisher_retry_;
  std::set<std::string, std::less<>> subscribed_;  // wire topics subscribed upstream
  SequenceTracker tracker_;
  PendingBatch pending_;
  std::vector<WireRecord> records_;  // scratch: the records of the batch being received
  std::optional<Publisher> stats_publisher_;
  // Peers to dial again, and when: libzmq 4.3 gives up on a connection after a handshake error (a refused
  // key) or a protocol error (a frame over max_frame_bytes), so without this a peer fixed later, or one that
  // sent one bad frame, would never be reached again.
  std::map<std::string, std::chrono::steady_clock::time_point> redial_;
};

}  // namespace shmbus::bridge

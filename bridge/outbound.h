// The outbound side of the bridge (one thread): reads the subscriptions our peers send to the XPUB socket,
// subscribes on the local bus to exactly those topics that an out rule selects, and sends what local
// publishers publish there to the peers, each message numbered per topic. It also passes on messages of other
// origins that the inbound thread queued for relaying. Owns the XPUB socket while it runs.
#pragma once

#include <chrono>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <span>
#include <string>
#include <unordered_map>
#include <vector>

#include "bridge/bridge_config.h"
#include "bridge/bridge_shared.h"
#include "bridge/log_throttle.h"
#include "bridge/topic_mapper.h"
#include "bridge/wire_format.h"
#include "bridge/zmq_message.h"
#include "shmbus/bus.h"
#include "shmbus/wait_set.h"

namespace shmbus::bridge {

class Outbound {
 public:
  // `epoch`: this bridge run's start (ns since the Unix epoch), carried in every header.
  Outbound(const BridgeConfig& config, const TopicMapper& mapper, void* xpub, uint64_t epoch, Shared& shared);
  // Withdraws wait_set_ from the relay queue, also when run() ends by an exception: the inbound thread must
  // not notify a wait set that is gone.
  ~Outbound() { shared_.relay.set_waiter(nullptr); }
  Outbound(const Outbound&) = delete;
  Outbound& operator=(const Outbound&) = delete;
  // Runs until shared.stop is set.
  void run();

 private:
  struct Route {
    std::string local;  // the local topic
    std::string frame;  // the wire topic frame
    Subscriber subscriber;
    uint64_t dropped_seen = 0;  // subscriber.dropped() already accounted for
  };

  void handle_subscriptions();
  // Subscribes locally for `wire` (wanted by a peer); `retry`: a failure was already warned about.
  void open_route(const std::string& wire, bool retry = false);
  // Opens the routes of wanted topics whose subscribe failed, every kRouteRetry.
  void retry_routes();
  void close_route(const std::string& wire);
  void close_all_routes();
  bool ensure_bus();
  void drain(Route& route);
  // Copies m into `out` (a record's header and payload) and numbers it; false if a lossy publisher
  // overwrote it meanwhile (counted, its number skipped).
  bool encode_record(Route& route, const SampleView& m, uint64_t& sequence, std::span<std::byte> out);
  // The header of a batch of our own messages (no hops, our origin and epoch).
  void encode_own_batch_header(std::span<std::byte, kBatchHeaderSize> out) const;
  void start_batch();
  void flush_batch(const Route& route);
  bool send(const std::string& frame, ZmqMessage& batch, std::size_t records);
  // Sends what the inbound side queued for relaying; true if there was any.
  bool send_relays();
  bool own(uint64_t publisher_id);

  const BridgeConfig& config_;
  const TopicMapper& mapper_;
  void* xpub_;
  uint64_t epoch_;
  Shared& shared_;
  Counters& counters_;

  std::optional<Bus> bus_;
  std::chrono::steady_clock::time_point next_connect_{};
  static constexpr std::chrono::seconds kRouteRetry{1};
  std::chrono::steady_clock::time_point next_route_retry_{};
  uint64_t losses_seen_ = 0;
  std::set<std::string> wanted_;                             // wire topics peers want that a rule selects
  std::map<std::string, std::unique_ptr<Route>> routes_;     // by wire topic; stable addresses for WaitSet
  std::unordered_map<std::string, uint64_t> next_sequence_;  // by wire topic; survives route re-opening
  // No spin inside wait(): the bridge shares the machine with the publishers it waits for, and a spinning
  // thread takes their CPU (on 2 cores: 0.92 -> 1.25 M msg/s bridged without the default 50 us spin). run()
  // spins itself when config_.idle_spin asks for it, yielding the CPU between polls.
  WaitSet wait_set_{std::chrono::microseconds(0)};
  std::vector<uint64_t> own_ids_;
  uint64_t own_version_ = ~0ull;
  bool send_stalled_ = false;  // lossless: a send of this pass timed out; the rest does not wait
  std::vector<RelayQueue::Item> relays_;
  LogThrottle oom_log_;  // out-of-memory lines: one a second (send_dropped counts every loss)
  // The batch being filled by drain(): header and records, sent when drain is done or the next record would
  // not fit (kMaxBatchBytes). The first kBatchHeaderSize bytes always hold this bridge's batch header.
  std::unique_ptr<std::byte[]> batch_storage_ = std::make_unique<std::byte[]>(kMaxBatchBytes);
  std::span<std::byte> batch_{batch_storage_.get(), kMaxBatchBytes};
  std::size_t batch_used_ = 0;
  std::size_t batch_records_ = 0;
  uint64_t batch_payload_bytes_ = 0;
  int64_t realtime_offset_ns_ = 0;  // system_clock - steady_clock, refreshed every 100 ms
};

}  // namespace shmbus::bridge

#include "bridge/outbound.h"

#include <spdlog/spdlog.h>
#include <zmq.h>

#include <algorithm>
#include <array>
#include <cstring>

#include "bridge/idle_spin.h"

namespace shmbus::bridge {
namespace {

using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

int64_t now_ns(auto clock_now) {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(clock_now.time_since_epoch()).count();
}

}  // namespace

Outbound::Outbound(const BridgeConfig& config, const TopicMapper& mapper, void* xpub, uint64_t epoch,
                   Shared& shared)
    : config_(config),
      mapper_(mapper),
      xpub_(xpub),
      epoch_(epoch),
      shared_(shared),
      counters_(shared.counters) {}

bool Outbound::ensure_bus() {
  const uint64_t losses = shared_.daemon_losses.load(std::memory_order_relaxed);
  if (losses != losses_seen_) {
    losses_seen_ = losses;
    if (bus_) spdlog::warn("outbound: local daemon gone; dropping {} local subscription(s)", routes_.size());
    close_all_routes();
    bus_.reset();
  }
  if (bus_) return true;
  if (Clock::now() < next_connect_) return false;
  next_connect_ = Clock::now() + 200ms;
  BusOptions o{.instance = config_.instance,
               .runtime_dir = config_.runtime_dir,
               .name = "shmbus-bridge:" + config_.name + "/out"};
  auto bus = Bus::connect(o);
  if (!bus) return false;
  bus_.emplace(std::move(bus).value());
  for (const auto& wire : wanted_) open_route(wire);
  return true;
}

void Outbound::open_route(const std::string& wire, bool retry) {
  if (!bus_ || routes_.count(wire)) return;
  auto mapping = mapper_.wire_to_local(wire, Direction::kOut);
  if (!mapping) return;
  SubscriberOptions o;
  o.max_held_samples = 4;
  auto sub = bus_->subscriber(mapping->name, o);
  if (!sub) {
    // Retried every kRouteRetry (retry_routes) while a peer wants it: warned the first time only.
    spdlog::log(retry ? spdlog::level::debug : spdlog::level::warn,
                "outbound: cannot subscribe to local topic {} for peers: {} (retrying every second)",
                mapping->name, sub.status().to_string());
    if (sub.status().code() == Errc::kDaemonUnavailable)
      shared_.daemon_losses.fetch_add(1, std::memory_order_relaxed);
    return;
  }
  auto route = std::make_unique<Route>(Route{mapping->name, topic_frame(wire), std::move(sub).value(), 0});
  route->dropped_seen = route->subscriber.dropped();
  wait_set_.add(route->subscriber);
  spdlog::info("outbound: peers subscribed to {} (local topic {})", wire, route->local);
  routes_.emplace(wire, std::move(route));
}

void Outbound::retry_routes() {
  // A subscribe that failed (no subscriber slot free on the topic, say) is not announced again: XPUB tells
  // us of a topic's first subscriber only. Without this the topic would never flow to any peer.
  if (routes_.size() >= wanted_.size() || Clock::now() < next_route_retry_) return;
  next_route_retry_ = Clock::now() + kRouteRetry;
  for (const auto& wire : wanted_) open_route(wire, /*retry=*/true);
}

void Outbound::close_route(const std::string& wire) {
  auto it = routes_.find(wire);
  if (it == routes_.end()) return;
  wait_set_.remove(it->second->subscriber);
  spdlog::info("outbound: no peer subscribes to {} any more", wire);
  routes_.erase(it);
}

void Outbound::close_all_routes() {
  for (auto& [wire, route] : routes_) wait_set_.remove(route->subscriber);
  routes_.clear();
}

void Outbound::handle_subscriptions() {
  // XPUB hands us a subscription only on a topic's first subscriber and last unsubscriber among all peers
  // (not verbose): wanted_ mirrors the union of our peers' subscriptions.
  std::array<std::byte, 512> buf;
  for (;;) {
    const int n = zmq_recv(xpub_, buf.data(), buf.size(), ZMQ_DONTWAIT);
    if (n < 0) return;
    auto s =
        static_cast<std::size_t>(n) <= buf.size()
            ? parse_subscription_frame(std::span<const std::byte>(buf.data(), static_cast<std::size_t>(n)))
            : std::nullopt;
    if (!s) continue;  // not a subscription of ours (a truncated or foreign frame): nothing to do
    const std::string wire(s->wire_topic);
    if (s->subscribe) {
      if (!mapper_.wire_to_local(wire, Direction::kOut)) {
        counters_.unselected_subscriptions.fetch_add(1, std::memory_order_relaxed);
        spdlog::debug("outbound: peer subscription to {} selected by no out rule: ignored", wire);
        continue;
      }
      wanted_.insert(wire);
      open_route(wire);
    } else {
      wanted_.erase(wire);
      close_route(wire);
    }
    counters_.remote_topics.store(wanted_.size(), std::memory_order_relaxed);
    shared_.remote_interest.set({wanted_.begin(), wanted_.end()});
  }
}

bool Outbound::own(uint64_t publisher_id) {
  if (shared_.own_publishers.changed(own_version_)) {
    own_version_ = shared_.own_publishers.snapshot(&own_ids_);
    std::sort(own_ids_.begin(), own_ids_.end());  // searched per message: a few hundred ids, retired ones too
  }
  return std::binary_search(own_ids_.begin(), own_ids_.end(), publisher_id);
}

bool Outbound::send(const std::string& frame, ZmqMessage& batch, std::size_t records) {
  // Lossless mode blocks on the first frame (SNDTIMEO), once a pass: after a timeout the rest of the pass
  // goes out without waiting (a full peer drops it, counted), so that a stuck peer costs one send_timeout per
  // wake-up rather than one per batch or relay (hours, with thousands queued), and a stop waits for at most
  // one. Otherwise ZeroMQ drops at a full peer by itself.
  // relaxed: a flag polled for a prompt exit; it publishes nothing.
  const bool wait = config_.lossless && !send_stalled_ && !shared_.stop.load(std::memory_order_relaxed);
  const int first_flags = ZMQ_SNDMORE | (wait ? 0 : ZMQ_DONTWAIT);
  if (zmq_send(xpub_, frame.data(), frame.size(), first_flags) < 0) {
    if (wait) {
      send_stalled_ = true;
      spdlog::warn(
          "outbound: a peer took nothing for send_timeout_ms ({} ms); the rest of this pass is dropped",
          config_.send_timeout.count());
    }
    counters_.send_dropped.fetch_add(records, std::memory_order_relaxed);
    return false;
  }
  zmq_msg_send(batch.get(), xpub_, 0);
  return true;
}

void Outbound::encode_own_batch_header(std::span<std::byte, kBatchHeaderSize> out) const {
  encode_batch_header({.hops = 0, .flags = 0, .origin_id = config_.origin_id, .origin_epoch = epoch_}, out);
}

void Outbound::start_batch() {
  encode_own_batch_header(std::span(batch_).first<kBatchHeaderSize>());
  batch_used_ = kBatchHeaderSize;
  batch_records_ = 0;
  batch_payload_bytes_ = 0;
}

void Outbound::flush_batch(const Route& route) {
  if (batch_records_ == 0) return;
  ZmqMessage frame(batch_used_);
  if (!frame.ok()) [[unlikely]] {
    // Out of memory: the batch is lost, counted, and seen downstream as a gap in its sequence numbers.
    counters_.send_dropped.fetch_add(batch_records_, std::memory_order_relaxed);
    if (uint64_t held_back = 0; oom_log_.allow(LogThrottle::Clock::now(), &held_back)) {
      spdlog::error("no memory for a {}-byte frame: {} messages dropped ({} more such frames not logged)",
                    batch_used_, batch_records_, held_back);
    }
    start_batch();
    return;
  }
  std::memcpy(frame.bytes().data(), batch_.data(), batch_used_);
  // May block (lossless backpressure from the peers). The batch is a copy: the slots it was read from may
  // already be free (a flush after drain returned), so a lossless local publisher feels the backpressure up
  // to one batch later.
  if (send(route.frame, frame, batch_records_)) {
    // relaxed: statistics, read by the stats thread.
    counters_.messages_out.fetch_add(batch_records_, std::memory_order_relaxed);
    counters_.bytes_out.fetch_add(batch_payload_bytes_, std::memory_order_relaxed);
  }
  start_batch();
}

bool Outbound::encode_record(Route& route, const SampleView& m, uint64_t& sequence,
                             std::span<std::byte> out) {
  const std::size_t size = m.size();
  // Copy out first: on a lossy topic the publisher may overwrite the slot while we read it.
  std::memcpy(out.data() + kRecordHeaderSize, m.data(), size);
  // Losses so far, including a lap just before this message (drain counts it before handing this over).
  const uint64_t dropped = route.subscriber.dropped();
  // Read once: on a lossy topic the publisher may overwrite the slot between two reads, and a message
  // judged intact here but dropped below would vanish without a sequence number.
  const bool intact = m.still_valid();
  if (dropped != route.dropped_seen || !intact) {
    // Losses on our own subscriber become sequence gaps downstream: skip their numbers so they are seen.
    const uint64_t lost = dropped - route.dropped_seen + (intact ? 0 : 1);
    counters_.local_dropped.fetch_add(lost, std::memory_order_relaxed);
    sequence += lost;
    route.dropped_seen = dropped;
    if (!intact) return false;
  }
  // 0 on the wire: the publisher does not stamp (PublisherOptions::stamp_publish_time).
  const auto publish_time =
      m.has_publish_time() ? static_cast<uint64_t>(now_ns(m.publish_time()) + realtime_offset_ns_) : 0;
  encode_record_header(++sequence, publish_time, static_cast<uint32_t>(size), out.first<kRecordHeaderSize>());
  return true;
}

void Outbound::drain(Route& route) {
  uint64_t& sequence = next_sequence_[route.frame];  // once per call, not per message
  route.subscriber.drain(kMaxBatchRecords, [&](const SampleView& m) {
    if (own(m.publisher_id())) return;  // came from the network: the inbound side relays those
    const std::size_t record = kRecordHeaderSize + m.size();
    if (kBatchHeaderSize + record > kMaxBatchBytes) {
      // Too large to share a batch: sent at once, alone, from a frame of its own (one copy, not two).
      flush_batch(route);
      ZmqMessage frame(kBatchHeaderSize + record);
      if (!frame.ok()) [[unlikely]] {
        // Out of memory: lost, counted, and a gap in the sequence numbers downstream.
        ++sequence;
        counters_.send_dropped.fetch_add(1, std::memory_order_relaxed);
        if (uint64_t held_back = 0; oom_log_.allow(LogThrottle::Clock::now(), &held_back)) {
          spdlog::error(
              "no memory for a {}-byte frame: a message of {} dropped ({} more such frames not logged)",
              kBatchHeaderSize + record, route.frame, held_back);
        }
        return;
      }
      encode_own_batch_header(frame.bytes().first<kBatchHeaderSize>());
      if (encode_record(route, m, sequence, frame.bytes().subspan(kBatchHeaderSize)) &&
          send(route.frame, frame, 1)) {
        counters_.messages_out.fetch_add(1, std::memory_order_relaxed);
        counters_.bytes_out.fetch_add(m.size(), std::memory_order_relaxed);
      }
      return;
    }
    if (batch_used_ + record > kMaxBatchBytes) flush_batch(route);
    if (!encode_record(route, m, sequence, std::span(batch_).subspan(batch_used_, record))) return;
    batch_used_ += record;
    ++batch_records_;
    batch_payload_bytes_ += m.size();
  });
  flush_batch(route);
}

bool Outbound::send_relays() {
  shared_.relay.take_all(&relays_);
  for (auto& item : relays_) {
    if (send(item.topic_frame, item.batch, 1)) counters_.relayed_out.fetch_add(1, std::memory_order_relaxed);
  }
  const bool any = !relays_.empty();
  relays_.clear();
  return any;
}

void Outbound::run() {
  // Woken by local messages and by relays (RelayQueue notifies wait_set_); otherwise every kIdle, to read
  // peer subscriptions from the XPUB. Without local routes we sleep in zmq_poll on the XPUB instead, which a
  // relay does not wake; a relay is wanted only for a topic a peer subscribes to, which has a route unless
  // opening it failed: then poll every millisecond.
  constexpr auto kIdle = 20ms;
  shared_.relay.set_waiter(&wait_set_);
  auto next_check = Clock::now();
  IdleSpin spin(config_.idle_spin);
  spin.extend();
  start_batch();
  realtime_offset_ns_ = now_ns(std::chrono::system_clock::now()) - now_ns(next_check);
  while (!shared_.stop.load(std::memory_order_relaxed)) {
    send_stalled_ = false;  // a new pass may wait for a full peer again
    ensure_bus();
    handle_subscriptions();
    retry_routes();
    const bool relayed = send_relays();
    if (routes_.empty()) {
      zmq_pollitem_t item{xpub_, 0, ZMQ_POLLIN, 0};
      const auto poll_idle = (config_.relay && !wanted_.empty()) ? 1ms : kIdle;
      zmq_poll(&item, 1, static_cast<long>(poll_idle.count()));
      continue;
    }
    // idle_spin: until that long after the last message, poll (the pass above included, for relays and
    // subscriptions) instead of sleeping, and yield between polls so that the threads we feed can run.
    const bool spinning = spin.active();
    const auto ready = wait_set_.wait(spinning ? 0ns : kIdle);
    for (Subscriber* s : ready) {
      for (auto& [wire, route] : routes_) {
        if (&route->subscriber == s) drain(*route);
      }
    }
    if (relayed || !ready.empty()) {
      spin.extend();
    } else if (spinning) {
      IdleSpin::yield();
    }
    if (const auto now = Clock::now(); now >= next_check) {
      next_check = now + 100ms;
      // Publish times go out on the system clock: follow its steps (NTP) ten times a second, not on every
      // wake-up (two clock reads each, a measurable share of this thread at a million messages a second).
      realtime_offset_ns_ = now_ns(std::chrono::system_clock::now()) - now_ns(Clock::now());
      // A daemon stopped by SIGTERM closes its topics; one killed outright is noticed by the inbound side.
      for (auto& [wire, route] : routes_) {
        if (route->subscriber.closed()) {
          shared_.daemon_losses.fetch_add(1, std::memory_order_relaxed);
          break;
        }
      }
    }
  }
  shared_.relay.set_waiter(nullptr);
  close_all_routes();
  bus_.reset();
}

}  // namespace shmbus::bridge

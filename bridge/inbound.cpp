#include "bridge/inbound.h"

#include <spdlog/spdlog.h>
#include <unistd.h>
#include <zmq.h>

#include <algorithm>
#include <cassert>
#include <cstring>

#include "bridge/local_discovery.h"
#include "bridge/stats_document.h"
#include "bridge/wire_format.h"

namespace shmbus::bridge {
namespace {

using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

// Received before looking at the stop flag, timers and monitors again: ZeroMQ messages, and the messages
// they carry (a lossless local topic that stays full makes each publish wait up to full_timeout).
constexpr int kBatch = 1024;
constexpr std::size_t kRecordsPerRound = 4096;
constexpr std::size_t kPublishBatch = 256;  // messages for one topic published with one release

void add(std::atomic<uint64_t>& counter, uint64_t n = 1) {
  counter.fetch_add(n, std::memory_order_relaxed);
}

std::vector<std::string> peer_endpoints_of(const BridgeConfig& config) {
  std::vector<std::string> endpoints;
  for (const Peer& peer : config.peers) endpoints.push_back(peer.endpoint);
  return endpoints;
}

}  // namespace

Inbound::Inbound(const BridgeConfig& config, const TopicMapper& mapper, InboundSockets sockets,
                 uint64_t epoch, LinkMonitor links, Shared& shared)
    : config_(config),
      mapper_(mapper),
      sockets_(sockets),
      epoch_(epoch),
      links_(std::move(links)),
      peer_endpoints_(peer_endpoints_of(config)),
      shared_(shared),
      counters_(shared.counters),
      started_(Clock::now()),
      spin_(config.idle_spin) {}

Inbound::Route& Inbound::route_of(std::string_view wire) {
  if (auto it = routes_.find(wire); it != routes_.end()) return it->second;
  if (routes_.size() >= kMaxRoutes) {
    // Topic frames come from peers: a flood of distinct ones must not grow this cache without end. Unselected
    // routes go first (they only count drops); if that is not enough, all (they are rebuilt on demand).
    std::erase_if(routes_, [](const auto& r) { return !r.second.selected; });
    if (routes_.size() >= kMaxRoutes / 2) routes_.clear();
    last_topic_frame_.clear();  // last_route_ may point at an erased route: the next message looks again
    last_route_ = nullptr;
  }
  Route r;
  if (auto m = mapper_.wire_to_local(wire, Direction::kIn)) {
    r.selected = true;
    r.local = m->name;
    r.rule = m->rule;
    if (config_.relay) {
      if (auto out = mapper_.local_to_wire(r.local, Direction::kOut)) {
        r.relay_frame = topic_frame(out->name);
        r.relay_topic = out->name;
      }
    }
  }
  r.subscribed = subscribed_.find(wire) != subscribed_.end();
  return routes_.emplace(std::string(wire), std::move(r)).first->second;
}

int Inbound::receive_one() {
  ZmqMessage topic, batch;
  if (zmq_msg_recv(topic.get(), sockets_.xsub, ZMQ_DONTWAIT) < 0) return -1;
  // Exactly two frames; anything else is drained whole and counted, never half-read into the next message.
  int frames = 1;
  bool more = topic.more();
  if (more) {
    zmq_msg_recv(batch.get(), sockets_.xsub, 0), ++frames, more = batch.more();
  }
  while (more) {
    ZmqMessage extra;
    zmq_msg_recv(extra.get(), sockets_.xsub, 0), ++frames, more = extra.more();
  }
  const std::span<const std::byte> topic_bytes = topic.bytes();
  // The same frame as the last message's: already validated, its route known.
  const bool same_topic = last_route_ != nullptr && topic_bytes.size() == last_topic_frame_.size() &&
                          std::memcmp(topic_bytes.data(), last_topic_frame_.data(), topic_bytes.size()) == 0;
  const auto wire = same_topic
                        ? std::optional<std::string_view>(
                              std::string_view(last_topic_frame_).substr(0, last_topic_frame_.size() - 1))
                        : parse_topic_frame(topic_bytes);
  if (frames < 2 || !wire) {
    add(counters_.malformed);
    return 0;
  }
  // The version first: a peer of another version (version 1 sent three frames) is told apart from garbage.
  BatchHeader h;
  switch (decode_batch(batch.bytes(), &h, &records_)) {
    case BatchError::kNone:
      break;
    case BatchError::kUnknownVersion:
      add(counters_.unknown_version);
      return 0;
    case BatchError::kMalformed:
      add(counters_.malformed);
      return 0;
  }
  if (frames != 2) {
    add(counters_.malformed);
    return 0;
  }
  const uint64_t n = records_.size();
  if (h.origin_id == config_.origin_id) {  // our own messages came back round a loop
    add(counters_.own_origin, n);
    return 0;
  }
  if (h.hops >= config_.max_hops) {
    add(counters_.hop_limit, n);
    return 0;
  }
  if (!same_topic) {
    last_route_ = &route_of(*wire);
    last_topic_frame_.assign(reinterpret_cast<const char*>(topic_bytes.data()), topic_bytes.size());
  }
  Route& route = *last_route_;
  if (!route.selected) {
    add(counters_.unselected, n);
    return 0;
  }
  // XPUB filters by our subscriptions, so this is a peer that ignores them, or what was in flight when the
  // last local subscriber left: published, it would open a local publisher (and a topic in the daemon) that
  // the next discovery closes again.
  if (!route.subscribed && !relayed(route)) {
    add(counters_.unsubscribed, n);
    return 0;
  }
  deliver(route, h, records_, std::move(batch));
  return static_cast<int>(records_.size());
}

bool Inbound::relayed(Route& route) {
  if (route.relay_frame && route.interest_version != shared_.remote_interest.version()) {
    route.interest_version = shared_.remote_interest.version();
    route.relay_wanted = shared_.remote_interest.wanted(route.relay_topic);
  }
  return route.relay_frame && route.relay_wanted;
}

void Inbound::deliver(Route& route, const BatchHeader& header, const std::vector<WireRecord>& records,
                      ZmqMessage&& frame) {
  const bool relay = relayed(route);
  Publisher* p = publisher_for(route);
  const std::byte* base = frame.bytes().data();
  // One stream lookup a batch: its records share origin, epoch and topic.
  SequenceTracker::TopicState* stream = tracker_.stream(header.origin_id, header.origin_epoch, route.local);
  if (stream == nullptr) {
    add(counters_.stale_epoch, records.size());
    return;
  }
  bool pending = false;
  bool stalled = false;  // a relayed record's publish timed out: the rest of the batch does not wait again
  for (const WireRecord& r : records) {
    const auto outcome = SequenceTracker::observe(*stream, r.sequence);
    if (outcome.verdict == SequenceTracker::Verdict::kDuplicate) {
      add(counters_.duplicates);
      continue;
    }
    if (outcome.missing) add(counters_.gaps, outcome.missing);
    if (outcome.verdict == SequenceTracker::Verdict::kLate) {
      add(counters_.late);
      if (outcome.filled_gap) add(counters_.gaps_filled);
    }
    add(counters_.messages_in);
    add(counters_.bytes_in, r.payload.size());
    if (p == nullptr) {
      add(counters_.publish_failed);
    } else if (r.payload.size() > p->max_message_size()) {
      add(counters_.too_large);
    } else if (relay) {
      // The message goes on to the relay queue too: publish it now, in order after what is pending. A full
      // lossless topic is waited for once a batch (full_timeout), as publish_batch does on the other path:
      // not once a record, which held this thread (and a stop) for up to 256 timeouts.
      flush_pending();
      if (stalled) {
        add(counters_.publish_failed);
      } else {
        stalled = !publish_now(*p, r.payload);
      }
    } else {
      if (pending_.publisher != p) flush_pending();
      pending_.publisher = p;
      // Offsets, not spans: the frame is moved into pending_ after this loop (its bytes stay where they are:
      // a batch frame, 44 bytes at least, is never one of the small messages ZeroMQ keeps inside the
      // zmq_msg_t; offsets would survive that too). No flush can come between: route and publisher are the
      // same for every record of the frame, so only the first pending record may flush what came before.
      pending_.records.push_back(
          {pending_.frames.size(), static_cast<std::size_t>(r.payload.data() - base), r.payload.size()});
      pending = true;
      continue;
    }
    if (relay) {
      const BatchHeader relayed{.hops = static_cast<uint8_t>(header.hops + 1),
                                .flags = static_cast<uint16_t>(header.flags | kFlagRelayed),
                                .origin_id = header.origin_id,
                                .origin_epoch = header.origin_epoch};
      ZmqMessage batch(batch_size(std::span(&r, 1)));
      if (!batch.ok()) {  // out of memory: not relayed, counted
        add(counters_.relay_dropped);
        continue;
      }
      encode_batch(relayed, std::span(&r, 1), batch.bytes());
      if (!shared_.relay.push({*route.relay_frame, std::move(batch)})) add(counters_.relay_dropped);
    }
  }
  if (!pending) return;
  pending_.frames.push_back(std::move(frame));
  if (pending_.records.size() >= kPublishBatch) flush_pending();
}

bool Inbound::publish_now(Publisher& p, std::span<const std::byte> bytes) {
  const uint64_t id = p.id();
  const Status s = p.publish(bytes);
  // A publisher whose daemon restarted without its topic re-opens itself, under a new id: the outbound side
  // must keep recognising our own publishers (discover() then notices the restart and starts afresh).
  if (p.id() != id) update_own_publishers();
  if (s.code() == Errc::kMessageTooLarge) {
    add(counters_.too_large);
  } else if (!s.ok()) {
    add(counters_.publish_failed);
  }
  return s.code() != Errc::kTimeout;
}

void Inbound::flush_pending() {
  if (pending_.publisher == nullptr || pending_.records.empty()) {
    pending_.frames.clear();
    return;
  }
  Publisher& p = *pending_.publisher;
  pending_.spans.clear();
  for (const auto& r : pending_.records) {
    // deliver() pushes a frame after the records it holds, and flushes only before the first of them.
    assert(r.frame < pending_.frames.size());
    pending_.spans.push_back(pending_.frames[r.frame].bytes().subspan(r.offset, r.size));
  }
  const uint64_t id = p.id();
  auto published = p.publish_batch(pending_.spans);
  if (p.id() != id) update_own_publishers();
  // Sizes were checked on arrival, so an error or a short count means a lossless topic stayed full for
  // full_timeout (or the daemon is gone): what was not published is counted, as a single publish would be.
  const std::size_t done = published.ok() ? *published : 0;
  add(counters_.publish_failed, pending_.records.size() - done);
  pending_.records.clear();
  pending_.frames.clear();
  pending_.publisher = nullptr;
}

Publisher* Inbound::publisher_for(const Route& route) {
  if (auto it = publishers_.find(route.local); it != publishers_.end()) return &it->second;
  if (!bus_) return nullptr;
  if (auto retry = publisher_retry_.find(route.local);
      retry != publisher_retry_.end() && Clock::now() < retry->second) {
    return nullptr;
  }
  PublisherOptions o;
  o.topic = route.rule->topic;
  o.full_timeout = config_.full_timeout;
  auto p = bus_->publisher(route.local, o);
  if (!p) {
    spdlog::warn("inbound: cannot publish on local topic {}: {} (retrying in 1 s)", route.local,
                 p.status().to_string());
    publisher_retry_[route.local] = Clock::now() + 1s;
    if (p.status().code() == Errc::kDaemonUnavailable) lose_bus(p.status());
    return nullptr;
  }
  auto& stored = publishers_.emplace(route.local, std::move(p).value()).first->second;
  update_own_publishers();
  return &stored;
}

void Inbound::update_own_publishers() {
  constexpr std::size_t kMaxRetired = 256;
  const auto now = Clock::now();
  std::vector<uint64_t> ids;
  for (const auto& [topic, p] : publishers_) ids.push_back(p.id());
  auto retired = [&](uint64_t id) {
    return std::any_of(retired_ids_.begin(), retired_ids_.end(),
                       [&](const auto& r) { return r.first == id; });
  };
  for (uint64_t old : announced_ids_) {
    if (std::find(ids.begin(), ids.end(), old) == ids.end() && !retired(old))
      retired_ids_.emplace_back(old, now);
  }
  std::erase_if(retired_ids_, [&](const auto& r) { return now - r.second > kRetiredFor; });
  if (retired_ids_.size() > kMaxRetired) {
    retired_ids_.erase(retired_ids_.begin(), retired_ids_.end() - static_cast<std::ptrdiff_t>(kMaxRetired));
  }
  announced_ids_ = ids;
  for (const auto& r : retired_ids_) announced_ids_.push_back(r.first);
  shared_.own_publishers.set(announced_ids_);
}

void Inbound::lose_bus(const Status& why) {
  if (!bus_) return;
  spdlog::warn("inbound: lost the local daemon ({}); reconnecting", why.to_string());
  add(counters_.publish_failed, pending_.records.size());  // their publisher goes with the daemon
  pending_.records.clear();
  pending_.frames.clear();
  pending_.publisher = nullptr;
  publishers_.clear();
  publisher_retry_.clear();
  retired_ids_.clear();  // the next daemon numbers its publishers afresh
  announced_ids_.clear();
  update_own_publishers();
  stats_publisher_.reset();
  bus_.reset();
  daemon_pid_ = 0;
  shared_.daemon_losses.fetch_add(1, std::memory_order_relaxed);
}

bool Inbound::ensure_bus() {
  if (bus_) return true;
  if (Clock::now() < next_connect_) return false;
  next_connect_ = Clock::now() + 200ms;
  BusOptions o{.instance = config_.instance,
               .runtime_dir = config_.runtime_dir,
               .name = "shmbus-bridge:" + config_.name + "/in"};
  auto bus = Bus::connect(o);
  if (!bus) return false;
  bus_.emplace(std::move(bus).value());
  spdlog::info("connected to shmbus instance {}", bus_->instance());
  return true;
}

void Inbound::discover() {
  flush_pending();  // discovery may close publishers
  if (!ensure_bus()) return;
  auto doc = bus_->daemon_statistics();
  if (!doc) {
    lose_bus(doc.status());
    return;
  }
  int64_t daemon_pid = 0;
  auto topics = topics_with_foreign_subscribers(doc.value(), getpid(), &daemon_pid);
  if (!topics) {
    spdlog::warn("inbound: {}", topics.status().to_string());
    return;
  }
  // The Bus reconnects to a restarted daemon by itself, and the statistics call may be what did it: endpoints
  // the new daemon could not hand back re-open themselves, but the outbound side's subscriptions and our own
  // publisher ids are best started afresh, as after a daemon we found gone.
  if (daemon_pid_ != 0 && daemon_pid != 0 && daemon_pid != daemon_pid_) {
    lose_bus({Errc::kDaemonUnavailable, "the daemon restarted (pid " + std::to_string(daemon_pid_) +
                                            ", now " + std::to_string(daemon_pid) + ")"});
    return;
  }
  daemon_pid_ = daemon_pid;
  std::set<std::string> wanted;
  std::set<std::string> wanted_local;
  for (const auto& local : topics.value()) {
    const auto m = mapper_.local_to_wire(local, Direction::kIn);
    if (!m) continue;
    // First match wins both ways: a wire topic's messages go to the local topic wire_to_local names. A local
    // topic whose wire topic an earlier rule sends elsewhere can receive nothing: subscribing upstream for it
    // would only feed that other topic (and open and close a publisher there at every discovery).
    const auto back = mapper_.wire_to_local(m->name, Direction::kIn);
    if (!back || back->name != local) {
      if (shadowed_.size() < kMaxRoutes && shadowed_.insert(local).second) {
        spdlog::warn(
            "inbound: local topic {} can receive nothing from peers: its wire topic {} arrives as {}", local,
            m->name, back ? back->name : std::string("(no in rule)"));
      }
      continue;
    }
    wanted.insert(m->name);
    wanted_local.insert(local);
  }
  for (const auto& wire : wanted) {
    Route& route = route_of(wire);
    route.subscribed = true;
    if (subscribed_.insert(wire).second) {
      const std::string frame = subscription_frame(wire, true);
      zmq_send(sockets_.xsub, frame.data(), frame.size(), 0);
      spdlog::info("inbound: subscribing to {} for local subscribers", wire);
    }
    // Open the local publisher now, not on the first message: that one would otherwise wait for a control
    // round trip to the daemon and the topic's reshaping.
    if (route.selected) publisher_for(route);
  }
  for (auto it = subscribed_.begin(); it != subscribed_.end();) {
    if (wanted.count(*it)) {
      ++it;
      continue;
    }
    const std::string frame = subscription_frame(*it, false);
    zmq_send(sockets_.xsub, frame.data(), frame.size(), 0);
    spdlog::info("inbound: unsubscribing from {}: no local subscriber left", *it);
    if (auto r = routes_.find(*it); r != routes_.end()) r->second.subscribed = false;
    it = subscribed_.erase(it);
  }
  // Retired ids expire (update_own_publishers drops them kRetiredFor after they were let go).
  if (!retired_ids_.empty() && Clock::now() - retired_ids_.front().second > kRetiredFor)
    update_own_publishers();
  // A publisher of ours keeps its topic alive in the daemon: let go once nobody here listens.
  bool changed = false;
  for (auto it = publishers_.begin(); it != publishers_.end();) {
    if (wanted_local.count(it->first)) {
      ++it;
    } else {
      it = publishers_.erase(it), changed = true;
    }
  }
  if (changed) update_own_publishers();
}

void Inbound::publish_stats() {
  if (!bus_) return;
  const std::string doc = render_stats_document(
      {config_, epoch_,
       static_cast<uint64_t>(
           std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - started_).count()),
       counters_, links_, tracker_, subscribed_.size(), publishers_.size(), true});
  if (!stats_publisher_) {  // opened lazily: after a daemon restart the old one went with its Bus
    // Depth 4 with history 1: a reader that subscribes with history gets the latest document at once.
    PublisherOptions o;
    o.topic = TopicSettings{.max_message_size = kStatsMaxSize,
                            .depth = 4,
                            .policy = Policy::kLossy,
                            .history = 1,
                            .max_publishers = 2};
    auto p = bus_->publisher(stats_topic(config_.name), o);
    if (!p && p.status().code() == Errc::kIncompatibleSettings)
      p = bus_->publisher(stats_topic(config_.name));
    if (!p) {
      spdlog::warn("cannot publish statistics: {}", p.status().to_string());
      return;
    }
    stats_publisher_.emplace(std::move(p).value());
  }
  if (doc.size() > stats_publisher_->max_message_size()) {
    spdlog::warn("statistics document of {} bytes exceeds its topic's {}: not published", doc.size(),
                 stats_publisher_->max_message_size());
    return;
  }
  (void)stats_publisher_->publish(std::as_bytes(std::span(doc.data(), doc.size())));
}

void Inbound::drain_monitor(void* monitor, bool listening) {
  while (auto e = read_monitor_event(monitor)) {
    if (!listening) e->address = peer_endpoints_.configured_endpoint(e->address);
    const bool failed = e->event == ZMQ_EVENT_HANDSHAKE_FAILED_AUTH ||
                        e->event == ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL ||
                        e->event == ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL;
    if (!listening) {
      if (failed) {
        redial_.emplace(e->address, Clock::now() + 1s);  // after every failure, not the first
      } else if (e->event == ZMQ_EVENT_DISCONNECTED) {
        // libzmq retries a lost connection by itself (CONNECT_RETRIED follows at once), but not one it closed
        // for a protocol error: a frame over max_frame_bytes, garbage from the peer. Dialled again unless a
        // retry or a new connection shows up first (CONNECT_RETRIED comes within milliseconds; for a peer
        // given by host name it names the resolved address, which peer_endpoints_ maps back).
        redial_.emplace(e->address, Clock::now() + 500ms);
      } else if (e->event == ZMQ_EVENT_CONNECT_RETRIED || e->event == ZMQ_EVENT_CONNECT_DELAYED ||
                 e->event == ZMQ_EVENT_CONNECTED) {
        redial_.erase(e->address);
      }
    }
    const std::string change = links_.apply(*e, listening);
    if (change.empty()) continue;
    if (failed) {
      spdlog::warn("{}", change);
    } else {
      spdlog::info("{}", change);
    }
  }
}

void Inbound::redial_dropped_peers() {
  for (auto it = redial_.begin(); it != redial_.end();) {
    if (Clock::now() < it->second) {
      ++it;
      continue;
    }
    for (const Peer& peer : config_.peers) {
      if (peer.endpoint != it->first) continue;
      // Back by itself (a retry whose event named the peer otherwise, say by its resolved address): leave it.
      const auto link = links_.peers().find(peer.endpoint);
      if (link != links_.peers().end() && link->second.state == "connected") continue;
      zmq_disconnect(sockets_.xsub, peer.endpoint.c_str());
      if (config_.curve) {
        zmq_setsockopt(sockets_.xsub, ZMQ_CURVE_PUBLICKEY, config_.public_key.c_str(), 41);
        zmq_setsockopt(sockets_.xsub, ZMQ_CURVE_SECRETKEY, config_.secret_key.c_str(), 41);
        zmq_setsockopt(sockets_.xsub, ZMQ_CURVE_SERVERKEY, peer.server_key.c_str(), 41);
      }
      if (zmq_connect(sockets_.xsub, peer.endpoint.c_str()) != 0) {
        spdlog::warn("cannot dial {} again: {}", peer.endpoint, zmq_strerror(zmq_errno()));
      }
    }
    it = redial_.erase(it);
  }
}

int Inbound::poll(std::span<zmq_pollitem_t> items, std::chrono::milliseconds timeout) {
  const int n = static_cast<int>(items.size());
  // Messages from peers (items[0], the XSUB) extend the spin; link events (a peer's retries) do not.
  auto ready = [&](int count) {
    if (count > 0 && (items[0].revents & ZMQ_POLLIN) != 0) spin_.extend();
    return count;
  };
  const auto deadline = Clock::now() + timeout;
  if (spin_.enabled()) {
    // Each zmq_poll(0) reads the sockets' mailboxes (a poll(2) when one is empty): a spin of system calls,
    // ~1 us each here, short next to the wake-up it saves. Yielding between polls lets the threads we wait
    // for (ZeroMQ's I/O thread, the subscribers we publish to) run at once on a busy machine. relaxed: stop
    // is a flag, as in run().
    const auto until = spin_.until(deadline);
    while (!shared_.stop.load(std::memory_order_relaxed) && Clock::now() < until) {
      if (const int count = zmq_poll(items.data(), n, 0); count != 0) return ready(count);
      IdleSpin::yield();
    }
  }
  // What is left of the timeout after the spin (rounded up: see run()).
  const auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - Clock::now());
  if (left.count() <= 0 || shared_.stop.load(std::memory_order_relaxed)) {
    for (auto& item : items) item.revents = 0;  // nothing seen: not the previous round's events
    return 0;
  }
  return ready(zmq_poll(items.data(), n, static_cast<long>(left.count())));
}

void Inbound::run() {
  auto next_discovery = Clock::now();
  auto next_stats = Clock::now() + 200ms;
  zmq_pollitem_t items[] = {{sockets_.xsub, 0, ZMQ_POLLIN, 0},
                            {sockets_.xsub_monitor, 0, ZMQ_POLLIN, 0},
                            {sockets_.xpub_monitor, 0, ZMQ_POLLIN, 0}};
  while (!shared_.stop.load(std::memory_order_relaxed)) {
    const auto now = Clock::now();
    if (now >= next_discovery) {
      discover();
      next_discovery = now + config_.discovery_interval;
    }
    redial_dropped_peers();
    if (now >= next_stats) {
      publish_stats();
      next_stats = now + config_.stats_interval;
    }
    // Rounded up: rounded down, the last millisecond before each deadline was a busy loop of zero-timeout
    // polls (51 poll calls per message measured at one message per 10 ms).
    const auto wait =
        std::chrono::ceil<std::chrono::milliseconds>(std::min(next_discovery, next_stats) - Clock::now());
    if (poll(items, std::clamp(wait, 0ms, 100ms)) < 0) continue;
    std::size_t records = 0;
    for (int i = 0; i < kBatch && records < kRecordsPerRound && !shared_.stop.load(std::memory_order_relaxed);
         ++i) {
      const int n = receive_one();
      if (n < 0) break;
      records += static_cast<std::size_t>(n);
    }
    flush_pending();
    if (items[1].revents & ZMQ_POLLIN) drain_monitor(sockets_.xsub_monitor, false);
    if (items[2].revents & ZMQ_POLLIN) drain_monitor(sockets_.xpub_monitor, true);
  }
  flush_pending();
  publish_stats();  // the final figures, for whoever reads them after we are gone
  publishers_.clear();
  stats_publisher_.reset();
  bus_.reset();
}

}  // namespace shmbus::bridge

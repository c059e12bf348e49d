#include "daemon/topic_registry.h"

#include <signal.h>
#include <spdlog/spdlog.h>
#include <toml++/toml.h>
#include <unistd.h>
#include <algorithm>
#include <bit>
#include <cstddef>
#include <cstring>
#include <utility>

#include <cerrno>

#include "bus/control_protocol.h"
#include "bus/runtime_paths.h"
#include "daemon/queueing_metrics.h"
#include "shm/futex.h"
#include "shmbus/topic_name.h"
#include "shmbus/topic_pattern.h"

namespace shmbus::daemon {

using detail::kRolePublisher;
using detail::kRoleSubscriber;
using Clock = std::chrono::steady_clock;
constexpr uint64_t kDefaultRingBytes = 4u << 20;
constexpr uint64_t kOrphan = ~0ull;  // owner of an endpoint adopted after a daemon restart, not yet reclaimed

namespace {

uint64_t steady_ns() {
  return static_cast<uint64_t>(
      std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now().time_since_epoch()).count());
}

}  // namespace

// A pid read from shared memory is only a number: reject 0 and anything kill() would read as a group.
bool process_alive(uint32_t pid) {
  return pid > 0 && pid < (1u << 22) && (kill(static_cast<pid_t>(pid), 0) == 0 || errno == EPERM);
}

struct TopicRegistry::Topic {
  uint32_t id = 0;
  std::string name;
  TopicSettings settings;  // all fields set
  TopicSettings fixed;     // the fields a config rule fixed (requests must agree with them)
  shm::Segment segment;
  shm::TopicGeometry geometry;
  std::vector<uint64_t> publisher_owner;  // peer id per ring, 0 = none
  std::vector<uint64_t> publisher_id;     // endpoint id per ring
  std::vector<Clock::time_point> dead_since;
  std::vector<uint64_t> subscriber_owner;  // peer id per subscriber slot, 0 = none
  std::vector<uint64_t> subscriber_id;
  bool had_publisher = false;  // settings are fixed once a publisher attached
  bool reshaped = false;       // replaced by a new segment; lives on until its subscribers re-open
  std::multimap<uint64_t, uint32_t> moved_in;  // peer -> subscriber slot reserved for it by a reshape
  std::vector<uint64_t> last_head;             // per ring, to catch a head that runs backwards
  uint64_t retired_messages = 0;               // messages of rings already reclaimed
  uint64_t retired_bytes = 0;
  uint64_t retired_drops = 0;  // drops of subscribers already gone
  uint64_t last_messages = 0;  // for the rate
  Clock::time_point last_tick = Clock::now();
  double rate_hz = 0;
  std::vector<SubscriberWindow> windows;  // queueing metrics per subscriber slot
  PublishedWindow published;
  uint64_t last_sample_ns = 0;

  std::byte* base() const { return segment.data(); }
  shm::TopicHeader* header() const { return shm::topic_header(segment.data()); }
  shm::PublisherSlot* ring(uint32_t p) const { return shm::publisher_slot(base(), geometry, p); }
  shm::Cursor* cursor(uint32_t p, uint32_t s) const { return shm::cursor(base(), geometry, p, s); }
  shm::SubscriberSlot* subscriber(uint32_t s) const { return shm::subscriber_slot(base(), geometry, s); }
  bool used() const {
    auto busy = [](uint64_t owner) { return owner != 0; };
    bool dead = false;
    for (uint32_t p = 0; p < geometry.max_publishers; ++p) {
      dead |= ring(p)->state.load(std::memory_order_relaxed) == shm::kSlotDead;
    }
    return dead || !moved_in.empty() || std::any_of(publisher_owner.begin(), publisher_owner.end(), busy) ||
           std::any_of(subscriber_owner.begin(), subscriber_owner.end(), busy);
  }
  uint64_t messages() const {
    uint64_t total = retired_messages;
    for (uint32_t p = 0; p < geometry.max_publishers; ++p) {
      if (ring(p)->state.load(std::memory_order_relaxed) != shm::kSlotFree) {
        total += messages_of(p);
      }
    }
    return total;
  }
  // Messages ring p committed: its head counts slots, and a packed slot holds several.
  uint64_t messages_of(uint32_t p) const { return shm::messages_committed(*ring(p)); }
  // Messages of ring p from the slot at `position` (< head) on: its first message's sequence says how many
  // came before, if the slot still holds that position; else the slots, each at least one message.
  uint64_t messages_from(uint32_t p, uint64_t position, uint64_t head, uint64_t messages) const {
    if (position >= head) return 0;
    const shm::SlotHeader* slot = shm::ring_slot(shm::ring_base(base(), geometry, p), geometry, position);
    // acquire: pairs with the writer's commit; first_message was written before it.
    if (slot->sequence.load(std::memory_order_acquire) == position + 1) {
      const uint64_t before = slot->first_message - 1;
      // acquire fence, then the sequence again: a lossy writer did not rewrite the slot meanwhile (seqlock).
      std::atomic_thread_fence(std::memory_order_acquire);
      // At least a message a slot: a lossless writer rewriting the slot (no busy mark) may have written a
      // later first_message before its commit.
      if (slot->sequence.load(std::memory_order_relaxed) == position + 1 && before <= messages)
        return std::max(messages - before, head - position);
    }
    return head - position;
  }
  // The slowest active reader position of ring p (its head when no reader is active).
  uint64_t slowest(uint32_t p) const {
    const uint64_t head = ring(p)->head.load(std::memory_order_acquire);
    const uint32_t generation = ring(p)->generation.load(std::memory_order_relaxed) & 0xffff;
    uint64_t slowest = head;
    for (uint32_t s = 0; s < geometry.max_subscribers; ++s) {
      const uint64_t v = cursor(p, s)->value.load(std::memory_order_acquire);
      if (v == shm::kCursorInactive) continue;
      slowest =
          std::min(slowest, (v >> shm::kGenerationShift) == generation ? shm::cursor_position(v, head) : 0);
    }
    return slowest;
  }
  void wake_writers() {
    for (uint32_t p = 0; p < geometry.max_publishers; ++p) {
      ring(p)->writer_waiting.store(0, std::memory_order_relaxed);
      shm::futex_wake(&ring(p)->writer_waiting);
    }
  }
};

namespace {

std::string describe(const TopicSettings& s) {
  std::string out;
  auto add = [&](const char* key, const auto& v) {
    if (!v) return;
    if (!out.empty()) out += ", ";
    out += key;
    out += '=';
    if constexpr (std::is_same_v<std::decay_t<decltype(*v)>, Policy>) {
      out += *v == Policy::kLossless ? "lossless" : "lossy";
    } else {
      out += std::to_string(*v);
    }
  };
  add("max_message_size", s.max_message_size);
  add("depth", s.depth);
  add("policy", s.policy);
  add("history", s.history);
  add("max_publishers", s.max_publishers);
  add("max_subscribers", s.max_subscribers);
  return out;
}

// A requested field conflicts with an established one if it is set and differs (max_message_size: if larger).
bool compatible(const TopicSettings& requested, const TopicSettings& topic) {
  auto same = [](const auto& r, const auto& t) { return !r || !t || *r == *t; };
  return (!requested.max_message_size || !topic.max_message_size ||
          *requested.max_message_size <= *topic.max_message_size) &&
         same(requested.depth, topic.depth) && same(requested.policy, topic.policy) &&
         same(requested.history, topic.history) && same(requested.max_publishers, topic.max_publishers) &&
         same(requested.max_subscribers, topic.max_subscribers);
}

TopicSettings overlay(TopicSettings base, const TopicSettings& top) {
  if (top.max_message_size) base.max_message_size = top.max_message_size;
  if (top.depth) base.depth = top.depth;
  if (top.policy) base.policy = top.policy;
  if (top.history) base.history = top.history;
  if (top.max_publishers) base.max_publishers = top.max_publishers;
  if (top.max_subscribers) base.max_subscribers = top.max_subscribers;
  return base;
}

}  // namespace

TopicRegistry::TopicRegistry(std::string instance, const DaemonConfig& config)
    : instance_(std::move(instance)), config_(config) {}

TopicRegistry::~TopicRegistry() {
  shutdown();
}

Result<TopicRegistry::Topic*> TopicRegistry::find_or_create(const std::string& name,
                                                            const TopicSettings& requested,
                                                            bool for_publisher) {
  if (auto it = by_name_.find(name); it != by_name_.end()) {
    Topic* t = topics_.at(it->second).get();
    if (!compatible(requested, t->settings) && for_publisher && !t->had_publisher &&
        compatible(requested, t->fixed)) {
      // Subscribers created this topic with default settings; the first publisher may reshape it. The old
      // segment is announced as reshaped; its subscribers (which can hold no message yet) re-open the topic.
      // Settings that cannot make a topic are refused first, leaving the working one alone.
      auto planned = plan_topic(name, requested);
      if (!planned) return planned.status();
      spdlog::info("topic {} reshaped by its first publisher: {} -> {}", name, describe(t->settings),
                   describe(requested));
      t->reshaped = true;
      by_name_.erase(it);
      t->header()->closed.store(shm::kTopicReshaped, std::memory_order_release);
      t->header()->publishers_epoch.fetch_add(1, std::memory_order_release);
      shm::bump_wake_word(t->header());
      shm::futex_wake(&t->header()->wake_word);
      shm::Segment::remove(t->segment.name());
      // Not counted against max_topics: it replaces one (which lingers until its subscribers re-open).
      auto reshaped = create_topic(name, planned.value());
      if (!reshaped) return reshaped;
      // Reserve each subscriber's place in the new segment now, so that it misses nothing the publisher sends
      // before it re-opens the topic.
      for (uint32_t s = 0; s < t->geometry.max_subscribers; ++s) {
        if (t->subscriber_owner[s] == 0) continue;
        const shm::SubscriberSlot* old_slot = t->subscriber(s);
        auto added = add_subscriber(*reshaped.value(), t->subscriber_owner[s],
                                    static_cast<pid_t>(old_slot->pid), old_slot->uid, 0);
        if (added) reshaped.value()->moved_in.emplace(t->subscriber_owner[s], added.value());
      }
      return reshaped;
    }
    if (!compatible(requested, t->settings)) {
      return Status{Errc::kIncompatibleSettings, "topic " + name + " exists with " + describe(t->settings) +
                                                     "; requested " + describe(requested)};
    }
    return t;
  }
  if (topics_.size() >= config_.max_topics) {
    return Status{Errc::kExhausted, "the daemon serves its maximum of " + std::to_string(config_.max_topics) +
                                        " topics (max_topics)"};
  }
  auto planned = plan_topic(name, requested);
  if (!planned) return planned.status();
  return create_topic(name, planned.value());
}

Result<TopicRegistry::PlannedTopic> TopicRegistry::plan_topic(const std::string& name,
                                                              const TopicSettings& requested) const {
  TopicSettings fixed;
  for (const TopicRule& rule : config_.topics) {
    if (topic_matches(rule.pattern, name)) {
      fixed = rule.settings;
      break;
    }
  }
  if (!compatible(requested, fixed)) {
    return Status{Errc::kIncompatibleSettings, "topic " + name + " is configured with " + describe(fixed) +
                                                   "; requested " + describe(requested)};
  }
  TopicSettings s = overlay(overlay(config_.defaults, requested), fixed);
  if (!requested.depth && !fixed.depth) {
    // Large messages with the default depth would reserve a lot of memory: when nobody chose the depth, keep
    // each ring near kDefaultRingBytes (at least 4 slots).
    const uint64_t slot = *s.max_message_size + sizeof(shm::SlotHeader);
    const uint64_t fitting = std::bit_floor(std::max<uint64_t>(kDefaultRingBytes / slot, 4));
    s.depth = static_cast<uint32_t>(std::min<uint64_t>(*s.depth, fitting));
    // 64-bit: a history near UINT32_MAX must not wrap around the depth check.
    if (uint64_t{*s.history} + 2 > *s.depth && *s.history <= shm::kMaxDepthLimit - 2) {
      s.depth = std::bit_ceil(*s.history + 2);
    }
  }
  if (uint64_t{*s.history} + 2 > *s.depth) {
    return Status{Errc::kInvalidArgument, "topic " + name + ": history " + std::to_string(*s.history) +
                                              " must be at most depth - 2 = " + std::to_string(*s.depth - 2)};
  }
  std::string error;
  auto g = shm::compute_topic_geometry(*s.max_message_size, *s.depth, *s.max_publishers, *s.max_subscribers,
                                       &error);
  if (!g) return Status{Errc::kInvalidArgument, "topic " + name + ": " + error};
  return PlannedTopic{s, fixed, *g};
}

Result<TopicRegistry::Topic*> TopicRegistry::create_topic(const std::string& name, const PlannedTopic& plan) {
  const TopicSettings& s = plan.settings;
  const shm::TopicGeometry* g = &plan.geometry;
  auto t = std::make_unique<Topic>();
  t->id = next_topic_id_++;
  t->name = name;
  t->settings = s;
  t->fixed = plan.fixed;
  t->geometry = *g;
  const std::string segment_name = detail::segment_prefix(instance_) + "t" + std::to_string(t->id);
  try {
    // Owner-only: clients receive the descriptor from us, so nobody needs to open it by name.
    t->segment = shm::Segment::create(segment_name, g->segment_size, 0600);
  } catch (const std::exception& e) {
    return Status{Errc::kExhausted, std::string("topic ") + name + ": " + e.what()};
  }
  shm::initialize_topic_segment(t->base(), *g, t->id,
                                *s.policy == Policy::kLossless ? shm::kPolicyLossless : shm::kPolicyLossy,
                                *s.history, name, static_cast<uint32_t>(getpid()));
  t->publisher_owner.assign(g->max_publishers, 0);
  t->publisher_id.assign(g->max_publishers, 0);
  t->last_head.assign(g->max_publishers, 0);
  t->dead_since.assign(g->max_publishers, Clock::time_point{});
  t->subscriber_owner.assign(g->max_subscribers, 0);
  t->subscriber_id.assign(g->max_subscribers, 0);
  t->windows.assign(g->max_subscribers, SubscriberWindow{});
  spdlog::info("topic {} created: {} ({} KiB of shared memory)", name, describe(s), g->segment_size >> 10);
  Topic* raw = t.get();
  by_name_[name] = raw->id;
  topics_[raw->id] = std::move(t);
  return raw;
}

Status TopicRegistry::authorize(const std::string& name, uint32_t role, const Peer& peer) const {
  const std::optional<AllowList>* list = nullptr;
  for (const TopicRule& rule : config_.topics) {
    if (topic_matches(rule.pattern, name)) {
      list = role == kRolePublisher ? &rule.access.publish : &rule.access.subscribe;
      break;
    }
  }
  if (list == nullptr || !list->has_value()) {
    list = role == kRolePublisher ? &config_.default_access.publish : &config_.default_access.subscribe;
  }
  const AllowList allow = list->has_value() ? **list : default_allow_list();
  if (allowed(allow, peer.uid, peer.gid, peer.groups)) return Status::Ok();
  const char* what = role == kRolePublisher ? "publish to" : "subscribe to";
  spdlog::warn("denied: pid {} uid {} gid {} ({}) may not {} {}", peer.pid, peer.uid, peer.gid, peer.name,
               what, name);
  return {Errc::kPermissionDenied,
          std::string("uid ") + std::to_string(peer.uid) + " may not " + what + " " + name};
}

Result<Attached> TopicRegistry::attach_publisher(const std::string& name, const TopicSettings& requested,
                                                 const Peer& peer) {
  if (Status s = authorize(name, kRolePublisher, peer); !s.ok()) return s;
  auto found = find_or_create(name, requested, /*for_publisher=*/true);
  if (!found) return found.status();
  Topic& t = *found.value();
  const auto& g = t.geometry;
  uint32_t p = g.max_publishers;
  for (uint32_t i = 0; i < g.max_publishers && p == g.max_publishers; ++i) {
    if (t.ring(i)->state.load(std::memory_order_relaxed) == shm::kSlotFree) p = i;
  }
  if (p == g.max_publishers) {
    remove_if_unused(t.id);
    return Status{Errc::kExhausted, "topic " + name + " has all " + std::to_string(g.max_publishers) +
                                        " publisher slots in use (max_publishers)"};
  }
  shm::PublisherSlot* ring = t.ring(p);
  const uint32_t generation = (ring->generation.load(std::memory_order_relaxed) + 1) & 0xffff;
  // The ring is free: no writer, and every reader dropped it when it became free. Reset it for the new
  // writer.
  ring->head.store(0, std::memory_order_relaxed);
  ring->messages.store(0, std::memory_order_relaxed);
  ring->bytes.store(0, std::memory_order_relaxed);
  ring->gate_timeouts.store(0, std::memory_order_relaxed);
  ring->loaned.store(0, std::memory_order_relaxed);
  ring->writer_waiting.store(0, std::memory_order_relaxed);
  std::byte* data = shm::ring_base(t.base(), g, p);
  for (uint64_t pos = 0; pos < g.depth; ++pos) {
    shm::ring_slot(data, g, pos)->sequence.store(0, std::memory_order_relaxed);
  }
  for (uint32_t s = 0; s < g.max_subscribers; ++s) {
    t.cursor(p, s)->value.store(
        t.subscriber_owner[s] ? shm::make_cursor(generation, 0) : shm::kCursorInactive,
        std::memory_order_relaxed);
  }
  const uint64_t id = next_endpoint_id_++;
  ring->pid = static_cast<uint32_t>(peer.pid);
  ring->uid = peer.uid;
  ring->participant_id = id;
  ring->generation.store(generation, std::memory_order_relaxed);
  // release: everything above is visible to whoever sees the ring active (writer via its reply, readers via
  // the epoch bump that follows).
  ring->state.store(shm::kSlotActive, std::memory_order_release);
  t.header()->publishers_epoch.fetch_add(1, std::memory_order_release);
  t.publisher_owner[p] = peer.id;
  t.publisher_id[p] = id;
  t.last_head[p] = 0;
  t.had_publisher = true;
  spdlog::info("publisher {} on {} (ring {}) for pid {} uid {} ({})", id, name, p, peer.pid, peer.uid,
               peer.name);
  Attached a{{t.id, kRolePublisher, p, generation, id}, t.settings, t.segment.duplicate_fd()};
  return a;
}

Result<Attached> TopicRegistry::attach_subscriber(const std::string& name, const TopicSettings& requested,
                                                  uint32_t history, const Peer& peer) {
  if (Status s = authorize(name, kRoleSubscriber, peer); !s.ok()) return s;
  auto found = find_or_create(name, requested, /*for_publisher=*/false);
  if (!found) return found.status();
  Topic& t = *found.value();
  uint32_t s = 0;
  if (auto moved = t.moved_in.find(peer.id); moved != t.moved_in.end()) {
    // This subscriber re-opens a reshaped topic: its slot here was reserved when the topic was reshaped, so
    // it missed nothing the new publisher sent meanwhile.
    s = moved->second;
    t.moved_in.erase(moved);
  } else {
    auto added = add_subscriber(t, peer.id, peer.pid, peer.uid, history);
    if (!added) {
      remove_if_unused(t.id);
      return added.status();
    }
    s = added.value();
  }
  spdlog::info("subscriber {} on {} (slot {}) for pid {} uid {} ({})", t.subscriber_id[s], name, s, peer.pid,
               peer.uid, peer.name);
  Attached a{{t.id, kRoleSubscriber, s, 0, t.subscriber_id[s]}, t.settings, t.segment.duplicate_fd()};
  return a;
}

Result<uint32_t> TopicRegistry::add_subscriber(Topic& t, uint64_t owner, pid_t pid, uid_t uid,
                                               uint32_t history) {
  const auto& g = t.geometry;
  uint32_t s = g.max_subscribers;
  for (uint32_t i = 0; i < g.max_subscribers && s == g.max_subscribers; ++i) {
    if (t.subscriber_owner[i] == 0) s = i;
  }
  if (s == g.max_subscribers) {
    return Status{Errc::kExhausted, "topic " + t.name + " has all " + std::to_string(g.max_subscribers) +
                                        " subscriber slots in use (max_subscribers)"};
  }
  history = std::min(history, *t.settings.history);
  shm::SubscriberSlot* slot = t.subscriber(s);
  slot->taken.store(0, std::memory_order_relaxed);
  slot->dropped.store(0, std::memory_order_relaxed);
  slot->bytes.store(0, std::memory_order_relaxed);
  slot->held.store(0, std::memory_order_relaxed);
  slot->latency_sum_ns.store(0, std::memory_order_relaxed);
  slot->latency_samples.store(0, std::memory_order_relaxed);
  slot->late_wakeups.store(0, std::memory_order_relaxed);
  slot->sleeping.store(0, std::memory_order_relaxed);  // a former owner's counts were undone when it left
  for (auto& b : slot->latency_ns) b.store(0, std::memory_order_relaxed);
  int64_t starts = 0;  // sum of the start positions chosen below, for the queueing metrics
  const bool lossless = *t.settings.policy == Policy::kLossless;
  // Lossless: first pin every ring at position 0 for this reader, so no writer can run more than a ring ahead
  // of the start position chosen below while it has not yet seen this reader (two-phase join).
  if (lossless) {
    for (uint32_t p = 0; p < g.max_publishers; ++p) {
      if (t.ring(p)->state.load(std::memory_order_relaxed) == shm::kSlotFree) continue;
      const uint32_t generation = t.ring(p)->generation.load(std::memory_order_relaxed);
      t.cursor(p, s)->value.store(shm::make_cursor(generation, 0), std::memory_order_seq_cst);
    }
    // seq_cst (a release): writers that see the new epoch rescan and see the pins above.
    t.header()->subscribers_epoch.fetch_add(1, std::memory_order_seq_cst);
  }
  for (uint32_t p = 0; p < g.max_publishers; ++p) {
    shm::PublisherSlot* ring = t.ring(p);
    if (ring->state.load(std::memory_order_relaxed) == shm::kSlotFree) {
      t.cursor(p, s)->value.store(shm::kCursorInactive, std::memory_order_relaxed);
      continue;
    }
    // acquire: pairs with the writer's release store of head. The writer may commit at most one more
    // message (the one in flight before it saw our pin), so keep two slots of margin.
    const uint64_t head = ring->head.load(std::memory_order_acquire);
    const uint64_t back = std::min<uint64_t>({history, head, g.depth - 2});
    const uint32_t generation = ring->generation.load(std::memory_order_relaxed);
    t.cursor(p, s)->value.store(shm::make_cursor(generation, head - back), std::memory_order_seq_cst);
    // In messages, as sample_metrics counts: those before the start slot (a packed slot holds several).
    const uint64_t messages = t.messages_of(p);
    starts += static_cast<int64_t>(messages - t.messages_from(p, head - back, head, messages));
  }
  t.windows[s] = SubscriberWindow::starting_after(starts);
  const uint64_t id = next_endpoint_id_++;
  slot->pid = static_cast<uint32_t>(pid);
  slot->uid = uid;
  slot->participant_id = id;
  slot->state.store(shm::kSlotActive, std::memory_order_release);
  // seq_cst (a release): pairs with the writers' acquire load; they rescan cursors and now see ours.
  t.header()->subscribers_epoch.fetch_add(1, std::memory_order_seq_cst);
  if (lossless) t.wake_writers();  // writers the pin made wait
  t.subscriber_owner[s] = owner;
  t.subscriber_id[s] = id;
  return s;
}

void TopicRegistry::forget_peer(uint64_t peer_id) {
  // Collected first, detached after: a detach ticks, and a tick may remove a topic this loop stands on.
  std::vector<std::pair<uint32_t, uint32_t>> reserved;  // (topic id, subscriber slot)
  for (auto& [id, topic] : topics_) {
    Topic& t = *topic;
    for (auto it = t.moved_in.begin(); it != t.moved_in.end();) {
      if (it->first != peer_id) {
        ++it;
        continue;
      }
      reserved.emplace_back(t.id, it->second);
      it = t.moved_in.erase(it);
    }
  }
  for (const auto& [topic_id, slot] : reserved) detach({topic_id, kRoleSubscriber, slot, 0, 0}, peer_id);
}

void TopicRegistry::detach(const Endpoint& e, uint64_t peer_id) {
  auto it = topics_.find(e.topic_id);
  if (it == topics_.end()) return;
  Topic& t = *it->second;
  if (e.role == kRolePublisher && e.slot < t.geometry.max_publishers &&
      t.publisher_owner[e.slot] == peer_id) {
    t.publisher_owner[e.slot] = 0;
    // release: subscribers that see the epoch bump see the ring dead; they drain it, then drop it.
    t.ring(e.slot)->state.store(shm::kSlotDead, std::memory_order_release);
    t.dead_since[e.slot] = Clock::now();
    t.header()->publishers_epoch.fetch_add(1, std::memory_order_release);
    spdlog::info("publisher {} left {} (ring {}, {} messages)", t.publisher_id[e.slot], t.name, e.slot,
                 t.messages_of(e.slot));
  } else if (e.role == kRoleSubscriber && e.slot < t.geometry.max_subscribers &&
             t.subscriber_owner[e.slot] == peer_id) {
    t.subscriber_owner[e.slot] = 0;
    shm::SubscriberSlot* slot = t.subscriber(e.slot);
    t.retired_drops += slot->dropped.load(std::memory_order_relaxed);
    // Capped: the count is the reader's to write, and a corrupt one must not stall this loop.
    const uint32_t counted =
        std::min(slot->sleeping.exchange(0, std::memory_order_relaxed), shm::kMaxSleeperCounts);
    for (uint32_t i = 0; i < counted; ++i) shm::decrement_sleepers(t.header());
    slot->state.store(shm::kSlotFree, std::memory_order_release);
    for (uint32_t p = 0; p < t.geometry.max_publishers; ++p) {
      t.cursor(p, e.slot)->value.store(shm::kCursorInactive, std::memory_order_seq_cst);
    }
    // Writers rescan (the leaver no longer gates them) and any writer blocked on it wakes up.
    t.header()->subscribers_epoch.fetch_add(1, std::memory_order_seq_cst);
    t.wake_writers();
    spdlog::info("subscriber {} left {} (slot {})", t.subscriber_id[e.slot], t.name, e.slot);
  } else {
    return;
  }
  tick();
}

void TopicRegistry::adopt(const std::vector<std::string>& names) {
  const std::string prefix = detail::segment_prefix(instance_) + "t";
  for (const std::string& segment_name : names) {
    auto t = std::make_unique<Topic>();
    std::string error;
    try {
      if (segment_name.rfind(prefix, 0) != 0) throw std::runtime_error("not a topic segment");
      t->id = static_cast<uint32_t>(std::stoul(segment_name.substr(prefix.size())));
      t->segment = shm::Segment::open(segment_name);
      auto g = shm::validate_topic_header(*t->header(), t->segment.size(), &error);
      if (!g) throw std::runtime_error(error);
      const shm::TopicHeader* h = t->header();
      if (h->topic_id != t->id || h->closed.load() != shm::kTopicOpen || !validate_topic_name(h->name).ok() ||
          by_name_.count(h->name) != 0) {
        throw std::runtime_error("closed, renamed or duplicate topic");
      }
      t->geometry = *g;
      t->name = h->name;
    } catch (const std::exception& e) {
      spdlog::warn("removing stale segment {}: {}", segment_name, e.what());
      shm::Segment::remove(segment_name);
      continue;
    }
    const auto& g = t->geometry;
    shm::TopicHeader* h = t->header();
    t->settings = TopicSettings{g.max_message_size,
                                g.depth,
                                h->policy == shm::kPolicyLossless ? Policy::kLossless : Policy::kLossy,
                                h->history,
                                g.max_publishers,
                                g.max_subscribers};
    for (const TopicRule& rule : config_.topics) {
      if (topic_matches(rule.pattern, t->name)) {
        t->fixed = rule.settings;
        break;
      }
    }
    t->publisher_owner.assign(g.max_publishers, 0);
    t->publisher_id.assign(g.max_publishers, 0);
    t->last_head.assign(g.max_publishers, 0);
    t->dead_since.assign(g.max_publishers, Clock::now());
    t->subscriber_owner.assign(g.max_subscribers, 0);
    t->subscriber_id.assign(g.max_subscribers, 0);
    t->windows.assign(g.max_subscribers, SubscriberWindow{});  // calibrated from the cursors at first sample
    // Repair what a crash mid-attach may have left half done: cursors of free slots and rings are inactive.
    for (uint32_t s = 0; s < g.max_subscribers; ++s) {
      shm::SubscriberSlot* slot = t->subscriber(s);
      if (slot->state.load(std::memory_order_acquire) == shm::kSlotActive) {
        t->subscriber_owner[s] = kOrphan;
        t->subscriber_id[s] = slot->participant_id;
        next_endpoint_id_ = std::max(next_endpoint_id_, slot->participant_id + 1);
        continue;
      }
      for (uint32_t p = 0; p < g.max_publishers; ++p) {
        t->cursor(p, s)->value.store(shm::kCursorInactive, std::memory_order_seq_cst);
      }
    }
    for (uint32_t p = 0; p < g.max_publishers; ++p) {
      shm::PublisherSlot* ring = t->ring(p);
      const uint32_t state = ring->state.load(std::memory_order_acquire);
      if (state == shm::kSlotFree) {
        for (uint32_t s = 0; s < g.max_subscribers; ++s) {
          t->cursor(p, s)->value.store(shm::kCursorInactive, std::memory_order_relaxed);
        }
        continue;
      }
      t->had_publisher = true;
      t->publisher_id[p] = ring->participant_id;
      next_endpoint_id_ = std::max(next_endpoint_id_, ring->participant_id + 1);
      if (state == shm::kSlotActive) t->publisher_owner[p] = kOrphan;
    }
    t->header()->subscribers_epoch.fetch_add(1, std::memory_order_seq_cst);
    t->wake_writers();
    next_topic_id_ = std::max(next_topic_id_, t->id + 1);
    spdlog::info("adopted topic {} ({}) from the previous daemon", t->name, describe(t->settings));
    Topic* raw = t.get();
    by_name_[raw->name] = raw->id;
    topics_[raw->id] = std::move(t);
  }
}

Status TopicRegistry::reclaim(const Endpoint& e, const Peer& peer) {
  auto it = topics_.find(e.topic_id);
  if (it == topics_.end()) return {Errc::kInvalidArgument, "no such topic"};
  Topic& t = *it->second;
  if (e.role == kRolePublisher && e.slot < t.geometry.max_publishers &&
      t.publisher_owner[e.slot] == kOrphan && t.ring(e.slot)->pid == static_cast<uint32_t>(peer.pid) &&
      t.publisher_id[e.slot] == e.id) {
    t.publisher_owner[e.slot] = peer.id;
    return Status::Ok();
  }
  if (e.role == kRoleSubscriber && e.slot < t.geometry.max_subscribers &&
      t.subscriber_owner[e.slot] == kOrphan && t.subscriber(e.slot)->pid == static_cast<uint32_t>(peer.pid) &&
      t.subscriber_id[e.slot] == e.id) {
    t.subscriber_owner[e.slot] = peer.id;
    return Status::Ok();
  }
  return {Errc::kPermissionDenied,
          "endpoint " + std::to_string(e.id) + " is not an orphan of pid " + std::to_string(peer.pid)};
}

void TopicRegistry::find_corruption(Topic& t) {
  const auto& g = t.geometry;
  for (uint32_t p = 0; p < g.max_publishers; ++p) {
    shm::PublisherSlot* ring = t.ring(p);
    if (ring->state.load(std::memory_order_acquire) != shm::kSlotActive) continue;
    // acquire: pairs with the writer's release of head.
    const uint64_t head = ring->head.load(std::memory_order_acquire);
    const uint64_t owner = t.publisher_owner[p];
    if (head < t.last_head[p] && owner != 0 && owner != kOrphan) {
      fence(owner,
            "publisher " + std::to_string(t.publisher_id[p]) + " on " + t.name + " moved its head backwards");
    }
    t.last_head[p] = head;
    const uint32_t generation = ring->generation.load(std::memory_order_relaxed) & 0xffff;
    for (uint32_t s = 0; s < g.max_subscribers; ++s) {
      const uint64_t reader = t.subscriber_owner[s];
      if (reader == 0 || reader == kOrphan) continue;
      const uint64_t v = t.cursor(p, s)->value.load(std::memory_order_acquire);
      if (v == shm::kCursorInactive || (v >> shm::kGenerationShift) != generation) continue;
      // A reader cannot have released a slot the writer has not written yet. (+1: a writer stores head just
      // after the slot's sequence, so a fast reader may be one ahead of the head we read.)
      if (shm::cursor_ahead_of(v, ring->head.load(std::memory_order_acquire))) {
        fence(reader, "subscriber " + std::to_string(t.subscriber_id[s]) + " on " + t.name +
                          " published a cursor beyond the writer's head");
      }
    }
  }
}

void TopicRegistry::fence(uint64_t peer_id, const std::string& why) {
  if (std::find(fenced_.begin(), fenced_.end(), peer_id) != fenced_.end()) return;
  spdlog::warn("fencing off participant {}: {}", peer_id, why);
  fenced_.push_back(peer_id);
}

std::vector<uint64_t> TopicRegistry::take_fenced() {
  return std::exchange(fenced_, {});
}

void TopicRegistry::reap_orphans(Topic& t) {
  for (uint32_t p = 0; p < t.geometry.max_publishers; ++p) {
    if (t.publisher_owner[p] == kOrphan && !process_alive(t.ring(p)->pid)) {
      detach({t.id, kRolePublisher, p, 0, 0}, kOrphan);
    }
  }
  for (uint32_t s = 0; s < t.geometry.max_subscribers; ++s) {
    if (t.subscriber_owner[s] == kOrphan && !process_alive(t.subscriber(s)->pid)) {
      detach({t.id, kRoleSubscriber, s, 0, 0}, kOrphan);
    }
  }
}

void TopicRegistry::free_ring(Topic& t, uint32_t p) {
  shm::PublisherSlot* ring = t.ring(p);
  // The ring's messages leave the sum over rings: keep each subscriber's arrival count where it is. (A
  // subscriber that did not drain it is re-calibrated at the next sample, see sample_metrics.)
  const uint64_t messages = t.messages_of(p);
  for (uint32_t s = 0; s < t.geometry.max_subscribers; ++s) {
    if (t.subscriber_owner[s] != 0) t.windows[s].ring_freed(messages);
  }
  t.retired_messages += messages;
  t.retired_bytes += ring->bytes.load(std::memory_order_relaxed);
  ring->head.store(0, std::memory_order_relaxed);
  ring->messages.store(0, std::memory_order_relaxed);
  for (uint32_t s = 0; s < t.geometry.max_subscribers; ++s) {
    t.cursor(p, s)->value.store(shm::kCursorInactive, std::memory_order_relaxed);
  }
  ring->state.store(shm::kSlotFree, std::memory_order_release);
  t.header()->publishers_epoch.fetch_add(1, std::memory_order_release);
}

void TopicRegistry::remove_if_unused(uint32_t topic_id) {
  auto it = topics_.find(topic_id);
  if (it == topics_.end() || it->second->used()) return;
  Topic& t = *it->second;
  if (!t.reshaped) {
    spdlog::info("topic {} removed (no endpoints left)", t.name);
    t.header()->closed.store(shm::kTopicClosed, std::memory_order_release);
    shm::Segment::remove(t.segment.name());
    by_name_.erase(t.name);
  }
  topics_.erase(it);
}

bool TopicRegistry::retire_if_cut_short(Topic& t) {
  const std::size_t now_size = t.segment.current_size();
  if (t.reshaped || (now_size >= t.segment.size() && !t.segment.replaced())) return false;
  // Grown back first, so that processes still mapping it stop faulting (the lost pages read as zeros), then
  // closed: they re-open the topic and the daemon creates it anew. Their mappings replaced after a fault
  // (shm/truncation_guard.h) already read as closed.
  const bool restored = t.segment.restore_size();
  const bool replaced = t.segment.replaced();  // then our own mapping no longer shows the segment
  if (!replaced) {
    // release: readers that see closed stop waiting; then wake every sleeper.
    t.header()->closed.store(shm::kTopicClosed, std::memory_order_release);
    shm::bump_wake_word(t.header());
    shm::futex_wake(&t.header()->wake_word);
    t.wake_writers();
  } else if (t.segment.current_size() >= offsetof(shm::TopicHeader, closed) + sizeof(uint32_t)) {
    t.segment.write_through(offsetof(shm::TopicHeader, closed), shm::kTopicClosed);
  }
  spdlog::error(
      "topic {}: a participant cut its segment {} short ({} of {} bytes){}; the topic is closed and "
      "made anew: its publishers and subscribers re-open it, and the messages it held are lost",
      t.name, t.segment.name(), now_size, t.segment.size(),
      restored ? "" : " and it could not be grown back");
  shm::Segment::remove(t.segment.name());
  by_name_.erase(t.name);
  ++cut_short_;
  return true;
}

void TopicRegistry::tick() {
  const auto now = Clock::now();
  const auto grace = std::chrono::duration<double>(config_.dead_ring_grace_s);
  std::vector<uint32_t> ids;
  if (in_tick_) return;
  in_tick_ = true;
  // Endpoints of a retired topic stay with their participants until they go; their closes find no topic.
  std::erase_if(topics_, [this](auto& entry) { return retire_if_cut_short(*entry.second); });
  for (auto& [id, topic] : topics_) reap_orphans(*topic);
  for (auto& [id, topic] : topics_) {
    if (!topic->reshaped) find_corruption(*topic);
  }
  for (auto& [id, topic] : topics_) {
    Topic& t = *topic;
    for (uint32_t p = 0; p < t.geometry.max_publishers; ++p) {
      if (t.ring(p)->state.load(std::memory_order_relaxed) != shm::kSlotDead) continue;
      const bool drained = t.slowest(p) >= t.ring(p)->head.load(std::memory_order_acquire);
      if (drained || now - t.dead_since[p] > grace) free_ring(t, p);
    }
    const double dt = std::chrono::duration<double>(now - t.last_tick).count();
    if (dt >= 1.0) {
      const uint64_t m = t.messages();
      t.rate_hz = static_cast<double>(m - std::min(m, t.last_messages)) / dt;
      t.last_messages = m;
      t.last_tick = now;
    }
    if (!t.reshaped) sample_metrics(t, steady_ns());
    ids.push_back(id);
  }
  for (uint32_t id : ids) remove_if_unused(id);
  in_tick_ = false;
}

void TopicRegistry::sample_metrics(Topic& t, uint64_t now) {
  if (t.last_sample_ns != 0 && now - t.last_sample_ns < kMetricsSampleNs) return;
  t.last_sample_ns = now;
  t.published.add(now, t.messages());
  const auto& g = t.geometry;
  std::vector<uint64_t> cursor_position(g.max_publishers);
  for (uint32_t s = 0; s < g.max_subscribers; ++s) {
    SubscriberWindow& w = t.windows[s];
    if (t.subscriber_owner[s] == 0) {
      if (!w.empty()) w = SubscriberWindow{};
      continue;
    }
    const shm::SubscriberSlot* slot = t.subscriber(s);
    // Read in this order: cursors, then the reader's counters, then heads. A cursor never passes the position
    // the counters stored before it account for (acquire: pairs with the reader's release or seq_cst cursor
    // store, which follows its relaxed counter stores), and heads only grow; so `upper` bounds the backlog
    // from above.
    for (uint32_t p = 0; p < g.max_publishers; ++p) {
      const uint64_t v = t.cursor(p, s)->value.load(std::memory_order_acquire);
      const uint32_t generation = t.ring(p)->generation.load(std::memory_order_relaxed) & 0xffff;
      const bool current = v != shm::kCursorInactive && (v >> shm::kGenerationShift) == generation;
      // Any head serves to complete the cursor's 48 bits (it trails by less than a ring).
      cursor_position[p] =
          current ? shm::cursor_position(v, t.ring(p)->head.load(std::memory_order_relaxed)) : 0;
    }
    SubscriberReading r;
    // acquire: pairs with the reader's release store of the count; the sum then covers at least that many.
    r.latency_samples = slot->latency_samples.load(std::memory_order_acquire);
    r.latency_sum_ns = slot->latency_sum_ns.load(std::memory_order_relaxed);
    r.taken = slot->taken.load(std::memory_order_relaxed);
    r.dropped = slot->dropped.load(std::memory_order_relaxed);
    r.held = slot->held.load(std::memory_order_relaxed);
    for (uint32_t p = 0; p < g.max_publishers; ++p) {
      const shm::PublisherSlot* ring = t.ring(p);
      if (ring->state.load(std::memory_order_acquire) == shm::kSlotFree) continue;
      // acquire: pairs with the writer's release store of head (and its messages count before it).
      const uint64_t head = ring->head.load(std::memory_order_acquire);
      const uint64_t messages = t.messages_of(p);
      r.heads += messages;
      r.upper += t.messages_from(p, std::min(head, cursor_position[p]), head, messages);
    }
    // A reader may be one message ahead of the counters and heads read in each ring (it takes before it
    // stores `taken`; a writer stores head after committing).
    r.slack = static_cast<int64_t>(g.max_publishers) + 1;
    w.add(r, now);
  }
}

void TopicRegistry::shutdown() {
  for (auto& [id, t] : topics_) {
    // release: readers that see closed stop waiting; then wake every sleeper.
    if (!t->reshaped) t->header()->closed.store(shm::kTopicClosed, std::memory_order_release);
    shm::bump_wake_word(t->header());
    shm::futex_wake(&t->header()->wake_word);
    t->wake_writers();
    shm::Segment::remove(t->segment.name());
  }
  topics_.clear();
  by_name_.clear();
}

void TopicRegistry::report(toml::table* doc) const {
  toml::array topics;
  for (const auto& [id, topic] : topics_) {
    const Topic& t = *topic;
    if (t.reshaped) continue;
    const auto& g = t.geometry;
    toml::table entry;
    entry.insert("name", t.name);
    entry.insert("id", static_cast<int64_t>(t.id));
    entry.insert("policy", *t.settings.policy == Policy::kLossless ? "lossless" : "lossy");
    entry.insert("max_message_size", static_cast<int64_t>(g.max_message_size));
    entry.insert("depth", static_cast<int64_t>(g.depth));
    entry.insert("history", static_cast<int64_t>(*t.settings.history));
    entry.insert("segment_bytes", static_cast<int64_t>(g.segment_size));
    uint64_t bytes = t.retired_bytes, drops = t.retired_drops, in_use = 0, loaned = 0;
    int publishers = 0, subscribers = 0;
    toml::array pubs, subs;
    for (uint32_t p = 0; p < g.max_publishers; ++p) {
      const shm::PublisherSlot* r = t.ring(p);
      const uint32_t state = r->state.load(std::memory_order_relaxed);
      if (state == shm::kSlotFree) continue;
      const uint64_t head = r->head.load(std::memory_order_relaxed);
      bytes += r->bytes.load(std::memory_order_relaxed);
      const uint64_t used = head - std::min(head, t.slowest(p));
      in_use += state == shm::kSlotActive ? std::min<uint64_t>(used, g.depth) : 0;
      const bool loan = state == shm::kSlotActive && shm::loan_outstanding(*r);
      loaned += loan;
      publishers += state == shm::kSlotActive;
      pubs.push_back(toml::table{
          {"id", static_cast<int64_t>(r->participant_id)},
          {"ring", static_cast<int64_t>(p)},
          {"pid", static_cast<int64_t>(r->pid)},
          {"uid", static_cast<int64_t>(r->uid)},
          {"state", state == shm::kSlotActive ? "active" : "dead"},
          {"published", static_cast<int64_t>(t.messages_of(p))},
          {"queued", static_cast<int64_t>(used)},
          {"full_timeouts", static_cast<int64_t>(r->gate_timeouts.load(std::memory_order_relaxed))}});
    }
    std::vector<uint64_t> histogram(shm::kLatencyBuckets, 0);
    for (uint32_t s = 0; s < g.max_subscribers; ++s) {
      if (t.subscriber_owner[s] == 0) continue;
      const shm::SubscriberSlot* slot = t.subscriber(s);
      ++subscribers;
      const uint64_t dropped = slot->dropped.load(std::memory_order_relaxed);
      drops += dropped;
      for (int b = 0; b < shm::kLatencyBuckets; ++b)
        histogram[b] += slot->latency_ns[b].load(std::memory_order_relaxed);
      subs.push_back(toml::table{
          {"id", static_cast<int64_t>(slot->participant_id)},
          {"pid", static_cast<int64_t>(slot->pid)},
          {"uid", static_cast<int64_t>(slot->uid)},
          {"taken", static_cast<int64_t>(slot->taken.load(std::memory_order_relaxed))},
          {"dropped", static_cast<int64_t>(dropped)},
          {"late_wakeups", static_cast<int64_t>(slot->late_wakeups.load(std::memory_order_relaxed))},
          {"held", static_cast<int64_t>(slot->held.load(std::memory_order_relaxed))},
          {"metrics", t.windows[s].report()}});
    }
    auto percentile = [&](double q) -> int64_t {
      uint64_t total = 0;
      for (uint64_t c : histogram) total += c;
      if (total == 0) return 0;
      const auto rank = static_cast<uint64_t>(q * static_cast<double>(total - 1));
      uint64_t seen = 0;
      for (int b = 0; b < shm::kLatencyBuckets; ++b) {
        seen += histogram[b];
        if (seen > rank) return static_cast<int64_t>(shm::latency_bucket_upper_ns(b));
      }
      return 0;
    };
    entry.insert("publishers", publishers);
    entry.insert("subscribers", subscribers);
    entry.insert("messages", static_cast<int64_t>(t.messages()));
    entry.insert("bytes", static_cast<int64_t>(bytes));
    entry.insert("drops", static_cast<int64_t>(drops));
    entry.insert("rate_hz", t.rate_hz);
    entry.insert("metrics", t.published.report());
    entry.insert("slots_in_use", static_cast<int64_t>(in_use));
    entry.insert("loaned", static_cast<int64_t>(loaned));
    entry.insert("latency_p50_ns", percentile(0.50));
    entry.insert("latency_p99_ns", percentile(0.99));
    entry.insert("publisher", std::move(pubs));
    entry.insert("subscriber", std::move(subs));
    topics.push_back(std::move(entry));
  }
  doc->insert("topic", std::move(topics));
  // Topics closed and made anew because a participant cut their segment short (retire_if_cut_short).
  doc->insert("topics_cut_short", static_cast<int64_t>(cut_short_));
}

}  // namespace shmbus::daemon

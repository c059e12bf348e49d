#include <thread>

#include "bus/log.h"
#include "bus/stamp_clock.h"
#include "bus/subscriber_core.h"
#include "shm/deadline.h"
#include "shm/futex.h"
#include "shm/sleep_fence.h"
#include "shmbus/bus.h"

namespace shmbus {
namespace detail {

SubscriberCore::~SubscriberCore() {
  watching.forget_all();  // first: a source may look at us (late wake-ups) as it lets go
  detach();
}

void SubscriberCore::log_reattach_failure(const Status& s) {
  log().error("cannot re-open a reshaped topic: {}", s.to_string());
}

Status SubscriberCore::attach(const std::string& topic_name) {
  OpenRequest request{};
  request.header = make_header(RecordType::kOpenSubscriber, sizeof request, 0);
  copy_string(topic_name, request.topic, sizeof request.topic);
  request.settings = to_wire(options.topic);
  request.history = options.history;
  Reply reply{};
  int fd = -1;
  if (Status s = connection->call(&request, sizeof request, &reply, &fd); !s.ok()) return s;
  auto attachment = TopicAttachment::map(fd, reply, topic_name);
  if (!attachment) return attachment.status();
  if (reply.slot >= attachment->geometry.max_subscribers) {
    return {Errc::kProtocolError, "the daemon assigned an out-of-range subscriber slot"};
  }
  stop_counting_as_sleeper();  // counted on the mapping this one replaces
  topic = std::move(attachment).value();
  slot = reply.slot;
  id = reply.participant_id;
  attached = true;
  lost.store(false, std::memory_order_relaxed);
  connection->add_endpoint(make_reclaim(topic.topic_id, kRoleSubscriber, slot, id), &lost);
  stats = shm::subscriber_slot(topic.base(), topic.geometry, slot);
  rings.assign(topic.geometry.max_publishers, RingFollower{});
  active.clear();
  active.reserve(topic.geometry.max_publishers);
  seen_publishers_epoch = ~0u;
  check_epoch();
  log().debug("subscriber {} on {} (slot {})", id, topic.topic, slot);
  return Status::Ok();
}

void SubscriberCore::detach() {
  // Also when not attached: a take() may have counted it on the mapping a failed re-open left in place.
  stop_counting_as_sleeper();
  if (!attached) return;
  attached = false;
  active.clear();
  next = 0;
  // A mapping replaced after a cut reads closed whatever the daemon did (it may even have missed a cut
  // and regrowth between two ticks): give the endpoint back then; a topic it retired ignores the close.
  if (lost.load(std::memory_order_relaxed) ||
      (topic.header()->closed.load(std::memory_order_relaxed) == shm::kTopicClosed &&
       !topic.segment.replaced())) {
    connection->remove_endpoint(topic.topic_id, kRoleSubscriber, slot);
    return;  // its daemon is gone: nothing to give back (a close would reach the successor)
  }
  CloseRequest request{};
  request.header = make_header(RecordType::kClose, sizeof request, 0);
  request.topic_id = topic.topic_id;
  request.role = kRoleSubscriber;
  request.slot = slot;
  Reply reply{};
  (void)connection->call(&request, sizeof request, &reply);
  // Unregistered only now: a close that meets a restarted daemon reconnects, which reclaims this endpoint
  // first, so that the retried close finds it (unregistered before, it stayed an orphan of the new daemon).
  connection->remove_endpoint(topic.topic_id, kRoleSubscriber, slot);
}

bool SubscriberCore::maybe_reopen() {
  if (sleeping || held > 0 || orphan_held > 0) return false;
  const auto now = std::chrono::steady_clock::now();
  if (now < next_reopen) return false;
  next_reopen = now + kReopenRetry;
  const std::string name = topic.topic;
  detach();
  Status s = attach(name);
  if (!s.ok()) {
    log().debug("subscriber on {} lost its daemon and cannot re-open yet: {}", name, s.to_string());
    return false;
  }
  log().info("subscriber on {} re-opened on a restarted shmbusd (slot {})", name, slot);
  return true;
}

RingFollower* SubscriberCore::reopen_then_poll(shm::SlotHeader** slot) {
  if (!maybe_reopen()) return nullptr;
  check_epoch();
  return poll_rings(slot);
}

void SubscriberCore::refresh(uint32_t epoch) {
  seen_publishers_epoch = epoch;
  const auto& g = topic.geometry;
  active.clear();
  for (uint32_t p = 0; p < g.max_publishers; ++p) {
    shm::PublisherSlot* ps = shm::publisher_slot(topic.base(), g, p);
    // acquire: pairs with the daemon's release store of state after it initialised the ring.
    const uint32_t state = ps->state.load(std::memory_order_acquire);
    const uint32_t generation = ps->generation.load(std::memory_order_relaxed);
    RingFollower& f = rings[p];
    // Samples still held from a ring that is freed or handed to another publisher no longer count against
    // max_held_samples: their release() finds the ring gone and does nothing.
    const auto forget_held = [&] {
      if (f.present && f.reader.held() > 0) {
        held -= static_cast<uint32_t>(f.reader.held());
        orphan_held += static_cast<uint32_t>(f.reader.held());
        // relaxed: a statistic for `stats`, single writer.
        stats->held.store(held, std::memory_order_relaxed);
      }
    };
    if (state != shm::kSlotActive && state != shm::kSlotDead) {
      forget_held();
      f.present = false;
      continue;
    }
    if (!f.present || f.reader.generation() != generation) {
      forget_held();
      // The daemon placed our start position in our cursor when we joined or when the ring was handed out.
      // acquire: pairs with the daemon's release of the cursor before its epoch bump.
      const uint64_t v = shm::cursor(topic.base(), g, p, slot)->value.load(std::memory_order_acquire);
      const bool same_generation =
          v != shm::kCursorInactive && (v >> shm::kGenerationShift) == (generation & 0xffff);
      // acquire: the head of the ring the daemon handed over (it completes the cursor's 48 bits).
      const uint64_t start =
          same_generation ? shm::cursor_position(v, ps->head.load(std::memory_order_acquire)) : 0;
      f.reader = shm::RingReader(topic.base(), g, p, slot, generation, start, options.max_held_samples,
                                 topic.lossless);
      f.present = true;
      f.publisher_id = ps->participant_id;
    }
    active.push_back(&f);
  }
  next = 0;
}

bool SubscriberCore::follow_epoch(uint32_t epoch) {
  // relaxed: check_epoch's acquire load of the epoch already ordered it.
  if (topic.header()->closed.load(std::memory_order_relaxed) == shm::kTopicReshaped && held == 0 &&
      orphan_held == 0) {
    if (sleeping) return false;  // after the sleep: the sleeper still uses this mapping
    const std::string name = topic.topic;
    detach();
    if (Status s = attach(name); !s.ok()) log_reattach_failure(s);
    return true;
  }
  refresh(epoch);
  return true;
}

void SubscriberCore::record_latency(uint64_t publish_ns) {
  // The publishers' clock: steady_clock extrapolated with the TSC between reads at most a millisecond apart
  // (cheaper than a clock_gettime while samples come more often than that).
  const uint64_t now = stamp_now_ns();
  next_latency_sample_ns = now + kLatencySampleGapNs;
  const uint64_t latency = now > publish_ns ? now - publish_ns : 0;
  auto& bucket = stats->latency_ns[shm::latency_bucket(latency)];
  bucket.store(bucket.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
  // Sum and count for the daemon's mean waiting time: plain stores (single writer), no read-modify-write.
  // release on the count: pairs with the daemon's acquire load of it, so the sum it reads next holds at
  // least the latencies that count covers.
  stats->latency_sum_ns.store(stats->latency_sum_ns.load(std::memory_order_relaxed) + latency,
                              std::memory_order_relaxed);
  stats->latency_samples.store(stats->latency_samples.load(std::memory_order_relaxed) + 1,
                               std::memory_order_release);
}

}  // namespace detail

void Sample::release_held() {
  owner_->release(ring_, generation_, position_);
  owner_ = nullptr;
  data_ = nullptr;
}

bool SampleView::still_valid() const {
  return owner_ != nullptr && owner_->still_valid(ring_, generation_, position_);
}

Subscriber::Subscriber() = default;
Subscriber::Subscriber(std::unique_ptr<detail::SubscriberCore> core) : core_(std::move(core)) {}
Subscriber::Subscriber(Subscriber&&) noexcept = default;
Subscriber& Subscriber::operator=(Subscriber&&) noexcept = default;
Subscriber::~Subscriber() = default;

// Inline in its only caller, try_take_slow: one call less on every empty poll of a busy-polling subscriber.
[[gnu::always_inline]] inline detail::RingFollower* detail::SubscriberCore::find_message(
    shm::RingReader::Message* m) {
  // At the limit, follow a publisher change first: samples held from a ring freed since stop counting. Not
  // from a drain callback: drain holds a reader that following would replace.
  if (held >= options.max_held_samples && (draining || (check_epoch(), held >= options.max_held_samples)))
    return nullptr;
  shm::SlotHeader* slot = nullptr;
  for (;;) {
    RingFollower* f = find_ready(&slot);
    if (f == nullptr || f->reader.message(slot, m)) [[likely]] {
      return f;
    }
    count_dropped(f->reader.skip_corrupt(slot));  // a packed slot whose table does not hold together
  }
}

inline Sample::Sample(detail::SubscriberCore* owner, const detail::RingFollower& from,
                      const shm::RingMessage& m, uint64_t position) {
  owner_ = owner;
  data_ = m.data;
  size_ = m.size;
  sequence_ = m.sequence;
  position_ = position;
  publish_ns_ = m.publish_ns;
  publisher_id_ = from.publisher_id;
  ring_ = from.reader.ring();
  generation_ = from.reader.generation();
}

// No cursor publication in either: the sample just taken is held, so the cursor could not pass it; release()
// and a reader that caught up (find_ready) publish it. Samples are returned as prvalues: built in the
// caller's Sample, with no copy or move.
Sample Subscriber::try_take() {
  detail::SubscriberCore& c = *core_;
  shm::RingReader::Message m;
  detail::RingFollower* f = c.ready_in_turn(&m);
  if (f == nullptr) [[unlikely]] {
    return try_take_slow();
  }
  return Sample(&c, *f, m, c.hold(f, m));
}

Sample Subscriber::try_take_slow() {
  detail::SubscriberCore& c = *core_;
  shm::RingReader::Message m;
  detail::RingFollower* f = c.find_message(&m);
  if (f == nullptr) return {};
  return Sample(&c, *f, m, c.hold(f, m));
}

const SampleView* Subscriber::begin_run(std::size_t max, Run* run) {
  detail::SubscriberCore& c = *core_;
  run->lossy = !c.topic.lossless;
  if (c.draining) return nullptr;  // from a drain callback: see drain's REQUIRES
  shm::SlotHeader* slot = nullptr;
  shm::RingReader::Message first;
  detail::RingFollower* f = c.visiting;
  for (;;) {
    if (f != nullptr) {  // the ring the last run read: go on there while it has messages ready
      uint64_t lost = 0;
      const auto peek = f->reader.peek(&slot, &lost);
      if (lost) c.count_dropped(lost);
      if (peek != shm::RingReader::Peek::kReady) {  // empty, or corrupt: find_ready skips and counts it
        f->reader.publish_cursor_idle();            // the visit is over: what it consumed is free now
        c.visiting = nullptr;
        f = nullptr;
      }
    }
    if (f == nullptr) f = c.find_ready(&slot);  // re-opens, follows new publishers, serves rings in turn
    if (f == nullptr) return nullptr;
    if (f->reader.message(slot, &first)) [[likely]] {
      break;
    }
    // A packed slot whose table does not hold together (a buggy writer): skip it, look again.
    c.count_dropped(f->reader.skip_corrupt(slot));
  }
  shm::RingReader& reader = f->reader;
  if (c.run_views_ring != reader.ring() || c.run_views_generation != reader.generation() ||
      c.run_views_publisher != f->publisher_id) {
    // What every view of a run shares, written once for as long as runs come from this ring.
    for (SampleView& v : c.run_views) {
      v.owner_ = &c;
      v.publisher_id_ = f->publisher_id;
      v.ring_ = reader.ring();
      v.generation_ = reader.generation();
    }
    c.run_views_ring = reader.ring();
    c.run_views_generation = reader.generation();
    c.run_views_publisher = f->publisher_id;
  }
  // At most a quarter ring of slots: end_run publishes the cursor every quarter ring, so that a blocked
  // lossless writer gets room while the callbacks run. A lossy writer never waits and may overwrite views of
  // this run before their callbacks: drain checks each view after the first before its callback and ends the
  // run at one overwritten (end_run then counts fewer).
  const std::size_t limit = std::min(max, detail::SubscriberCore::kDrainRun);
  SampleView* v = c.run_views.data();
  uint64_t bytes = 0;
  const uint64_t taken = c.taken;
  bool caught_up = false;
  const std::size_t n = reader.for_each_ready(
      slot, first, limit, reader.publish_interval(),
      [&](const shm::RingReader::Message& m) {
        v->data_ = m.data;
        v->size_ = m.size;
        v->sequence_ = m.sequence;
        v->position_ = m.position;
        v->publish_ns_ = m.publish_ns;
        bytes += v->size_;
        // Before the run's callbacks: what waiting cost, not handling (nor the handling of the messages
        // before it in the run, at most 63 callbacks, which a sample here leaves out).
        c.sample_latency(taken + (v - c.run_views.data()), v->publish_ns_);
        c.run_next[v - c.run_views.data()] = {m.next_sub, m.next_offset};
        ++v;
      },
      &caught_up);
  // The views point into this mapping: no re-open and no look for messages until end_run.
  c.draining = true;
  c.visiting = f;
  c.run_size = n;
  c.run_bytes = bytes;
  c.run_short = n < limit;
  run->count = n;
  run->last = caught_up && c.active.size() == 1;
  return c.run_views.data();
}

void Subscriber::end_run(std::size_t consumed, bool last) noexcept {
  detail::SubscriberCore& c = *core_;
  c.draining = false;
  shm::RingReader& reader = c.visiting->reader;
  if (consumed > 0) {  // consumed: the cursor may pass them
    const detail::SubscriberCore::RunNext& next = c.run_next[consumed - 1];
    reader.consume(c.run_views[consumed - 1].position_, next.sub, next.offset);
  }
  uint64_t bytes = c.run_bytes;
  if (consumed < c.run_size) {  // a callback threw, or a lossy view was overwritten before its callback
    bytes = 0;
    for (std::size_t i = 0; i < consumed; ++i) bytes += c.run_views[i].size_;
  }
  if (consumed > 0) c.count_taken(consumed, bytes);
  if (last || c.run_short || consumed < c.run_size) {
    // The visit is over (the ring had no more, drain is done, a callback threw or a lossy view was
    // overwritten): what it consumed is free now, also short of a quarter ring (one store a visit).
    reader.publish_cursor_idle();
    c.visiting = nullptr;
  } else {
    reader.publish_cursor();  // every quarter ring, as release() does for a Sample
  }
}

std::size_t Subscriber::drain(std::size_t max, DrainCallback on_message, void* context) {
  return drain(max, [on_message, context](const SampleView& v) { on_message(context, v); });
}

bool Subscriber::has_data() {
  shm::SlotHeader* slot = nullptr;
  return core_->find_ready(&slot) != nullptr;
}

Sample Subscriber::take(std::chrono::nanoseconds timeout) {
  if (Sample s = try_take()) return s;
  const auto start = std::chrono::steady_clock::now();
  const auto deadline = shm::deadline_after(start, timeout);
  const auto spin_until =
      shm::deadline_after(start, std::min<std::chrono::nanoseconds>(timeout, core_->options.spin));
  // Read the clock every few polls only: on a VM a clock read costs as much as a poll. No spin: sleep at
  // once.
  for (unsigned polls = 1;
       core_->options.spin.count() > 0 && (polls % 16 != 0 || std::chrono::steady_clock::now() < spin_until);
       ++polls) {
    if (Sample s = try_take()) return s;
  }
  shm::TopicHeader* h = core_->topic.header();
  shm::SleepFence fence;
  for (;;) {
    if (closed()) return {};
    // No time left (take(0), say): one last look, without the sleep protocol and its membarrier.
    const auto now = std::chrono::steady_clock::now();
    if (now >= deadline) return try_take();
    if (core_->held >= core_->options.max_held_samples) {
      // Nothing can be taken until a sample is released (or a freed ring stops counting its samples, which
      // try_take checks): armed, every commit would wake us in vain, at a futex wake and, from the second
      // sleep on, a membarrier per commit. Wait unarmed instead.
      std::this_thread::sleep_for(
          std::min<std::chrono::nanoseconds>(deadline - now, std::chrono::milliseconds(10)));
      if (Sample s = try_take()) return s;
      continue;
    }
    h = core_->topic.header();  // a reshaped topic was re-opened in another segment
    // Dekker with the writer's commit then load of sleepers and of the armed word: either it sees us sleeping
    // and wakes us, or our re-check below sees its message (seq_cst increment and arming, then the fence; the
    // first sleep goes unfenced and short, see shm/sleep_fence.h).
    core_->count_as_sleeper();                    // once: the count stays after we return
    const uint32_t word = shm::arm_wake_word(h);  // the value we sleep on
    core_->sleeping = true;                       // the mapping must stay until the sleep is over
    // Capped also when fenced, so that a publisher ring handed out meanwhile is noticed (its epoch bump wakes
    // nobody).
    const std::chrono::nanoseconds cap = fence.before_sleep(std::chrono::milliseconds(200));
    Sample s = try_take();
    if (!s) {
      const auto left = deadline - std::chrono::steady_clock::now();
      if (left > std::chrono::nanoseconds::zero()) {
        // A reshape that landed after our last look and before we armed bumps this segment's word no more:
        // its messages go to the new segment, which we follow once not sleeping. Sleep 1 ms at most then.
        // relaxed: a flag; the re-open reads what it needs through the daemon.
        const bool moved = h->closed.load(std::memory_order_relaxed) != shm::kTopicOpen;
        const auto sleep = std::min<std::chrono::nanoseconds>(
            left, moved ? std::chrono::nanoseconds(std::chrono::milliseconds(1)) : cap);
        if (!shm::futex_wait(&h->wake_word, word, sleep)) {
          // Slept the whole time (to the cap or the deadline): a message there now was not woken for.
          s = try_take();
          if (s) core_->count_late_wakeup();
        }
      }
    }
    core_->sleeping = false;
    if (s) return s;
    if (std::chrono::steady_clock::now() >= deadline) return try_take();
    if (Sample again = try_take()) return again;
  }
}

const std::string& Subscriber::topic() const {
  return core_->topic.topic;
}
std::size_t Subscriber::max_message_size() const {
  return core_->topic.geometry.max_message_size;
}
uint64_t Subscriber::taken() const {
  return core_->taken;
}
uint64_t Subscriber::dropped() const {
  return core_->dropped;
}
uint64_t Subscriber::late_wakeups() const {
  return core_->late_wakeups;
}
bool Subscriber::closed() const {
  // relaxed: a flag set once by the daemon at shutdown; nothing else is read through it.
  return core_->topic.header()->closed.load(std::memory_order_relaxed) == shm::kTopicClosed;
}

}  // namespace shmbus

#include "daemon/queue_registry.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <spdlog/spdlog.h>
#include <toml++/toml.h>
#include <algorithm>
#include <array>
#include <cerrno>
#include <charconv>
#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "bus/control_protocol.h"
#include "bus/runtime_paths.h"
#include "shmbus/topic_pattern.h"

namespace shmbus::daemon {

using namespace shmbus::detail;

namespace {

constexpr uint64_t kMetricsWindowNs = 10'000'000'000ull;  // the sliding window of the queueing metrics
// The memory a response queue may take.
constexpr uint64_t kMaxReplyQueueBytes = 256ull << 20;
constexpr uint64_t kSampleEveryNs = 250'000'000ull;
// How long the daemon waits for a queue's lock that a live participant holds. Its one thread serves every
// participant, so a holder that stalls (or means harm) costs it at most this per queue and tick; what it
// could not do is retried at the next tick.
constexpr auto kDaemonLockTimeout = std::chrono::milliseconds(10);
// The same for answering a call whose server died (fail_calls), which is not retried.
constexpr auto kFailCallLockTimeout = std::chrono::milliseconds(200);
// An adopted queue is not retired as unused (no endpoint, empty) before this: its users re-claim their
// roles at their next operation on it, or within 100 ms while they wait on it. One idle for longer finds it
// closed if it was also empty, and opens it again.
constexpr uint64_t kAdoptedGraceNs = 60'000'000'000ull;
// Queue ids stay below this: an id read from shared memory or a durable file (which users can write) must
// not run the counter up to wrap around onto live queues.
constexpr uint32_t kMaxQueueId = 1u << 30;
// Handles of one role on one queue one participant may re-claim (each Bus handle is one).
constexpr uint32_t kMaxReclaimedHandles = 1024;
// reply_owner of an adopted response queue its client has not re-claimed yet.
constexpr uint64_t kUnclaimedReplyOwner = ~0ull;

std::string read_boot_id() {
  std::ifstream in("/proc/sys/kernel/random/boot_id");
  std::string id;
  std::getline(in, id);
  return id;
}

bool process_alive(pid_t pid) {
  return pid > 0 && (kill(pid, 0) == 0 || errno == EPERM);
}

// A queue's segment is "<instance prefix>q<id>", a client's response queue "...q<id>.reply.<pid>": only the
// daemon names segments, so after a crash the name, not the header any user can write, says which queue it
// is and which process a response queue belongs to.
std::string queue_segment_suffix(uint32_t id, pid_t reply_pid) {
  return std::to_string(id) + (reply_pid > 0 ? ".reply." + std::to_string(reply_pid) : "");
}

// The pid in a response queue's name, "reply/<pid>" (made by the daemon).
pid_t reply_pid_of(const std::string& name) {
  const auto slash = name.find('/');
  return slash == std::string::npos ? 0 : static_cast<pid_t>(std::atoi(name.c_str() + slash + 1));
}

// Parses a decimal number that is all of `text` (no sign, no leading zero) and within 1..max.
bool parse_decimal(std::string_view text, uint64_t max, uint64_t* out) {
  uint64_t n = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), n);
  if (ec != std::errc() || end != text.data() + text.size() || text.empty() || text[0] == '0' || n == 0 ||
      n > max)
    return false;
  *out = n;
  return true;
}

// Parses a suffix queue_segment_suffix() made; false if it is not one (or its id is beyond kMaxQueueId).
bool parse_queue_segment_suffix(std::string_view suffix, uint32_t* id, pid_t* reply_pid) {
  const auto dot = suffix.find('.');
  uint64_t n = 0, pid = 0;
  if (!parse_decimal(suffix.substr(0, dot), kMaxQueueId, &n)) return false;
  if (dot != std::string_view::npos) {
    const std::string_view rest = suffix.substr(dot);
    if (rest.substr(0, 7) != ".reply." || !parse_decimal(rest.substr(7), INT32_MAX, &pid)) return false;
  }
  *id = static_cast<uint32_t>(n);
  *reply_pid = static_cast<pid_t>(pid);
  return true;
}

// '/' cannot be in a file name and '%' cannot be in a queue name, so this encoding is unambiguous.
std::string file_name_of(const std::string& key) {
  std::string out;
  for (char c : key) {
    if (c == '/') {
      out += "%2F";
    } else if (c == ':') {
      out += "%3A";
    } else {
      out += c;
    }
  }
  return out + ".queue";
}

bool is_service_role(uint32_t role) {
  return role == kServiceClient || role == kServiceServer;
}
bool consumes(uint32_t role) {
  return role == kQueueConsumer || role == kServiceServer;
}

std::string describe(const QueueSettings& s) {
  auto field = [](const char* name, const auto& v) {
    return v ? std::string(name) + "=" + std::to_string(static_cast<uint64_t>(*v)) + " " : std::string();
  };
  std::string text = field("capacity", s.capacity) + field("max_message_size", s.max_message_size) +
                     field("max_deliveries", s.max_deliveries) + field("durable", s.durable);
  if (!text.empty()) text.pop_back();
  return "{" + text + "}";
}

}  // namespace

struct QueueRegistry::Queue {
  uint32_t id = 0;
  std::string key;   // "queue:<name>", "service:<name>" or "reply:<n>"
  std::string name;  // as users named it
  uint32_t flags = 0;
  QueueSettings settings;  // effective
  shm::Segment segment;    // non-durable
  shm::MappedFile file;    // durable
  std::optional<shm::WorkQueue> queue;
  uint64_t reply_owner = 0;  // reply queues: the participant that owns it
  pid_t reply_pid = 0;       // response queues: the process that created it (in its segment's name)
  // Adopted from a crashed daemon (or recovered from a durable file) at adopted_ns: its users are unknown
  // until they re-claim their roles, which only such a queue accepts, so it is not retired as unused before
  // kAdoptedGraceNs has passed.
  bool adopted = false;
  uint64_t adopted_ns = 0;
  std::map<uint64_t, std::vector<uint32_t>> endpoints;  // participant -> roles held
  std::map<uint64_t, pid_t> pids;                       // participant -> pid
  uint64_t last_sync_ns = 0;
  std::deque<shm::QueueSnapshot> samples;  // metrics window, oldest first
  shm::RecoveryReport recovery;

  bool durable() const { return flags & shm::kQueueDurable; }
  int duplicate_fd() const { return durable() ? file.duplicate_fd() : segment.duplicate_fd(); }
  std::size_t attached() const {
    std::size_t n = 0;
    for (const auto& [peer, roles] : endpoints) n += roles.size();
    return n;
  }
  uint32_t consumer_count() const {
    uint32_t n = 0;
    for (const auto& [peer, roles] : endpoints) n += std::count_if(roles.begin(), roles.end(), consumes);
    return n;
  }
};

QueueRegistry::QueueRegistry(std::string instance, const DaemonConfig& config)
    : instance_(std::move(instance)), config_(config), boot_id_(read_boot_id()) {}

QueueRegistry::~QueueRegistry() {
  shutdown();
}

std::string QueueRegistry::durable_dir() const {
  std::string base = config_.data_dir;
  if (base.empty()) {
    const char* env = std::getenv("SHMBUS_DATA_DIR");
    base = env && *env ? env : "/var/lib/shmbus";
  }
  return base + "/" + instance_;
}

const QueueRule* QueueRegistry::rule_for(const std::string& name) const {
  for (const QueueRule& rule : config_.queues) {
    if (topic_matches(rule.pattern, name)) return &rule;
  }
  return nullptr;
}

Status QueueRegistry::authorize(const std::string& name, uint32_t role, const Peer& peer) const {
  const bool sends = role == kQueueProducer || role == kServiceClient;
  const QueueRule* rule = rule_for(name);
  const std::optional<AllowList>* list = nullptr;
  if (rule) list = sends ? &rule->access.publish : &rule->access.subscribe;
  if (list == nullptr || !list->has_value()) {
    list = sends ? &config_.default_access.publish : &config_.default_access.subscribe;
  }
  const AllowList allow = list->has_value() ? **list : default_allow_list();
  if (allowed(allow, peer.uid, peer.gid, peer.groups)) return Status::Ok();
  const char* what = sends ? "send to" : "receive from";
  spdlog::warn("denied: pid {} uid {} gid {} ({}) may not {} queue {}", peer.pid, peer.uid, peer.gid,
               peer.name, what, name);
  return {Errc::kPermissionDenied, "uid " + std::to_string(peer.uid) + " may not " + what + " queue " + name};
}

Status QueueRegistry::create_memory(Queue& q, const QueueSettings& s) {
  const shm::WorkQueueGeometry g{*s.capacity, *s.max_message_size, *s.max_deliveries, q.flags};
  const std::size_t bytes = shm::work_queue_bytes(g);
  if (bytes == 0) return {Errc::kInvalidArgument, "impossible queue settings " + describe(s)};
  try {
    if (q.durable()) {
      const std::string dir = durable_dir();
      std::error_code ec;
      std::filesystem::create_directories(dir, ec);
      const std::string path = dir + "/" + file_name_of(q.key);
      std::size_t previous = 0;
      const long long existing = shm::MappedFile::file_size(path);
      if (existing > 0) {
        // An existing file keeps its own geometry (it holds messages); map it at its recorded size.
        q.file = shm::MappedFile::open(path, std::max<std::size_t>(static_cast<std::size_t>(existing), 4096),
                                       &previous);
        std::string why;
        auto view = shm::WorkQueue::attach(q.file.data(), q.file.size(), &why);
        if (!view) {
          // A truncated file: grow it back to the size its header records, keeping the intact prefix.
          const auto* h = reinterpret_cast<const shm::WorkQueueHeader*>(q.file.data());
          const shm::WorkQueueGeometry recorded{h->capacity, h->max_message_size, h->max_deliveries,
                                                h->flags};
          const std::size_t need = h->magic == shm::kWorkQueueMagic ? shm::work_queue_bytes(recorded) : 0;
          if (need != 0 && need == h->total_size && need > q.file.size()) {
            spdlog::error("durable queue {}: file truncated to {} of {} bytes; recovering the intact prefix",
                          q.name, q.file.size(), need);
            q.file = shm::MappedFile::open(path, need, &previous);
            view = shm::WorkQueue::attach(q.file.data(), q.file.size(), &why);
          }
        }
        if (!view) {
          const std::string aside = path + ".corrupt";
          spdlog::error("durable queue {}: {} is unusable ({}); moved to {} and started empty", q.name, path,
                        why, aside);
          q.file = {};
          std::filesystem::rename(path, aside, ec);
        } else {
          q.queue = *view;
          q.queue->set_lock_timeout(kDaemonLockTimeout);
          auto* h = view->header();
          q.flags = h->flags;
          q.settings.capacity = h->capacity;
          q.settings.max_message_size = h->max_message_size;
          q.settings.max_deliveries = h->max_deliveries;
          // Recovered at start-up, a queue keeps the id it had (its users re-claim their roles by it), unless
          // a queue of this start already has that id.
          if (adopting_ && h->queue_id != 0 && h->queue_id < kMaxQueueId && !queues_.count(h->queue_id))
            q.id = h->queue_id;
          h->queue_id = q.id;
          const bool new_boot = std::string(h->boot_id, strnlen(h->boot_id, sizeof h->boot_id)) != boot_id_;
          q.recovery = view->recover(new_boot, boot_id_);
          spdlog::info(
              "durable queue {} recovered from {}: {} message(s) kept, {} requeued, {} corrupt dropped{}",
              q.name, path, q.recovery.recovered, q.recovery.requeued, q.recovery.corrupt,
              new_boot ? " (new boot)" : "");
          if (q.recovery.corrupt) {
            spdlog::error("durable queue {}: {} corrupt message(s) dropped (checksum or size)", q.name,
                          q.recovery.corrupt);
          }
          return Status::Ok();
        }
      }
      q.file = shm::MappedFile::open(path, bytes, &previous);
      std::memset(q.file.data(), 0, q.file.size());
      shm::WorkQueue::initialize(q.file.data(), bytes, g, q.id, q.name, boot_id_);
    } else {
      q.segment = shm::Segment::create(
          segment_prefix(instance_) + "q" + queue_segment_suffix(q.id, q.reply_pid), bytes, 0600);
      shm::WorkQueue::initialize(q.segment.data(), bytes, g, q.id, q.name, boot_id_);
    }
  } catch (const std::exception& e) {
    return {Errc::kExhausted, "queue " + q.name + ": cannot create its memory: " + e.what()};
  }
  std::string why;
  auto view = q.durable() ? shm::WorkQueue::attach(q.file.data(), q.file.size(), &why)
                          : shm::WorkQueue::attach(q.segment.data(), q.segment.size(), &why);
  if (!view) return {Errc::kInternal, "new queue does not validate: " + why};
  q.queue = *view;
  q.queue->set_lock_timeout(kDaemonLockTimeout);
  return Status::Ok();
}

Result<QueueRegistry::Queue*> QueueRegistry::find_or_create(const std::string& key, const std::string& name,
                                                            uint32_t kind, const QueueSettings& requested) {
  const QueueRule* rule = rule_for(name);
  if (auto it = by_key_.find(key); it != by_key_.end()) {
    Queue& q = *queues_.at(it->second);
    const QueueSettings& have = q.settings;
    const bool clash = (requested.capacity && *requested.capacity != *have.capacity) ||
                       (requested.max_message_size && *requested.max_message_size > *have.max_message_size) ||
                       (requested.max_deliveries && *requested.max_deliveries != *have.max_deliveries) ||
                       (requested.durable && *requested.durable != q.durable());
    if (clash) {
      return Status{Errc::kIncompatibleSettings, "queue " + name + " exists with " + describe(have) +
                                                     "; requested " + describe(requested)};
    }
    return &q;
  }
  if (queues_.size() >= config_.max_queues) {
    return Status{Errc::kExhausted,
                  "too many queues (max_queues = " + std::to_string(config_.max_queues) + ")"};
  }
  QueueSettings s = config_.queue_defaults;
  auto take = [](auto& field, const auto& from) {
    if (from) field = from;
  };
  take(s.capacity, requested.capacity);
  take(s.max_message_size, requested.max_message_size);
  take(s.max_deliveries, requested.max_deliveries);
  take(s.durable, requested.durable);
  take(s.sync, requested.sync);
  take(s.sync_interval_ms, requested.sync_interval_ms);
  if (rule) {  // the configuration's fields win over the request's
    take(s.capacity, rule->settings.capacity);
    take(s.max_message_size, rule->settings.max_message_size);
    take(s.max_deliveries, rule->settings.max_deliveries);
    take(s.durable, rule->settings.durable);
    take(s.sync, rule->settings.sync);
    take(s.sync_interval_ms, rule->settings.sync_interval_ms);
  }
  if (*s.capacity == 0 || *s.capacity > shm::kMaxQueueCapacity) {
    return Status{Errc::kInvalidArgument,
                  "queue capacity must be 1.." + std::to_string(shm::kMaxQueueCapacity)};
  }
  if (*s.max_message_size == 0 || *s.max_message_size > shm::kMaxQueueMessageSize) {
    return Status{Errc::kInvalidArgument,
                  "queue max_message_size must be 1.." + std::to_string(shm::kMaxQueueMessageSize)};
  }
  if (*s.max_deliveries == 0 || *s.max_deliveries > 1'000'000) {
    return Status{Errc::kInvalidArgument, "queue max_deliveries must be 1..1000000"};
  }
  if (*s.sync_interval_ms == 0) return Status{Errc::kInvalidArgument, "sync_interval_ms must be at least 1"};
  auto q = std::make_unique<Queue>();
  while (next_id_ == 0 || next_id_ >= kMaxQueueId || queues_.count(next_id_)) {
    next_id_ = next_id_ == 0 || next_id_ >= kMaxQueueId ? 1 : next_id_ + 1;
  }
  q->id = next_id_++;
  q->key = key;
  q->name = name;
  q->flags = kind | (*s.durable && kind != shm::kQueueReply ? shm::kQueueDurable : 0);
  q->settings = s;
  if (kind == shm::kQueueReply) q->reply_pid = reply_pid_of(name);  // names the segment (create_memory)
  if (Status st = create_memory(*q, s); !st.ok()) return st;
  next_id_ = std::max(next_id_, q->id + 1);  // a recovered durable queue may keep a higher id
  q->settings.durable = q->durable();
  q->queue->header()->sync_policy = static_cast<uint32_t>(*q->settings.sync);
  Queue* raw = q.get();
  by_key_[key] = q->id;
  queues_[q->id] = std::move(q);
  spdlog::info("queue {} created (id {}, {}{})", name, raw->id, describe(raw->settings),
               raw->durable() ? ", durable" : "");
  return raw;
}

Result<QueueAttached> QueueRegistry::open(const std::string& name, const QueueSettings& requested,
                                          uint32_t role, uint32_t queue_id, const Peer& peer) {
  Queue* q = nullptr;
  if (role == kReplyWriter) {
    auto it = queues_.find(queue_id);
    if (it == queues_.end() || !(it->second->flags & shm::kQueueReply)) {
      return Status{Errc::kInvalidArgument,
                    "no response queue " + std::to_string(queue_id) + " (its client is gone)"};
    }
    // Only a server of a service whose client owns the queue: a server of another service must not read,
    // forge or fill responses meant for someone else. Adopted after a crash, the owner is known once the
    // client re-claims the queue (within 100 ms while it waits for a response): the server retries.
    const uint64_t owner = it->second->reply_owner;
    if (owner == kUnclaimedReplyOwner) {
      return Status{Errc::kTimeout, "response queue " + std::to_string(queue_id) +
                                        " is not re-claimed by its client yet (shmbusd restarted)"};
    }
    auto has = [](const Queue& queue, uint64_t who, uint32_t r) {
      auto e = queue.endpoints.find(who);
      return e != queue.endpoints.end() &&
             std::find(e->second.begin(), e->second.end(), r) != e->second.end();
    };
    bool serves = false;
    for (const auto& [id, other] : queues_) {
      if (has(*other, peer.id, kServiceServer) && has(*other, owner, kServiceClient)) serves = true;
    }
    if (!serves) {
      return Status{Errc::kPermissionDenied,
                    "only a server of a service the client calls may open its response queue"};
    }
    q = it->second.get();
  } else if (role == kReplyOwner) {
    // Any local user may connect: one participant may own at most half of max_queues as response queues (one
    // per Client), each of bounded memory, so that it cannot take every queue or /dev/shm from the others.
    const auto owned = std::count_if(queues_.begin(), queues_.end(),
                                     [&](const auto& e) { return e.second->reply_owner == peer.id; });
    const std::size_t limit = std::max<std::size_t>(1, config_.max_queues / 2);
    if (static_cast<std::size_t>(owned) >= limit) {
      return Status{Errc::kExhausted, "a participant owns at most " + std::to_string(limit) +
                                          " response queues (half of max_queues): one per Client"};
    }
    QueueSettings s = requested;
    s.durable = false;
    const uint64_t bytes =
        uint64_t{s.capacity.value_or(config_.queue_defaults.capacity.value_or(256))} *
        (uint64_t{s.max_message_size.value_or(config_.queue_defaults.max_message_size.value_or(4096))} + 128);
    if (bytes > kMaxReplyQueueBytes) {
      return Status{Errc::kInvalidArgument, "a response queue holds at most " +
                                                std::to_string(kMaxReplyQueueBytes >> 20) +
                                                " MiB (response_capacity x max_response_size)"};
    }
    auto found = find_or_create("reply:" + std::to_string(next_reply_++), "reply/" + std::to_string(peer.pid),
                                shm::kQueueReply, s);
    if (!found) return found.status();
    q = found.value();
    q->reply_owner = peer.id;
  } else if (role >= kQueueProducer && role <= kServiceServer) {
    if (Status s = authorize(name, role == kQueueInspector ? kQueueConsumer : role, peer); !s.ok()) return s;
    const bool service = is_service_role(role);
    auto found = find_or_create((service ? "service:" : "queue:") + name, name,
                                service ? shm::kQueueService : 0, requested);
    if (!found) return found.status();
    q = found.value();
  } else {
    return Status{Errc::kProtocolError, "unknown queue role " + std::to_string(role)};
  }
  const int fd = q->duplicate_fd();
  if (fd < 0) {
    const int err = errno;
    if (err == EMFILE || err == ENFILE) {
      return Status{Errc::kExhausted,
                    "queue " + q->name + ": shmbusd is out of file descriptors (" + std::strerror(err) + ")"};
    }
    return Status{Errc::kInternal,
                  "cannot duplicate the queue's descriptor: " + std::string(std::strerror(err))};
  }
  q->endpoints[peer.id].push_back(role);
  q->pids[peer.id] = peer.pid;
  // relaxed: a statistic for `shmbus stats` and the queueing metrics; nothing is ordered by it.
  q->queue->header()->consumers.store(q->consumer_count(), std::memory_order_relaxed);
  return QueueAttached{q->id, fd};
}

void QueueRegistry::close(uint32_t queue_id, uint32_t role, const Peer& peer) {
  auto it = queues_.find(queue_id);
  if (it == queues_.end()) return;
  Queue& q = *it->second;
  // A response queue goes with its Client, also one its client had not re-claimed after a daemon crash.
  if (role == kReplyOwner && q.reply_owner == kUnclaimedReplyOwner && q.reply_pid == peer.pid) {
    remove(queue_id);
    return;
  }
  auto e = q.endpoints.find(peer.id);
  if (e == q.endpoints.end()) return;
  auto r = std::find(e->second.begin(), e->second.end(), role);
  if (r != e->second.end()) e->second.erase(r);
  if (e->second.empty()) q.endpoints.erase(e);
  q.queue->header()->consumers.store(q.consumer_count(), std::memory_order_relaxed);
  if (role == kReplyOwner && q.reply_owner == peer.id) remove(queue_id);
}

// Takes back what `pid` holds in `q` unless another live participant of the same process still uses the
// queue (ownership is per process).
void QueueRegistry::release_dead_holders(Queue& q, pid_t pid, bool only_if_dead) {
  if (only_if_dead && process_alive(pid)) return;
  const bool service = q.flags & shm::kQueueService;
  auto taken = q.queue->release_owner(pid, /*requeue=*/!service);
  if (!taken.empty()) {
    spdlog::warn("service {}: server pid {} died holding {} request(s); failing those calls", q.name, pid,
                 taken.size());
    fail_calls(taken, "the server (pid " + std::to_string(pid) + ") died while handling the request");
  }
}

void QueueRegistry::fail_calls(const std::vector<shm::DeliveredEntry>& calls, const std::string& why) {
  for (const shm::DeliveredEntry& call : calls) {
    auto it = queues_.find(call.reply_queue);
    if (it == queues_.end() || !(it->second->flags & shm::kQueueReply)) continue;  // the client is gone too
    // A view of its own, with a longer lock deadline than the daemon's 10 ms: this answer is not retried at
    // a later tick, and without it the call waits out its whole deadline.
    shm::WorkQueue reply = *it->second->queue;
    reply.set_lock_timeout(kFailCallLockTimeout);
    shm::ClaimedEntry claimed;
    if (const shm::QueueOp op = reply.reserve(getpid(), &claimed); op != shm::QueueOp::kOk) {
      spdlog::warn("cannot fail call {}: its client's response queue is {}", call.correlation,
                   op == shm::QueueOp::kFull ? "full" : "locked or closed");
      continue;
    }
    const auto size = static_cast<uint32_t>(std::min<std::size_t>(why.size(), claimed.capacity));
    std::memcpy(claimed.payload, why.data(), size);
    const shm::QueueOp op = reply.commit(claimed, getpid(),
                                         {.size = size,
                                          .correlation = call.correlation,
                                          .flags = shm::kEntryErrorResponse,
                                          .status_code = static_cast<int32_t>(Errc::kServerDied)});
    if (op != shm::QueueOp::kOk && op != shm::QueueOp::kClosed) {
      reply.abandon(claimed, getpid());  // not left WRITING under our (live) pid for good
      spdlog::warn("cannot fail call {}: its client's response queue stayed locked", call.correlation);
    }
  }
}

void QueueRegistry::peer_gone(const Peer& peer) {
  std::vector<uint32_t> owned_replies;
  for (auto& [id, q] : queues_) {
    if (q->reply_owner == peer.id) owned_replies.push_back(id);
    if (q->endpoints.erase(peer.id) == 0) continue;
    q->pids.erase(peer.id);
    q->queue->header()->consumers.store(q->consumer_count(), std::memory_order_relaxed);
    q->queue->reset_sleepers();  // it may have died asleep on the queue, its count still in
    bool same_process_still_here = false;
    for (const auto& [other, pid] : q->pids) same_process_still_here |= pid == peer.pid;
    if (!same_process_still_here) release_dead_holders(*q, peer.pid, /*only_if_dead=*/false);
  }
  for (uint32_t id : owned_replies) remove(id);
}

void QueueRegistry::remove(uint32_t queue_id) {
  auto it = queues_.find(queue_id);
  if (it == queues_.end()) return;
  Queue& q = *it->second;
  q.queue->close();
  if (!q.durable() && q.segment.valid()) shm::Segment::remove(q.segment.name());
  by_key_.erase(q.key);
  queues_.erase(it);
}

void QueueRegistry::adopt() {
  // Shared-memory queues of a crashed predecessor: clients may still be using them.
  const std::string prefix = segment_prefix(instance_) + "q";
  adopting_ = true;
  struct Done {
    bool* flag;
    ~Done() { *flag = false; }
  } done{&adopting_};
  for (const std::string& segment_name : shm::Segment::list(prefix)) {
    try {
      uint32_t named_id = 0;
      pid_t reply_pid = 0;
      if (!parse_queue_segment_suffix(segment_name.substr(prefix.size()), &named_id, &reply_pid))
        throw std::runtime_error("not a queue segment's name");
      auto q = std::make_unique<Queue>();
      q->segment = shm::Segment::open(segment_name);
      std::string why;
      auto view = shm::WorkQueue::attach(q->segment.data(), q->segment.size(), &why);
      if (!view) throw std::runtime_error(why);
      auto* h = view->header();
      q->queue = *view;
      q->queue->set_lock_timeout(kDaemonLockTimeout);
      q->id = h->queue_id;
      q->flags = h->flags;
      q->name = std::string(h->name, strnlen(h->name, sizeof h->name));
      // The name, which only the daemon gives, must agree with the header, which any user can rewrite: else
      // the queue could pass itself off as another (whose id clients and servers still hold), or as some
      // process's response queue. Closed first: its users get kClosed, not a queue no daemon serves.
      const bool reply = q->flags & shm::kQueueReply;
      if (q->id != named_id || reply != (reply_pid != 0) ||
          (reply && q->name != "reply/" + std::to_string(reply_pid))) {
        q->queue->close();
        throw std::runtime_error("its header (id " + std::to_string(q->id) + ", " + q->name +
                                 ") does not match its name");
      }
      if (reply) {
        // Its client may still wait on it and servers answer into it: kept for the process that made it to
        // re-claim, or removed once that process is gone (tick()).
        q->reply_pid = reply_pid;
        if (!process_alive(reply_pid)) {
          q->queue->close();  // a server that survived must not keep answering into it
          throw std::runtime_error("a response queue of a gone client");
        }
        q->reply_owner = kUnclaimedReplyOwner;
        q->key = "reply:" + std::to_string(next_reply_++);
      } else {
        q->key = ((q->flags & shm::kQueueService) ? "service:" : "queue:") + q->name;
      }
      if (queues_.count(q->id) || by_key_.count(q->key)) throw std::runtime_error("duplicate queue");
      next_id_ = std::max(next_id_, q->id + 1);
      q->settings = config_.queue_defaults;
      q->settings.capacity = h->capacity;
      q->settings.max_message_size = h->max_message_size;
      q->settings.max_deliveries = h->max_deliveries;
      q->settings.durable = false;
      q->recovery = view->recover(false, boot_id_);
      q->adopted = true;
      q->adopted_ns = shm::steady_now_ns();
      // relaxed: statistics and a hint; nothing is read through them. The consumers counted by the dead
      // daemon are counted again as they re-claim; the epoch tells its users that the daemon changed
      // (QueueAttachment::follow_daemon).
      h->consumers.store(0, std::memory_order_relaxed);
      spdlog::warn("adopted queue {} of a crashed daemon ({} ready)", q->name, h->ready.load());
      by_key_[q->key] = q->id;
      queues_[q->id] = std::move(q);
    } catch (const std::exception& e) {
      spdlog::warn("removing stale queue segment {}: {}", segment_name, e.what());
      shm::Segment::remove(segment_name);
    }
  }
  // Durable queues: every file of this instance, recovered now so its messages are served at once.
  std::error_code ec;
  for (const auto& file : std::filesystem::directory_iterator(durable_dir(), ec)) {
    if (file.path().extension() != ".queue") continue;
    std::string key = file.path().stem().string();
    for (auto [from, to] : {std::pair{"%2F", "/"}, std::pair{"%3A", ":"}}) {
      for (std::size_t at; (at = key.find(from)) != std::string::npos;) key.replace(at, 3, to);
    }
    const auto colon = key.find(':');
    if (colon == std::string::npos || by_key_.count(key)) continue;
    const bool service = key.substr(0, colon) == "service";
    auto found = find_or_create(key, key.substr(colon + 1), service ? shm::kQueueService : 0,
                                QueueSettings{.durable = true});
    if (!found) {
      spdlog::error("cannot recover durable queue {}: {}", key, found.status().message());
      continue;
    }
    // Its users (if it was open when the predecessor died) map the same file: they re-claim their roles.
    found.value()->adopted = true;
    found.value()->adopted_ns = shm::steady_now_ns();
  }
}

void QueueRegistry::announce() {
  for (auto& [id, q] : queues_) {
    // relaxed: a hint to its users that the daemon changed (QueueAttachment::follow_daemon); they reconnect
    // at once, which is why this comes only once the daemon listens.
    if (q->adopted) q->queue->header()->daemon_epoch.fetch_add(1, std::memory_order_relaxed);
  }
}

Status QueueRegistry::reclaim(uint32_t queue_id, const std::string& name, uint32_t role, uint32_t count,
                              const Peer& peer) {
  if (count == 0 || count > kMaxReclaimedHandles || (role == kReplyOwner && count != 1)) {
    return Status{Errc::kInvalidArgument, "cannot re-claim " + std::to_string(count) + " handles of a role"};
  }
  auto it = queues_.find(queue_id);
  // Only queues this daemon adopted, and by the name the client opened (ids are reused after a clean stop):
  // a role must land on the queue it was held on, never on another.
  if (it == queues_.end() || !it->second->adopted || (role != kReplyOwner && it->second->name != name)) {
    return Status{Errc::kInvalidArgument, "no queue " + name + " (id " + std::to_string(queue_id) +
                                              ") was adopted from the previous daemon"};
  }
  Queue& q = *it->second;
  if (role == kReplyOwner) {
    // Only the process that created it, and only once: another one would read that client's responses.
    if ((q.flags & shm::kQueueReply) && q.reply_owner == peer.id) return Status::Ok();  // a retried re-claim
    if (!(q.flags & shm::kQueueReply) || q.reply_owner != kUnclaimedReplyOwner || q.reply_pid != peer.pid) {
      return Status{Errc::kPermissionDenied, "response queue " + std::to_string(queue_id) +
                                                 " is not an unclaimed one of pid " +
                                                 std::to_string(peer.pid)};
    }
    q.reply_owner = peer.id;
  } else if (role >= kQueueProducer && role <= kServiceServer) {
    if ((q.flags & shm::kQueueReply) || is_service_role(role) != bool(q.flags & shm::kQueueService)) {
      return Status{Errc::kInvalidArgument, "queue " + q.name + " has no role " + std::to_string(role)};
    }
    if (Status s = authorize(q.name, role == kQueueInspector ? kQueueConsumer : role, peer); !s.ok())
      return s;
  } else {
    return Status{Errc::kInvalidArgument, "role " + std::to_string(role) + " is not re-claimed"};
  }
  std::vector<uint32_t>& roles = q.endpoints[peer.id];
  std::erase(roles, role);  // set, not added: a re-claim sent again does not count twice
  roles.insert(roles.end(), count, role);
  q.pids[peer.id] = peer.pid;
  // relaxed: a statistic (as in open()).
  q.queue->header()->consumers.store(q.consumer_count(), std::memory_order_relaxed);
  spdlog::debug("queue {}: pid {} re-claimed role {}", q.name, peer.pid, role);
  return Status::Ok();
}

namespace {

// Clears the boot id in the header of the durable queue file at `path` (if it is long enough to hold one),
// so that opening it recovers it as a file of an earlier boot.
void forget_boot(const std::string& path) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_CLOEXEC);
  if (fd < 0) return;
  const std::array<char, sizeof shm::WorkQueueHeader::boot_id> zeros{};
  struct stat st {};
  if (fstat(fd, &st) == 0 &&
      static_cast<std::size_t>(st.st_size) >= offsetof(shm::WorkQueueHeader, boot_id) + zeros.size()) {
    (void)pwrite(fd, zeros.data(), zeros.size(), static_cast<off_t>(offsetof(shm::WorkQueueHeader, boot_id)));
  }
  ::close(fd);
}

}  // namespace

bool QueueRegistry::retire_if_cut_short(Queue& q) {
  const bool durable = q.durable();
  const std::size_t size = durable ? q.file.size() : q.segment.size();
  const std::size_t now_size = durable ? q.file.current_size() : q.segment.current_size();
  if (now_size >= size && !(durable ? q.file.replaced() : q.segment.replaced())) return false;
  // A segment is grown back first, so that clients still mapping it stop faulting, then closed (remove()
  // closes it through our mapping, or, if that was replaced, the word goes into the memory itself). A durable
  // file is left as it is: opened again, it is recovered as after a crash, which keeps the entries it still
  // holds whole and counts the rest (recovered_corrupt); tick() does so at once, in a copy. Its clients read
  // the old one closed.
  bool restored = true;
  const std::size_t closed = offsetof(shm::WorkQueueHeader, closed);
  if (!durable) {
    restored = q.segment.restore_size();
    if (q.segment.replaced() && q.segment.current_size() >= closed + sizeof(uint32_t))
      q.segment.write_through(closed, 1);
  } else if (q.file.replaced() && q.file.current_size() >= closed + sizeof(uint32_t)) {
    q.file.write_through(closed, 1);  // our own mapping no longer shows the file: close it in the file
  }
  spdlog::error(
      "queue {}: a participant cut its {} {} short ({} of {} bytes){}; the queue is closed (calls on it "
      "fail with kClosed) until it is opened again{}",
      q.name, durable ? "file" : "segment", durable ? q.file.path() : q.segment.name(), now_size, size,
      restored ? "" : " and it could not be grown back",
      durable ? "; it is recovered from the entries its file still holds" : ", empty, on a new segment");
  ++cut_short_;
  return true;
}

void QueueRegistry::tick() {
  ++ticks_;
  const uint64_t now = shm::steady_now_ns();
  std::vector<uint32_t> cut;
  struct Reopen {
    std::string key, name, path;
    QueueSettings settings;  // effective: its sync policy stays what its users asked for
  };
  std::vector<Reopen> reopen;  // the durable ones
  for (auto& [id, qp] : queues_) {
    if (!retire_if_cut_short(*qp)) continue;
    cut.push_back(id);
    if (qp->durable()) reopen.push_back({qp->key, qp->name, qp->file.path(), qp->settings});
  }
  for (uint32_t id : cut) remove(id);
  // A durable queue comes back at once from what its file still holds, as at a restart (adopt()), but in a
  // copy: its clients keep mapping the cut file, which reads closed to them, while the copy is a new
  // incarnation nobody holds (as after a reboot: its lock is made anew, deliveries in flight return).
  for (const auto& [key, name, path, settings] : reopen) {
    std::error_code ec;
    const std::string cut_file = path + ".cut";
    std::filesystem::rename(path, cut_file, ec);
    if (!ec) {
      std::filesystem::copy_file(cut_file, path, ec);
      if (ec) {  // no copy (a full disk): the cut file is all there is, so it is recovered in place
        spdlog::error("queue {}: cannot copy {} ({}); recovering it in place", name, path, ec.message());
        std::filesystem::remove(path, ec);
        std::filesystem::rename(cut_file, path, ec);
      } else {
        forget_boot(path);
        std::filesystem::remove(cut_file, ec);
      }
    }
    const bool service = key.rfind("service:", 0) == 0;
    auto found = find_or_create(key, name, service ? shm::kQueueService : 0, settings);
    if (!found) spdlog::error("cannot recover durable queue {}: {}", key, found.status().message());
  }
  std::vector<uint32_t> unused;
  for (auto& [id, qp] : queues_) {
    Queue& q = *qp;
    q.queue->expire(now);
    if (ticks_ % 5 == 0) {
      // Holders that died without us noticing a disconnect (while a previous daemon was down, say).
      for (pid_t pid : q.queue->owners()) release_dead_holders(q, pid, /*only_if_dead=*/true);
    }
    if (q.durable() && q.settings.sync == SyncPolicy::kInterval &&
        now - q.last_sync_ns >= uint64_t{*q.settings.sync_interval_ms} * 1'000'000) {
      q.queue->persist_all();
      q.last_sync_ns = now;
    }
    if (q.samples.empty() || now - q.samples.back().taken_ns >= kSampleEveryNs) {
      q.samples.push_back(q.queue->snapshot());
      while (q.samples.size() > 2 && now - q.samples[1].taken_ns >= kMetricsWindowNs) q.samples.pop_front();
    }
    if (q.reply_owner == kUnclaimedReplyOwner) {
      // Kept while its client lives (it re-claims the queue at its next call); no use to anyone after.
      if (ticks_ % 5 == 0 && !process_alive(q.reply_pid)) unused.push_back(id);
      continue;
    }
    const shm::QueueSnapshot s = q.queue->snapshot();
    const bool in_grace = q.adopted && now - q.adopted_ns < kAdoptedGraceNs;
    if (!q.durable() && q.attached() == 0 && s.ready + s.in_flight + s.dead + s.writing == 0 && ticks_ > 10 &&
        !in_grace) {
      unused.push_back(id);
    }
  }
  for (uint32_t id : unused) remove(id);
}

void QueueRegistry::shutdown() {
  for (auto& [id, q] : queues_) {
    q->queue->close();
    if (q->durable()) {
      q->queue->persist_all();
    } else if (q->segment.valid()) {
      shm::Segment::remove(q->segment.name());
    }
  }
  queues_.clear();
  by_key_.clear();
}

void QueueRegistry::report(toml::table* doc) const {
  toml::array list;
  for (const auto& [id, qp] : queues_) {
    const Queue& q = *qp;
    const shm::QueueSnapshot now = q.queue->snapshot();
    const shm::QueueSnapshot& then = q.samples.empty() ? now : q.samples.front();
    const double dt = static_cast<double>(now.taken_ns - then.taken_ns) / 1e9;
    auto per = [](double num, double den) { return den > 0 ? num / den : 0.0; };
    const double lambda = per(static_cast<double>(now.enqueued - then.enqueued), dt);
    const double acked = static_cast<double>(now.acked - then.acked);
    const double delivered = static_cast<double>(now.delivered - then.delivered);
    const double service_s = per(static_cast<double>(now.service_ns - then.service_ns) / 1e9, acked);
    const double wait_s = per(static_cast<double>(now.wait_ns - then.wait_ns) / 1e9, delivered);
    const double sojourn_s = per(static_cast<double>(now.sojourn_ns - then.sojourn_ns) / 1e9, acked);
    const double span_ns = static_cast<double>(now.taken_ns - then.taken_ns);
    const double lq = per(static_cast<double>(now.ready_area - then.ready_area), span_ns);
    const double l =
        per(static_cast<double>(now.ready_area - then.ready_area + now.in_flight_area - then.in_flight_area),
            span_ns);
    const double servers = std::max<double>(1.0, now.consumers);
    const double little = lambda * wait_s;
    toml::table metrics{{"window_s", dt},
                        {"arrival_rate", lambda},
                        {"throughput", per(acked, dt)},
                        {"service_rate", per(1.0, service_s)},
                        {"utilisation", lambda * service_s / servers},
                        {"queue_length", lq},
                        {"in_system", l},
                        {"waiting_time_s", wait_s},
                        {"service_time_s", service_s},
                        {"sojourn_time_s", sojourn_s},
                        {"littles_law_lambda_w", little},
                        {"littles_law_error", per(std::abs(lq - little), std::max(lq, little))}};
    const char* kind = (q.flags & shm::kQueueService) ? "service"
                       : (q.flags & shm::kQueueReply) ? "reply"
                                                      : "work";
    list.push_back(toml::table{{"id", static_cast<int64_t>(q.id)},
                               {"name", q.name},
                               {"kind", kind},
                               {"durable", q.durable()},
                               {"capacity", static_cast<int64_t>(now.capacity)},
                               {"max_message_size", static_cast<int64_t>(*q.settings.max_message_size)},
                               {"max_deliveries", static_cast<int64_t>(*q.settings.max_deliveries)},
                               {"ready", static_cast<int64_t>(now.ready)},
                               {"in_flight", static_cast<int64_t>(now.in_flight)},
                               {"dead_letters", static_cast<int64_t>(now.dead)},
                               {"consumers", static_cast<int64_t>(now.consumers)},
                               {"endpoints", static_cast<int64_t>(q.attached())},
                               {"enqueued", static_cast<int64_t>(now.enqueued)},
                               {"delivered", static_cast<int64_t>(now.delivered)},
                               {"acked", static_cast<int64_t>(now.acked)},
                               {"rejected", static_cast<int64_t>(now.rejected)},
                               {"redelivered", static_cast<int64_t>(now.redelivered)},
                               {"expired", static_cast<int64_t>(now.expired)},
                               {"dead_lettered", static_cast<int64_t>(now.dead_lettered)},
                               {"corrupt", static_cast<int64_t>(now.corrupt)},
                               {"full", static_cast<int64_t>(now.full)},
                               {"recovered", static_cast<int64_t>(q.recovery.recovered)},
                               {"recovered_corrupt", static_cast<int64_t>(q.recovery.corrupt)},
                               {"metrics", std::move(metrics)}});
  }
  doc->insert("queue", std::move(list));
  // Queues closed because a participant cut their memory short (retire_if_cut_short).
  doc->insert("queues_cut_short", static_cast<int64_t>(cut_short_));
}

}  // namespace shmbus::daemon

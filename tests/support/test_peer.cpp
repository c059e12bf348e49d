// A bus participant for multi-process tests, driven by its arguments; reports on stdout as "key=value" words.
//
//   test_peer publish TOPIC COUNT SIZE lossless|lossy [WAIT_SUBSCRIBERS] [SEED]
//       publishes COUNT messages of SIZE bytes (index + a pattern derived from SEED and the index);
//       COUNT 0: in bursts of 100 per millisecond until SIGTERM; prints "published=N checksum=C".
//   test_peer subscribe TOPIC COUNT [IDLE_SECONDS] [SEED]
//   test_peer drain TOPIC COUNT [IDLE_SECONDS] [SEED]     as subscribe, receiving with Subscriber::drain
//       takes until COUNT messages arrived or nothing came for IDLE_SECONDS (default 20); checks that each
//       publisher's sequence rises and that each payload matches its pattern; prints
//       "ready" once attached, then "received=N checksum=C order_errors=E corrupt=K dropped=D"
//       (with SEED, received and checksum count only that publisher's messages, and gaps=G counts the
//       indices of that publisher it skipped).
//   test_peer hold TOPIC N          takes N messages, keeps holding them, prints "holding", sleeps.
//   test_peer publish_batch TOPIC COUNT SIZE lossless|lossy WAIT_SUBSCRIBERS SEED BATCH [MAX_MESSAGE_SIZE]
//       the same messages as publish, handed over BATCH at a time with Publisher::publish_batch, on a topic
//       whose messages may be MAX_MESSAGE_SIZE bytes (default SIZE; larger: small messages share slots).
//   test_peer loan TOPIC            a publisher that takes a loan, prints "loaned", sleeps (kill it
//   mid-loan). test_peer scribble TOPIC cursor|head
//       a hostile participant: attaches, then writes garbage into shared memory it can reach (its own cursor
//       far beyond the writer's head, or its own ring's head backwards and its slots' sizes out of range),
//       prints "scribbled", then keeps its connection open.
//   test_peer block TOPIC           a lossless publisher that publishes until a publish times out, prints
//                                   "blocked published=N", then keeps trying (blocked on the full ring).
// With SHMBUS_TEST_PEER_ANNOUNCE set, publish prints "publishing" once its first message is out.
#include <signal.h>
#include <unistd.h>

#include <atomic>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include "shm/topic_segment_layout.h"
#include "shmbus/bus.h"
#include "shmbus/wait_set.h"

namespace {

using namespace std::chrono_literals;

uint64_t mix(uint64_t x) {
  x ^= x >> 33;
  x *= 0xff51afd7ed558ccdULL;
  x ^= x >> 33;
  return x;
}

// The payload of message `index` from a publisher with `seed`: index, seed, then a pattern.
void fill(std::byte* p, std::size_t size, uint64_t seed, uint64_t index) {
  uint64_t header[2] = {index, seed};
  std::memcpy(p, header, std::min(size, sizeof header));
  for (std::size_t i = sizeof header; i < size; ++i)
    p[i] = static_cast<std::byte>(mix(seed ^ (index * 131 + i)));
}

bool check(const std::byte* p, std::size_t size) {
  if (size < 16) return true;
  uint64_t header[2];
  std::memcpy(header, p, sizeof header);
  for (std::size_t i = 16; i < size; i += 61) {
    if (p[i] != static_cast<std::byte>(mix(header[1] ^ (header[0] * 131 + i)))) return false;
  }
  return true;
}

uint64_t checksum(const std::byte* p, std::size_t size) {
  uint64_t h = 1469598103934665603ULL;
  for (std::size_t i = 0; i < size; ++i) h = (h ^ static_cast<uint8_t>(p[i])) * 1099511628211ULL;
  return h;
}

int fail(const shmbus::Status& s) {
  std::fprintf(stderr, "test_peer: %s\n", s.to_string().c_str());
  return 2;
}

std::atomic<bool> g_stop{false};
void request_stop(int) {
  g_stop.store(true);
}

[[noreturn]] void sleep_forever() {
  for (;;) std::this_thread::sleep_for(1h);
}

// Finds this process's mapping of the topic segment through /proc/self/maps (the descriptor came from the
// daemon, so the library does not expose it) and validates its header like any client.
std::byte* find_segment(shmbus::shm::TopicGeometry* g) {
  std::ifstream maps("/proc/self/maps");
  for (std::string line; std::getline(maps, line);) {
    if (line.find("/dev/shm/shmbus.") == std::string::npos) continue;
    const auto dash = line.find('-');
    auto* base = reinterpret_cast<std::byte*>(std::stoull(line.substr(0, dash), nullptr, 16));
    const auto end = std::stoull(line.substr(dash + 1, line.find(' ') - dash - 1), nullptr, 16);
    auto geometry = shmbus::shm::validate_topic_header(*shmbus::shm::topic_header(base),
                                                       end - reinterpret_cast<uintptr_t>(base), nullptr);
    if (geometry) {
      *g = *geometry;
      return base;
    }
  }
  return nullptr;
}

int scribble(shmbus::Bus& bus, const std::string& topic, const std::string& what) {
  namespace shm = shmbus::shm;
  auto sub = bus.subscriber(topic);
  auto pub = bus.publisher(topic);
  if (!sub || !pub) return fail(sub ? pub.status() : sub.status());
  (void)pub->publish(std::as_bytes(std::span("x", 1)));
  shm::TopicGeometry g;
  std::byte* base = find_segment(&g);
  if (!base) return fail({shmbus::Errc::kInternal, "segment mapping not found"});
  const auto me = static_cast<uint32_t>(getpid());
  for (uint32_t p = 0; p < g.max_publishers; ++p) {
    shm::PublisherSlot* ring = shm::publisher_slot(base, g, p);
    if (ring->state.load() != shm::kSlotActive) continue;
    if (what == "cursor") {
      for (uint32_t s = 0; s < g.max_subscribers; ++s) {
        if (shm::subscriber_slot(base, g, s)->pid != me) continue;
        shm::cursor(base, g, p, s)
            ->value.store(shm::make_cursor(ring->generation.load(), ring->head.load() + 1000));
      }
    } else if (ring->pid == me) {
      std::this_thread::sleep_for(300ms);  // let the daemon see the head once before it runs backwards
      for (uint64_t pos = 0; pos < g.depth; ++pos)
        shm::ring_slot(shm::ring_base(base, g, p), g, pos)->size = ~0u;
      ring->head.store(0);
    }
  }
  std::printf("scribbled\n");
  std::fflush(stdout);
  sleep_forever();
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 3) return 64;
  const std::string mode = argv[1], topic = argv[2];
  auto bus = shmbus::Bus::connect({.name = "test_peer-" + mode});
  if (!bus) return fail(bus.status());

  if (mode == "publish") {
    const uint64_t count = std::strtoull(argv[3], nullptr, 10);
    const std::size_t size = std::strtoull(argv[4], nullptr, 10);
    shmbus::PublisherOptions o;
    o.topic.policy = std::string(argv[5]) == "lossless" ? shmbus::Policy::kLossless : shmbus::Policy::kLossy;
    o.topic.max_message_size = static_cast<uint32_t>(std::max<std::size_t>(size, 16));
    o.full_timeout = 10s;
    const std::size_t wait_subscribers = argc > 6 ? std::strtoull(argv[6], nullptr, 10) : 0;
    const uint64_t seed = argc > 7 ? std::strtoull(argv[7], nullptr, 10) : static_cast<uint64_t>(getpid());
    auto pub = bus->publisher(topic, o);
    if (!pub) return fail(pub.status());
    while (pub->subscribers() < wait_subscribers) std::this_thread::sleep_for(1ms);
    uint64_t sum = 0;
    if (count == 0) signal(SIGTERM, request_stop);
    uint64_t i = 0;
    const bool announce = std::getenv("SHMBUS_TEST_PEER_ANNOUNCE") != nullptr;
    for (; count == 0 ? !g_stop.load() : i < count; ++i) {
      if (count == 0 && i % 100 == 0) std::this_thread::sleep_for(1ms);
      auto loan = pub->loan();
      if (!loan) return fail(loan.status());
      fill(loan->data(), size, seed, i);
      loan->set_size(size);
      sum += checksum(loan->data(), size);
      pub->publish(std::move(loan).value());
      if (announce && i == 0) {
        std::printf("publishing\n");
        std::fflush(stdout);
      }
    }
    std::printf("published=%llu checksum=%llu\n", (unsigned long long)i, (unsigned long long)sum);
    return 0;
  }
  if (mode == "publish_batch") {
    if (argc < 9) return 64;
    const uint64_t count = std::strtoull(argv[3], nullptr, 10);
    const std::size_t size = std::max<std::size_t>(16, std::strtoull(argv[4], nullptr, 10));
    shmbus::PublisherOptions o;
    o.topic.policy = std::string(argv[5]) == "lossless" ? shmbus::Policy::kLossless : shmbus::Policy::kLossy;
    o.topic.max_message_size = static_cast<uint32_t>(size);
    if (argc > 9) o.topic.max_message_size = static_cast<uint32_t>(std::strtoull(argv[9], nullptr, 10));
    o.full_timeout = 10s;
    const std::size_t wait_subscribers = std::strtoull(argv[6], nullptr, 10);
    const uint64_t seed = std::strtoull(argv[7], nullptr, 10);
    const std::size_t batch = std::max<std::size_t>(1, std::strtoull(argv[8], nullptr, 10));
    auto pub = bus->publisher(topic, o);
    if (!pub) return fail(pub.status());
    while (pub->subscribers() < wait_subscribers) std::this_thread::sleep_for(1ms);
    std::vector<std::byte> storage(batch * size);
    std::vector<std::span<const std::byte>> messages;
    uint64_t sum = 0, i = 0;
    while (i < count) {
      messages.clear();
      for (std::size_t k = 0; k < batch && i + k < count; ++k) {
        // Sizes vary within a batch: 16 bytes up to SIZE.
        const std::size_t n = 16 + (i + k) % (size - 15);
        fill(storage.data() + k * size, n, seed, i + k);
        sum += checksum(storage.data() + k * size, n);
        messages.emplace_back(storage.data() + k * size, n);
      }
      std::span<const std::span<const std::byte>> rest(messages);
      while (!rest.empty()) {
        auto n = pub->publish_batch(rest);
        if (!n) return fail(n.status());
        rest = rest.subspan(*n);
      }
      i += messages.size();
    }
    std::printf("published=%llu checksum=%llu\n", (unsigned long long)i, (unsigned long long)sum);
    return 0;
  }
  if (mode == "subscribe" || mode == "drain") {
    // "drain" receives with Subscriber::drain (64 at a time, waiting in a WaitSet) instead of take.
    const uint64_t count = std::strtoull(argv[3], nullptr, 10);
    const double idle = argc > 4 ? std::atof(argv[4]) : 20.0;
    const auto idle_ns =
        std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::duration<double>(idle));
    const bool filter = argc > 5;
    const uint64_t seed = filter ? std::strtoull(argv[5], nullptr, 10) : 0;
    uint64_t gaps = 0, next_index = 0, overwritten = 0;
    auto sub = bus->subscriber(topic);
    if (!sub) return fail(sub.status());
    std::printf("ready\n");
    std::fflush(stdout);
    uint64_t received = 0, sum = 0, order_errors = 0, corrupt = 0, sequence_gaps = 0;
    std::map<uint64_t, uint64_t> last_sequence;  // per publisher
    auto on_message = [&](const auto& m) {       // a Sample or a SampleView
      uint64_t& last = last_sequence[m.publisher_id()];
      if (m.sequence() <= last) ++order_errors;
      if (m.sequence() != last + 1) ++sequence_gaps;  // a lossless topic has none
      last = m.sequence();
      const bool intact = check(m.data(), m.size());
      // A lossy publisher may overwrite a slot while we read it; still_valid() tells us, and such a message
      // counts as missed, not as corrupt. (Always valid on lossless topics.)
      if (!m.still_valid()) {
        ++overwritten;
        return;
      }
      if (!intact) ++corrupt;
      if (filter) {
        uint64_t header[2] = {0, 0};
        std::memcpy(header, m.data(), std::min(m.size(), sizeof header));
        if (header[1] != seed) return;
        gaps += header[0] - std::min(header[0], next_index);
        next_index = header[0] + 1;
      }
      sum += checksum(m.data(), m.size());
      ++received;
    };
    shmbus::WaitSet ready;
    ready.add(*sub);
    while (received < count) {
      if (mode == "drain") {
        if (sub->drain(64, [&](const shmbus::SampleView& v) { on_message(v); }) == 0 &&
            ready.wait(idle_ns).empty()) {
          break;
        }
        continue;
      }
      auto m = sub->take(idle_ns);
      if (!m) break;
      on_message(m);
    }
    std::printf(
        "received=%llu checksum=%llu order_errors=%llu corrupt=%llu dropped=%llu gaps=%llu "
        "overwritten=%llu sequence_gaps=%llu\n",
        (unsigned long long)received, (unsigned long long)sum, (unsigned long long)order_errors,
        (unsigned long long)corrupt, (unsigned long long)sub->dropped(), (unsigned long long)gaps,
        (unsigned long long)overwritten, (unsigned long long)sequence_gaps);
    return 0;
  }
  if (mode == "hold") {
    const int n = std::atoi(argv[3]);
    auto sub = bus->subscriber(topic);
    if (!sub) return fail(sub.status());
    std::printf("ready\n");
    std::fflush(stdout);
    std::vector<shmbus::Sample> held;
    while (static_cast<int>(held.size()) < n) {
      if (auto m = sub->take(30s))
        held.push_back(std::move(m));
      else
        return fail({shmbus::Errc::kTimeout, "nothing to hold"});
    }
    std::printf("holding\n");
    std::fflush(stdout);
    sleep_forever();
  }
  if (mode == "loan") {
    auto pub = bus->publisher(topic);
    if (!pub) return fail(pub.status());
    auto loan = pub->loan();
    if (!loan) return fail(loan.status());
    std::memset(loan->data(), 0xab, loan->size() / 2);
    std::printf("loaned\n");
    std::fflush(stdout);
    sleep_forever();
  }
  if (mode == "block") {
    shmbus::PublisherOptions o;
    o.topic.policy = shmbus::Policy::kLossless;
    o.full_timeout = 200ms;
    auto pub = bus->publisher(topic, o);
    if (!pub) return fail(pub.status());
    uint64_t n = 0;
    for (;; ++n) {
      const uint64_t value = n;
      if (!pub->publish(std::as_bytes(std::span(&value, 1))).ok()) break;
    }
    std::printf("blocked published=%llu\n", (unsigned long long)n);
    std::fflush(stdout);
    for (const uint64_t value = n;;)
      (void)pub->publish(std::as_bytes(std::span(&value, 1)));  // asleep in claim
  }
  if (mode == "scribble") return scribble(*bus, topic, argv[3]);
  return 64;
}

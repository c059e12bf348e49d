// bench-shmbus-fanout: one publisher process and N subscriber processes on one topic.
//
// The publisher (this process, pinned to --cpu-a) publishes --count messages (after --warmup
// unmeasured ones), one every --gap-us microseconds (busy-waited, so the publisher never sleeps),
// and times each publish call itself: loan() + write the sequence in place + publish(). The N
// subscribers (forked, all pinned to --cpu-b) take with take(timeout): with the default --spin-us
// 0 they sleep on the futex between messages, so each publish finds N sleepers and wakes them,
// which is what a 2-core machine can run with 8 subscribers. Each subscriber records the delivery
// latency of every measured message: Sample::publish_time() (taken by publish(), right before the
// commit) to the return of take(). Lossy and lossless topics (--policy).
//
// Prints one JSON line:
//   {"peer":"shmbus-fanout","mode":"fanout","policy":"lossless","subscribers":4,"size":64,"count":..,
//    "gap_us":..,"spin_us":0,"publish_p50_ns":..,"publish_p90_ns":..,"publish_p99_ns":..,
//    "publish_p999_ns":..,"publish_max_ns":..,"publish_mean_ns":..,"timer_overhead_ns":..,
//    "delivery_p50_ns":..,..,"delivery_max_ns":..,"delivered":..,"expected":..,"dropped":..,
//    "probe_before_p50_ns":..,"probe_after_p50_ns":..,"cpu_a":0,"cpu_b":1}
// delivered/expected count messages over all subscribers (lossy topics may drop; lossless may not:
// a lossless run that loses a message fails). timer_overhead_ns is the p50 of two back-to-back clock
// reads, included in every publish figure. The probe is the cache-line ping-pong of the harness,
// between the publisher and the first subscriber, right before and after the row.

#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "bench_private_daemon.h"
#include "harness/cache_line.h"
#include "harness/cache_line_channel.h"
#include "harness/clock.h"
#include "harness/json_line.h"
#include "harness/latency_stats.h"
#include "harness/message_loops.h"
#include "harness/pinning.h"
#include "harness/shared_region.h"
#include "shmbus/bus.h"

namespace {

constexpr int kMaxSubscribers = 64;
constexpr const char* kProgram = "bench-shmbus-fanout";

struct Options {
  uint32_t subscribers = 1;
  shmbus::Policy policy = shmbus::Policy::kLossless;
  uint64_t size = 64;
  uint64_t count = 20000;
  uint64_t warmup = 1000;
  uint64_t gap_us = 50;
  uint64_t spin_us = 0;
  uint32_t depth = 256;
  int cpu_a = -1;
  int cpu_b = -1;
  uint64_t probe_rounds = 2000;
  unsigned timeout_s = 300;
};

[[noreturn]] void usage_error(const std::string& message) {
  throw std::invalid_argument(
      message +
      "\nusage: bench-shmbus-fanout [--subscribers N] [--policy lossless|lossy] [--size BYTES] [--count N]\n"
      "       [--warmup N] [--gap-us US] [--spin-us US] [--depth SLOTS] [--cpu-a CPU] [--cpu-b CPU]\n"
      "       [--probe-rounds N] [--timeout SECONDS]");
}

Options parse(int argc, char** argv) {
  Options o;
  auto number = [&](int& i) -> uint64_t {
    if (i + 1 >= argc) usage_error(std::string(argv[i]) + " needs a value");
    const char* text = argv[++i];
    char* end = nullptr;
    errno = 0;
    const unsigned long long v = std::strtoull(text, &end, 10);
    if (errno || end == text || *end || text[0] == '-') usage_error(std::string("not a number: ") + text);
    return v;
  };
  for (int i = 1; i < argc; ++i) {
    const std::string flag = argv[i];
    if (flag == "--subscribers")
      o.subscribers = static_cast<uint32_t>(number(i));
    else if (flag == "--policy") {
      if (i + 1 >= argc) usage_error("--policy needs a value");
      const std::string v = argv[++i];
      if (v == "lossless")
        o.policy = shmbus::Policy::kLossless;
      else if (v == "lossy")
        o.policy = shmbus::Policy::kLossy;
      else
        usage_error("--policy must be lossless or lossy");
    } else if (flag == "--size")
      o.size = number(i);
    else if (flag == "--count")
      o.count = number(i);
    else if (flag == "--warmup")
      o.warmup = number(i);
    else if (flag == "--gap-us")
      o.gap_us = number(i);
    else if (flag == "--spin-us")
      o.spin_us = number(i);
    else if (flag == "--depth")
      o.depth = static_cast<uint32_t>(number(i));
    else if (flag == "--cpu-a")
      o.cpu_a = static_cast<int>(number(i));
    else if (flag == "--cpu-b")
      o.cpu_b = static_cast<int>(number(i));
    else if (flag == "--probe-rounds")
      o.probe_rounds = number(i);
    else if (flag == "--timeout")
      o.timeout_s = static_cast<unsigned>(number(i));
    else
      usage_error("unknown flag " + flag);
  }
  if (o.subscribers < 1 || o.subscribers > kMaxSubscribers) usage_error("--subscribers must be 1..64");
  if (o.size < 8 || o.size > (64u << 20)) usage_error("--size must be 8 bytes .. 64 MiB");
  if (o.count == 0) usage_error("--count must be at least 1");
  if (o.depth < 4 || (o.depth & (o.depth - 1))) usage_error("--depth must be a power of two >= 4");
  return o;
}

// Shared by the publisher and every subscriber (an anonymous shared mapping made before fork);
// the per-subscriber latency arrays follow it. Each field has a single writer.
struct Control {
  bench::PingPongLines probe_before;
  bench::PingPongLines probe_after;
  bench::PaddedCounter ready;       // subscribers attached (each adds 1)
  bench::PaddedCounter go;          // publisher: 1 = start publishing, 2 = all published
  bench::PaddedCounter probe_done;  // publisher: probes finished (1 before, 2 after)
  struct alignas(bench::kCacheLine) PerSubscriber {
    std::atomic<uint64_t> recorded{0};
    std::atomic<uint64_t> dropped{0};
    std::atomic<uint64_t> finished{0};  // 1 = done, 2 = failed
    std::atomic<uint64_t> lost{0};      // lossless: messages that did not arrive
  } subscriber[kMaxSubscribers];
};

volatile sig_atomic_t g_timed_out = 0;
pid_t g_children[kMaxSubscribers];
volatile sig_atomic_t g_child_count = 0;

void on_alarm(int) {
  g_timed_out = 1;
  for (int i = 0; i < g_child_count; ++i) kill(g_children[i], SIGKILL);
  const char message[] = "bench-shmbus-fanout: timed out (see --timeout); stopping\n";
  ssize_t ignored = write(STDERR_FILENO, message, sizeof message - 1);
  (void)ignored;
}

shmbus::TopicSettings topic_settings(const Options& o) {
  shmbus::TopicSettings s;
  s.max_message_size = static_cast<uint32_t>(o.size);
  s.policy = o.policy;
  s.depth = o.depth;
  s.max_publishers = 1;
  s.max_subscribers = o.subscribers;
  return s;
}

void wait_for(const std::atomic<uint64_t>& value, uint64_t at_least) {
  while (value.load(std::memory_order_acquire) < at_least) {
    if (g_timed_out) throw std::runtime_error("timed out");
    sched_yield();
  }
}

// One subscriber process. Returns the exit code.
int run_subscriber(const Options& o, Control& control, uint64_t* latencies, uint32_t index) {
  Control::PerSubscriber& mine = control.subscriber[index];
  try {
    bench::pin_to_cpu(o.cpu_b);
    auto bus = shmbus::Bus::connect({.name = "fanout-sub" + std::to_string(index)});
    if (!bus) throw std::runtime_error(bus.status().to_string());
    shmbus::SubscriberOptions so{.topic = topic_settings(o)};
    so.spin = std::chrono::microseconds(o.spin_us);
    auto sub = bus->subscriber("bench/fanout", so);
    if (!sub) throw std::runtime_error(sub.status().to_string());
    control.ready.value.fetch_add(1, std::memory_order_acq_rel);
    if (index == 0 && o.probe_rounds) {
      bench::CacheLineChannel channel(control.probe_before.to_a, control.probe_before.to_b);
      bench::echo_round_trips(channel, o.probe_rounds / 4, o.probe_rounds);
    }
    const uint64_t total = o.warmup + o.count;
    uint64_t recorded = 0;
    uint64_t last_sequence = 0;
    for (;;) {
      shmbus::Sample m = sub->take(std::chrono::milliseconds(100));
      const uint64_t now = bench::now_ns();
      if (!m) {
        if (control.go.value.load(std::memory_order_acquire) >= 2) break;  // publisher done, nothing left
        continue;
      }
      const uint64_t published = static_cast<uint64_t>(m.publish_time().time_since_epoch().count());
      const uint64_t seq = m.sequence();
      uint64_t in_payload;
      std::memcpy(&in_payload, m.data(), sizeof in_payload);
      if (in_payload != seq) throw std::runtime_error("payload does not match the sample's sequence");
      if (o.policy == shmbus::Policy::kLossless && seq != last_sequence + 1)
        throw std::runtime_error("lossless topic: expected #" + std::to_string(last_sequence + 1) +
                                 ", got #" + std::to_string(seq));
      last_sequence = seq;
      if (seq > o.warmup && recorded < o.count) latencies[recorded++] = now > published ? now - published : 0;
      if (seq >= total) break;
    }
    mine.recorded.store(recorded, std::memory_order_relaxed);
    mine.dropped.store(sub->dropped(), std::memory_order_relaxed);
    mine.lost.store(total - std::min(total, last_sequence), std::memory_order_relaxed);
    mine.finished.store(1, std::memory_order_release);
    if (index == 0 && o.probe_rounds) {
      wait_for(control.probe_done.value, 1);
      bench::CacheLineChannel channel(control.probe_after.to_a, control.probe_after.to_b);
      bench::echo_round_trips(channel, o.probe_rounds / 4, o.probe_rounds);
    }
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s (subscriber %u): error: %s\n", kProgram, index, e.what());
    mine.finished.store(2, std::memory_order_release);
    return 1;
  }
}

uint64_t timer_overhead_ns() {
  std::vector<uint64_t> samples(10000);
  for (auto& s : samples) {
    const uint64_t a = bench::now_ns();
    s = bench::now_ns() - a;
  }
  return bench::summarize_latencies(samples).p50_ns;
}

int run(const Options& o) {
  const size_t control_bytes = (sizeof(Control) + 4095) / 4096 * 4096;
  bench::SharedRegion region(control_bytes + static_cast<size_t>(o.subscribers) * o.count * sizeof(uint64_t));
  Control& control = *new (region.data()) Control;
  auto* latencies = reinterpret_cast<uint64_t*>(static_cast<std::byte*>(region.data()) + control_bytes);

  bench::PrivateDaemon daemon;  // removed (SIGTERM, its segments and socket) when run() returns
  std::fflush(nullptr);
  const pid_t parent = getpid();
  for (uint32_t i = 0; i < o.subscribers; ++i) {
    const pid_t child = fork();
    if (child < 0) throw std::runtime_error("fork failed");
    if (child == 0) {
      prctl(PR_SET_PDEATHSIG, SIGKILL);
      if (getppid() != parent) _exit(1);
      _exit(
          run_subscriber(o, control, latencies + static_cast<size_t>(i) * o.count, i));  // no destructors of
      // the parent's objects (the daemon is the parent's); the subscriber's own are done inside
    }
    g_children[i] = child;
    g_child_count = static_cast<int>(i + 1);
  }
  struct sigaction action {};
  action.sa_handler = on_alarm;
  sigemptyset(&action.sa_mask);
  sigaction(SIGALRM, &action, nullptr);
  alarm(o.timeout_s);

  auto reap_all = [&](bool kill_first) {
    bool ok = true;
    for (int i = 0; i < g_child_count; ++i) {
      if (kill_first) kill(g_children[i], SIGKILL);
      int status = 0;
      while (waitpid(g_children[i], &status, 0) < 0 && errno == EINTR) {
      }
      ok = ok && WIFEXITED(status) && WEXITSTATUS(status) == 0;
    }
    g_child_count = 0;
    return ok;
  };

  std::vector<uint64_t> publish_ns(o.count);
  std::vector<uint64_t> probe_before, probe_after;
  uint64_t overhead = 0;
  try {
    bench::pin_to_cpu(o.cpu_a);
    auto bus = shmbus::Bus::connect({.name = "fanout-pub"});
    if (!bus) throw std::runtime_error(bus.status().to_string());
    auto pub = bus->publisher("bench/fanout",
                              {.topic = topic_settings(o), .full_timeout = std::chrono::milliseconds(5000)});
    if (!pub) throw std::runtime_error(pub.status().to_string());
    wait_for(control.ready.value, o.subscribers);
    while (pub->subscribers() < o.subscribers) {
      if (g_timed_out) throw std::runtime_error("timed out");
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    overhead = timer_overhead_ns();
    if (o.probe_rounds) {
      bench::CacheLineChannel channel(control.probe_before.to_b, control.probe_before.to_a);
      probe_before = bench::measure_round_trips(channel, o.probe_rounds / 4, o.probe_rounds);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));  // let the subscribers fall asleep
    control.go.value.store(1, std::memory_order_release);
    const uint64_t total = o.warmup + o.count;
    uint64_t next = bench::now_ns();
    for (uint64_t seq = 1; seq <= total; ++seq) {
      next += o.gap_us * 1000;
      while (bench::now_ns() < next) {
      }
      if (g_timed_out) throw std::runtime_error("timed out");
      const uint64_t t0 = bench::now_ns();
      auto loan = pub->loan();
      if (!loan) throw std::runtime_error("loan: " + loan.status().to_string());
      std::memcpy(loan->data(), &seq, sizeof seq);
      loan->set_size(o.size);
      pub->publish(std::move(loan).value());
      const uint64_t t1 = bench::now_ns();
      if (seq > o.warmup) publish_ns[seq - o.warmup - 1] = t1 - t0;
    }
    control.go.value.store(2, std::memory_order_release);
    for (uint32_t i = 0; i < o.subscribers; ++i) wait_for(control.subscriber[i].finished, 1);
    if (o.probe_rounds) {
      control.probe_done.value.store(1, std::memory_order_release);
      bench::CacheLineChannel channel(control.probe_after.to_b, control.probe_after.to_a);
      probe_after = bench::measure_round_trips(channel, o.probe_rounds / 4, o.probe_rounds);
    }
  } catch (...) {
    alarm(0);
    reap_all(true);
    throw;
  }
  alarm(0);
  if (!reap_all(false)) throw std::runtime_error("a subscriber failed");

  std::vector<uint64_t> delivery;
  uint64_t dropped = 0, lost = 0;
  for (uint32_t i = 0; i < o.subscribers; ++i) {
    const uint64_t n = control.subscriber[i].recorded.load();
    delivery.insert(delivery.end(), latencies + static_cast<size_t>(i) * o.count,
                    latencies + static_cast<size_t>(i) * o.count + n);
    dropped += control.subscriber[i].dropped.load();
    lost += control.subscriber[i].lost.load();
  }
  if (delivery.empty()) throw std::runtime_error("no message was delivered");
  const auto pub_stats = bench::summarize_latencies(publish_ns);
  const auto del_stats = bench::summarize_latencies(delivery);
  double mean = 0;
  for (uint64_t v : publish_ns) mean += static_cast<double>(v);
  mean /= static_cast<double>(publish_ns.size());

  bench::JsonLine line;
  line.add("peer", "shmbus-fanout")
      .add("mode", "fanout")
      .add("policy", o.policy == shmbus::Policy::kLossless ? "lossless" : "lossy")
      .add("subscribers", static_cast<uint64_t>(o.subscribers))
      .add("size", o.size)
      .add("count", o.count)
      .add("gap_us", o.gap_us)
      .add("spin_us", o.spin_us)
      .add("publish_p50_ns", pub_stats.p50_ns)
      .add("publish_p90_ns", pub_stats.p90_ns)
      .add("publish_p99_ns", pub_stats.p99_ns)
      .add("publish_p999_ns", pub_stats.p999_ns)
      .add("publish_max_ns", pub_stats.max_ns)
      .add("publish_mean_ns", mean)
      .add("timer_overhead_ns", overhead)
      .add("delivery_p50_ns", del_stats.p50_ns)
      .add("delivery_p90_ns", del_stats.p90_ns)
      .add("delivery_p99_ns", del_stats.p99_ns)
      .add("delivery_p999_ns", del_stats.p999_ns)
      .add("delivery_max_ns", del_stats.max_ns)
      .add("delivered", static_cast<uint64_t>(delivery.size()))
      .add("expected", o.count * o.subscribers)
      .add("dropped", dropped)
      .add("lost_at_end", lost);
  if (!probe_before.empty())
    line.add("probe_before_p50_ns", bench::summarize_latencies(probe_before).p50_ns)
        .add("probe_after_p50_ns", bench::summarize_latencies(probe_after).p50_ns);
  if (o.cpu_a >= 0) line.add("cpu_a", static_cast<uint64_t>(o.cpu_a));
  if (o.cpu_b >= 0) line.add("cpu_b", static_cast<uint64_t>(o.cpu_b));
  line.print();
  if (o.policy == shmbus::Policy::kLossless && delivery.size() != o.count * o.subscribers)
    throw std::runtime_error("lossless topic lost messages: " + std::to_string(delivery.size()) + " of " +
                             std::to_string(o.count * o.subscribers) + " delivered");
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  try {
    o = parse(argc, argv);
  } catch (const std::invalid_argument& e) {
    std::fprintf(stderr, "%s: %s\n", kProgram, e.what());
    return 2;
  }
  try {
    return run(o);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s: error: %s\n", kProgram, e.what());
    return 1;
  }
}

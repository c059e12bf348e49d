// bench-bridge: throughput and one-way latency from a publisher on "host" A to a subscriber on "host" B,
// through shmbus + shmbus-bridge (two daemons, two bridges, TCP between them) and through raw ZeroMQ PUB/SUB
// over the same kind of link, alternating in the same run. Publisher and subscriber are separate processes;
// both clocks are this machine's CLOCK_MONOTONIC, so one-way latency is exact.
//
//   bench-bridge [--count N] [--size BYTES] [--spaced N] [--gap-ms MS] [--rounds R] [--curve]
//                [--only zmq|bridge] [--cpus A,B] [--bridge-spin-us US] [--sub-spin-us US]
//
// --cpus A,B runs each "host" on a core of its own, as two machines would: the publisher, its daemon and
// bridge (or the ZeroMQ publisher and its I/O thread) on core A, the subscriber side on core B. Unpinned, the
// scheduler spreads every thread over the machine's cores.
//
// --bridge-spin-us US sets both bridges' `idle_spin_us`; --sub-spin-us US makes both subscribers (ZeroMQ's
// and shmbus') poll for US microseconds after each message before they sleep, yielding between polls as
// the bridges do. A spin longer than --gap-ms keeps those threads awake.
//
// Per round and transport: back-to-back (N messages as fast as the link takes them: rate, and latency under
// load) and spaced (N messages --gap-ms apart: latency of a message that finds the path idle).
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zmq.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "harness/pinning.h"
#include "shmbus/bus.h"

namespace {

using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

struct Options {
  uint64_t count = 200000;
  uint64_t spaced = 300;
  int gap_ms = 10;
  std::size_t size = 64;
  int rounds = 3;
  bool curve = false;
  std::string only;            // "zmq" or "bridge": run one transport (for profiling); empty runs both
  int cpu_a = -1, cpu_b = -1;  // --cpus: the core of each host's processes; -1 leaves them unpinned
  std::chrono::microseconds bridge_spin{0}, sub_spin{0};  // --bridge-spin-us, --sub-spin-us
};

struct Result {
  uint64_t received = 0;
  double seconds = 0;  // first to last message received
  double p50_us = 0, p99_us = 0;
};

int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now().time_since_epoch()).count();
}

void stamp(std::vector<char>& msg, uint64_t seq) {
  const int64_t t = now_ns();
  std::memcpy(msg.data(), &seq, 8);
  std::memcpy(msg.data() + 8, &t, 8);
}

// Receiver bookkeeping shared by both transports.
struct Tally {
  std::vector<int64_t> latency_ns;
  int64_t first = 0, last = 0;
  void add(const void* data) {
    int64_t sent;
    std::memcpy(&sent, static_cast<const char*>(data) + 8, 8);
    last = now_ns();
    if (latency_ns.empty()) first = last;
    latency_ns.push_back(last - sent);
  }
  Result result() {
    Result r;
    r.received = latency_ns.size();
    if (latency_ns.empty()) return r;
    std::sort(latency_ns.begin(), latency_ns.end());
    r.seconds = static_cast<double>(last - first) / 1e9;
    r.p50_us = static_cast<double>(latency_ns[latency_ns.size() / 2]) / 1e3;
    r.p99_us = static_cast<double>(latency_ns[latency_ns.size() * 99 / 100]) / 1e3;
    return r;
  }
};

// Runs `child` in a forked process that writes its Result to a pipe; `ready` is written by the child once set
// up.
struct Child {
  pid_t pid = -1;
  int result_fd = -1, ready_fd = -1;
};
template <typename F>
Child fork_child(F child) {
  int res[2], rdy[2];
  if (pipe(res) != 0 || pipe(rdy) != 0) std::abort();
  Child c;
  c.pid = fork();
  if (c.pid == 0) {
    close(res[0]), close(rdy[0]);
    Result r = child(rdy[1]);
    [[maybe_unused]] ssize_t n = write(res[1], &r, sizeof r);
    _exit(0);
  }
  close(res[1]), close(rdy[1]);
  c.result_fd = res[0], c.ready_fd = rdy[0];
  return c;
}
void signal_ready(int fd) {
  char x = 1;
  [[maybe_unused]] ssize_t n = write(fd, &x, 1);
}
bool wait_ready(const Child& c) {
  char x;
  return read(c.ready_fd, &x, 1) == 1;
}
Result join(Child& c) {
  Result r;
  [[maybe_unused]] ssize_t n = read(c.result_fd, &r, sizeof r);
  waitpid(c.pid, nullptr, 0);
  close(c.result_fd), close(c.ready_fd);
  return r;
}

pid_t spawn(const std::vector<std::string>& argv, int cpu = -1) {
  const pid_t pid = fork();
  if (pid == 0) {
    bench::pin_to_cpu(cpu);  // before exec: every thread the program starts inherits the mask
    const int null = open("/dev/null", O_WRONLY);
    dup2(null, 1);
    std::vector<char*> args;
    for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    execv(args[0], args.data());
    _exit(127);
  }
  return pid;
}
void stop(pid_t pid) {
  kill(pid, SIGTERM);
  waitpid(pid, nullptr, 0);
}

// ---- raw ZeroMQ PUB/SUB ----
Result raw_zmq(const Options& o, uint64_t count, int gap_ms, int port) {
  const std::string endpoint = "tcp://127.0.0.1:" + std::to_string(port);
  Child sub = fork_child([&](int ready) {
    bench::pin_to_cpu(o.cpu_b);  // before zmq_ctx_new: the I/O thread inherits the mask
    void* ctx = zmq_ctx_new();
    void* s = zmq_socket(ctx, ZMQ_SUB);
    const int hwm = 0, timeout = 3000;  // unlimited queue: count what the link carries, not what HWM drops
    zmq_setsockopt(s, ZMQ_RCVHWM, &hwm, sizeof hwm);
    zmq_setsockopt(s, ZMQ_RCVTIMEO, &timeout, sizeof timeout);
    zmq_setsockopt(s, ZMQ_SUBSCRIBE, "bench/data", 11);
    zmq_connect(s, endpoint.c_str());
    signal_ready(ready);
    Tally t;
    std::vector<char> topic(64), buf(o.size + 64);
    // The first frame of a message, polled for o.sub_spin first (--sub-spin-us).
    auto recv_topic = [&] {
      for (const auto until = Clock::now() + o.sub_spin; Clock::now() < until; sched_yield()) {
        const int r = zmq_recv(s, topic.data(), topic.size(), ZMQ_DONTWAIT);
        if (r >= 0 || zmq_errno() != EAGAIN) return r;
      }
      return zmq_recv(s, topic.data(), topic.size(), 0);
    };
    while (t.latency_ns.size() < count) {
      if (recv_topic() < 0) break;
      if (zmq_recv(s, buf.data(), buf.size(), 0) < 0) break;
      t.add(buf.data());
    }
    zmq_close(s);
    zmq_ctx_term(ctx);
    return t.result();
  });
  Child pub = fork_child([&](int ready) {
    bench::pin_to_cpu(o.cpu_a);
    void* ctx = zmq_ctx_new();
    void* p = zmq_socket(ctx, ZMQ_PUB);
    const int hwm = 0, linger = 2000;
    zmq_setsockopt(p, ZMQ_SNDHWM, &hwm, sizeof hwm);
    zmq_setsockopt(p, ZMQ_LINGER, &linger, sizeof linger);
    zmq_bind(p, endpoint.c_str());
    signal_ready(ready);
    std::this_thread::sleep_for(500ms);  // the slow joiner: let the subscription arrive
    std::vector<char> msg(o.size);
    for (uint64_t i = 1; i <= count; ++i) {
      stamp(msg, i);
      zmq_send(p, "bench/data\0", 11, ZMQ_SNDMORE);
      zmq_send(p, msg.data(), msg.size(), 0);
      if (gap_ms) std::this_thread::sleep_for(std::chrono::milliseconds(gap_ms));
    }
    zmq_close(p);
    zmq_ctx_term(ctx);
    return Result{};
  });
  wait_ready(sub), wait_ready(pub);
  Result r = join(sub);
  join(pub);
  return r;
}

// ---- shmbus + shmbus-bridge ----
struct BridgePair {
  std::string dir;
  std::vector<pid_t> pids;
  shmbus::BusOptions a, b;
};

BridgePair start_bridges(const Options& o, int port) {
  BridgePair p;
  p.dir = "/tmp/shmbus-bench-bridge-" + std::to_string(getpid());
  std::filesystem::create_directories(p.dir);
  const std::string ia = "benchA" + std::to_string(getpid()), ib = "benchB" + std::to_string(getpid());
  p.a = {.instance = ia, .runtime_dir = p.dir, .name = "bench"};
  p.b = {.instance = ib, .runtime_dir = p.dir, .name = "bench"};
  p.pids.push_back(spawn({SHMBUSD_PATH, "-i", ia, "-r", p.dir, "-l", "warn"}, o.cpu_a));
  p.pids.push_back(spawn({SHMBUSD_PATH, "-i", ib, "-r", p.dir, "-l", "warn"}, o.cpu_b));
  std::string security_a, security_b, server_key;
  if (o.curve) {
    spawn({SHMBUS_BRIDGE_PATH, "--generate-keys", p.dir + "/a"}),
        spawn({SHMBUS_BRIDGE_PATH, "--generate-keys", p.dir + "/b"});
    std::this_thread::sleep_for(300ms);
    security_a = "[security]\nsecret_key = \"" + p.dir + "/a.key\"\nallow = [\"" + p.dir + "/b.pub\"]\n";
    security_b = "[security]\nsecret_key = \"" + p.dir + "/b.key\"\nallow = []\n";
    server_key = "server_key = \"" + p.dir + "/a.pub\"\n";
  }
  const std::string rules = "[[rule]]\npattern = \"bench/**\"\npolicy = \"lossless\"\ndepth = 1024\n";
  const std::string network =
      "high_water_mark = 1000000\nlossless = true\nidle_spin_us = " + std::to_string(o.bridge_spin.count()) +
      "\n";
  std::ofstream(p.dir + "/a.toml") << "name = \"a\"\n[bus]\ninstance = \"" << ia << "\"\nruntime_dir = \""
                                   << p.dir << "\"\n[network]\nbind = [\"tcp://127.0.0.1:" << port << "\"]\n"
                                   << network << security_a << rules;
  std::ofstream(p.dir + "/b.toml") << "name = \"b\"\n[bus]\ninstance = \"" << ib << "\"\nruntime_dir = \""
                                   << p.dir << "\"\n[network]\n"
                                   << network << security_b
                                   << "[[peer]]\nendpoint = \"tcp://127.0.0.1:" << port << "\"\n"
                                   << server_key << rules;
  for (auto* opts : {&p.a, &p.b}) {
    while (!shmbus::Bus::connect(*opts).ok()) std::this_thread::sleep_for(10ms);
  }
  p.pids.push_back(spawn({SHMBUS_BRIDGE_PATH, "-c", p.dir + "/a.toml", "-l", "warn"}, o.cpu_a));
  p.pids.push_back(spawn({SHMBUS_BRIDGE_PATH, "-c", p.dir + "/b.toml", "-l", "warn"}, o.cpu_b));
  return p;
}

// CPU seconds (user + system) the bridge processes have used so far, from /proc/<pid>/stat.
double bridges_cpu_seconds(const BridgePair& p) {
  double total = 0;
  for (std::size_t i = 2; i < p.pids.size(); ++i) {  // after the two daemons
    std::ifstream stat("/proc/" + std::to_string(p.pids[i]) + "/stat");
    std::string line;
    std::getline(stat, line);
    const std::size_t name_end = line.rfind(')');
    if (name_end == std::string::npos || name_end + 2 > line.size()) continue;  // gone: counts nothing
    // Fields after the ")" closing the command name: state is field 3, utime 14, stime 15.
    std::istringstream rest(line.substr(name_end + 2));
    std::string field;
    unsigned long long utime = 0, stime = 0;
    for (int f = 3; f <= 15 && rest >> field; ++f) {
      if (f == 14) utime = std::stoull(field);
      if (f == 15) stime = std::stoull(field);
    }
    total += static_cast<double>(utime + stime) / static_cast<double>(sysconf(_SC_CLK_TCK));
  }
  return total;
}

void stop_bridges(BridgePair& p) {
  for (auto it = p.pids.rbegin(); it != p.pids.rend(); ++it) stop(*it);
  std::filesystem::remove_all(p.dir);
}

Result bridge(const Options& o, const BridgePair& pair, uint64_t count, int gap_ms,
              const std::string& topic) {
  Child sub = fork_child([&](int ready) {
    bench::pin_to_cpu(o.cpu_b);
    auto bus = shmbus::Bus::connect(pair.b).value();
    // Blocking without a spin unless --sub-spin-us, as the ZeroMQ subscriber above: on 2 cores a spinning
    // endpoint only takes CPU from the bridges it waits for.
    auto s = bus.subscriber(topic, {.max_held_samples = 64, .spin = std::chrono::microseconds(0)}).value();
    auto take = [&]() -> shmbus::Sample {
      for (const auto until = Clock::now() + o.sub_spin; Clock::now() < until; sched_yield()) {
        if (shmbus::Sample m = s.try_take()) return m;
      }
      return s.take(100ms);
    };
    signal_ready(ready);
    Tally t;
    auto last = Clock::now();
    while (t.latency_ns.size() < count && Clock::now() - last < 3s) {
      if (shmbus::Sample m = take()) {
        t.add(m.data());
        last = Clock::now();
      }
    }
    return t.result();
  });
  wait_ready(sub);
  Child pub = fork_child([&](int ready) {
    bench::pin_to_cpu(o.cpu_a);
    auto bus = shmbus::Bus::connect(pair.a).value();
    shmbus::PublisherOptions po{.topic = {.max_message_size = static_cast<uint32_t>(o.size),
                                          .depth = 1024,
                                          .policy = shmbus::Policy::kLossless},
                                .full_timeout = 5000ms};
    auto p = bus.publisher(topic, po).value();
    signal_ready(ready);
    while (p.subscribers() == 0) std::this_thread::sleep_for(1ms);  // the bridge subscribed for B
    std::this_thread::sleep_for(500ms);
    std::vector<char> msg(o.size);
    for (uint64_t i = 1; i <= count; ++i) {
      stamp(msg, i);
      while (p.publish(std::as_bytes(std::span(msg.data(), msg.size()))).code() == shmbus::Errc::kTimeout) {
      }
      if (gap_ms) std::this_thread::sleep_for(std::chrono::milliseconds(gap_ms));
    }
    std::this_thread::sleep_for(200ms);
    return Result{};
  });
  wait_ready(pub);
  Result r = join(sub);
  join(pub);
  return r;
}

void print(const char* transport, const char* mode, int round, uint64_t sent, const Result& r) {
  std::printf(
      "{\"transport\":\"%s\",\"mode\":\"%s\",\"round\":%d,\"sent\":%llu,\"received\":%llu,\"msg_per_s\":%.0f,"
      "\"p50_us\":%.1f,\"p99_us\":%.1f}\n",
      transport, mode, round, static_cast<unsigned long long>(sent),
      static_cast<unsigned long long>(r.received),
      r.seconds > 0 ? static_cast<double>(r.received) / r.seconds : 0.0, r.p50_us, r.p99_us);
  std::fflush(stdout);
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0 : v[v.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto next = [&] { return i + 1 < argc ? std::strtoull(argv[++i], nullptr, 10) : 0ull; };
    if (a == "--count")
      o.count = next();
    else if (a == "--size")
      o.size = std::max<std::size_t>(16, next());
    else if (a == "--spaced")
      o.spaced = next();
    else if (a == "--gap-ms")
      o.gap_ms = static_cast<int>(next());
    else if (a == "--rounds")
      o.rounds = static_cast<int>(next());
    else if (a == "--curve")
      o.curve = true;
    else if (a == "--only" && i + 1 < argc &&
             (std::string(argv[i + 1]) == "zmq" || std::string(argv[i + 1]) == "bridge"))
      o.only = argv[++i];
    else if (a == "--cpus" && i + 1 < argc && std::sscanf(argv[i + 1], "%d,%d", &o.cpu_a, &o.cpu_b) == 2 &&
             o.cpu_a >= 0 && o.cpu_b >= 0)
      ++i;
    else if (a == "--bridge-spin-us")
      o.bridge_spin = std::chrono::microseconds(std::min<uint64_t>(next(), 1000000));  // the bridge's bound
    else if (a == "--sub-spin-us")
      o.sub_spin = std::chrono::microseconds(next());
    else {
      std::fprintf(
          stderr,
          "usage: bench-bridge [--count N] [--size B] [--spaced N] [--gap-ms MS] [--rounds R] [--curve]\n"
          "                    [--only zmq|bridge] [--cpus A,B] [--bridge-spin-us US] [--sub-spin-us US]\n");
      return 2;
    }
  }
  const int raw_port = 20000 + getpid() % 20000, bridge_port = raw_port + 1;
  BridgePair pair = start_bridges(o, bridge_port);
  std::vector<double> raw_rate, br_rate, raw_p50, br_p50, raw_gap_p50, br_gap_p50, raw_gap_p99, br_gap_p99,
      br_gap_cpu;
  const bool run_zmq = o.only != "bridge", run_bridge = o.only != "zmq";
  for (int round = 1; round <= o.rounds; ++round) {
    const std::string topic = "bench/r" + std::to_string(round);
    Result r;
    if (run_zmq) {
      r = raw_zmq(o, o.count, 0, raw_port);
      print("zmq", "back-to-back", round, o.count, r);
      raw_rate.push_back(r.received / std::max(r.seconds, 1e-9)), raw_p50.push_back(r.p50_us);
    }
    if (run_bridge) {
      r = bridge(o, pair, o.count, 0, topic);
      print("bridge", "back-to-back", round, o.count, r);
      br_rate.push_back(r.received / std::max(r.seconds, 1e-9)), br_p50.push_back(r.p50_us);
    }
    if (o.spaced == 0) continue;
    if (run_zmq) {
      r = raw_zmq(o, o.spaced, o.gap_ms, raw_port);
      print("zmq", "spaced", round, o.spaced, r);
      raw_gap_p50.push_back(r.p50_us), raw_gap_p99.push_back(r.p99_us);
    }
    if (run_bridge) {
      const double cpu_before = bridges_cpu_seconds(pair);
      const auto started = Clock::now();
      r = bridge(o, pair, o.spaced, o.gap_ms, topic + "s");
      print("bridge", "spaced", round, o.spaced, r);
      br_gap_p50.push_back(r.p50_us), br_gap_p99.push_back(r.p99_us);
      // Both bridges' CPU over the phase, in cores busy: what a spin (--bridge-spin-us) costs.
      br_gap_cpu.push_back((bridges_cpu_seconds(pair) - cpu_before) /
                           std::chrono::duration<double>(Clock::now() - started).count());
    }
  }
  stop_bridges(pair);
  if (!o.only.empty()) return 0;  // one transport: no ratios to print
  std::printf(
      "\nmedians over %d rounds, %zu-byte messages, loopback TCP%s, %s, %s:\n", o.rounds, o.size,
      o.curve ? ", CURVE on the bridge" : "",
      o.cpu_a < 0
          ? "unpinned"
          : ("host A on cpu " + std::to_string(o.cpu_a) + ", B on cpu " + std::to_string(o.cpu_b)).c_str(),
      ("spins: bridges " + std::to_string(o.bridge_spin.count()) + " us, subscribers " +
       std::to_string(o.sub_spin.count()) + " us")
          .c_str());
  std::printf("  back-to-back rate   zmq %.0f msg/s   bridge %.0f msg/s   zmq/bridge = %.2fx\n",
              median(raw_rate), median(br_rate), median(raw_rate) / median(br_rate));
  std::printf("  back-to-back p50    zmq %.1f us   bridge %.1f us   bridge/zmq = %.2fx\n", median(raw_p50),
              median(br_p50), median(br_p50) / median(raw_p50));
  std::printf("  spaced %d ms p50     zmq %.1f us   bridge %.1f us   bridge/zmq = %.2fx\n", o.gap_ms,
              median(raw_gap_p50), median(br_gap_p50), median(br_gap_p50) / median(raw_gap_p50));
  std::printf("  spaced %d ms p99     zmq %.1f us   bridge %.1f us   bridge/zmq = %.2fx\n", o.gap_ms,
              median(raw_gap_p99), median(br_gap_p99), median(br_gap_p99) / median(raw_gap_p99));
  std::printf("  spaced: both bridges used %.2f cores\n", median(br_gap_cpu));
  return 0;
}

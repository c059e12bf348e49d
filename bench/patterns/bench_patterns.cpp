// Benchmarks of the messaging patterns beyond pub/sub, each printing one JSON line:
//   bench-patterns mm1 --rho R [--mu MU] [--seconds S]
//       Poisson arrivals (rate rho x mu) into a work queue served by one consumer process with exponential
//       service times (rate mu). The daemon's queueing metrics (shmbus stats) are compared with the M/M/1
//       formulas: L = rho/(1-rho), Lq = rho^2/(1-rho), W = 1/(mu-lambda), Wq = rho/(mu-lambda).
//   bench-patterns sync --policy never|interval|always [--count N]
//       A durable queue: the cost of send + receive + ack per message under each sync policy.
//   bench-patterns rpc [--count N] [--size B]
//       Request/response round trips between two processes (busy-polling server).
// Timing is measured here, never asserted: this is a benchmark, not a test.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <toml++/toml.h>
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "bench_private_daemon.h"
#include "shmbus/bus.h"
#include "shmbus/rpc.h"
#include "shmbus/work_queue.h"

namespace {

using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

std::string arg(int argc, char** argv, const std::string& name, const std::string& fallback) {
  for (int i = 2; i + 1 < argc; ++i) {
    if (argv[i] == name) return argv[i + 1];
  }
  return fallback;
}

void spin_until(Clock::time_point t) {
  while (Clock::now() < t) {
  }
}

double percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[std::min(v.size() - 1, static_cast<std::size_t>(p * static_cast<double>(v.size())))];
}

toml::table queue_metrics(shmbus::Bus& bus, const std::string& name) {
  auto doc = toml::parse(bus.daemon_statistics().value());
  for (const toml::node& n : *doc["queue"].as_array()) {
    if ((*n.as_table())["name"].value_or(std::string()) == name) return *n.as_table();
  }
  return {};
}

int mm1(int argc, char** argv) {
  const double rho = std::stod(arg(argc, argv, "--rho", "0.5"));
  const double mu = std::stod(arg(argc, argv, "--mu", "10000"));
  const double seconds = std::stod(arg(argc, argv, "--seconds", "20"));
  const double lambda = rho * mu;
  bench::PrivateDaemon daemon;
  auto bus = shmbus::Bus::connect().value();
  shmbus::QueueProducerOptions po;
  po.queue.capacity = 4096;
  po.queue.max_message_size = 64;
  auto producer = bus.queue_producer("bench/mm1", po).value();
  const pid_t consumer = fork();
  if (consumer == 0) {
    auto b = shmbus::Bus::connect().value();
    auto c = b.queue_consumer("bench/mm1").value();
    std::mt19937_64 rng(2);
    std::exponential_distribution<double> service(mu);
    for (;;) {
      auto d = c.receive(0ns);  // busy-poll: a futex wake-up would add the scheduler's latency to W
      if (!d) continue;
      if (d->bytes()[0] == std::byte{1}) _exit(d->ack().ok() ? 0 : 1);
      spin_until(Clock::now() + std::chrono::nanoseconds(static_cast<int64_t>(service(rng) * 1e9)));
      (void)d->ack();
    }
  }
  std::mt19937_64 rng(1);
  std::exponential_distribution<double> gap(lambda);
  const auto end =
      Clock::now() + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(seconds));
  auto next = Clock::now();
  const std::byte work[8]{};
  uint64_t sent = 0, refused = 0;
  while (next < end) {
    next += std::chrono::nanoseconds(static_cast<int64_t>(gap(rng) * 1e9));
    spin_until(next);
    if (producer.send(work).ok()) {
      ++sent;
    } else {
      ++refused;
    }
  }
  // Drained: the window then holds the whole steady state and its tail.
  for (auto m = queue_metrics(bus, "bench/mm1"); m["ready"].value_or(0LL) + m["in_flight"].value_or(0LL) > 0;
       m = queue_metrics(bus, "bench/mm1")) {
    std::this_thread::sleep_for(10ms);
  }
  const toml::table q = queue_metrics(bus, "bench/mm1");
  const std::byte stop[1]{std::byte{1}};
  (void)producer.send(stop);
  int status = 0;
  waitpid(consumer, &status, 0);
  const toml::table& m = *q["metrics"].as_table();
  const double lam = m["arrival_rate"].value_or(0.0);
  const double r = rho;
  std::printf(
      "{\"mode\":\"mm1\",\"rho\":%.2f,\"mu\":%.0f,\"lambda\":%.1f,\"sent\":%llu,\"refused\":%llu,"
      "\"window_s\":%.2f,\"measured\":{\"lambda\":%.1f,\"service_rate\":%.1f,\"utilisation\":%.4f,"
      "\"L\":%.4f,\"Lq\":%.4f,\"W_s\":%.7f,\"Wq_s\":%.7f,\"littles_law_error\":%.4f},"
      "\"mm1\":{\"L\":%.4f,\"Lq\":%.4f,\"W_s\":%.7f,\"Wq_s\":%.7f}}\n",
      r, mu, lambda, static_cast<unsigned long long>(sent), static_cast<unsigned long long>(refused),
      m["window_s"].value_or(0.0), lam, m["service_rate"].value_or(0.0), m["utilisation"].value_or(0.0),
      m["in_system"].value_or(0.0), m["queue_length"].value_or(0.0), m["sojourn_time_s"].value_or(0.0),
      m["waiting_time_s"].value_or(0.0), m["littles_law_error"].value_or(0.0), r / (1 - r), r * r / (1 - r),
      1 / (mu - lambda), r / (mu - lambda));
  return 0;
}

int sync_cost(int argc, char** argv) {
  const std::string policy = arg(argc, argv, "--policy", "interval");
  const int count = std::stoi(arg(argc, argv, "--count", "20000"));
  const std::string data_dir = "/var/tmp/shmbus-bench-sync-" + std::to_string(getpid());
  setenv("SHMBUS_DATA_DIR", data_dir.c_str(), 1);
  int rc = 0;
  {
    bench::PrivateDaemon daemon;
    auto bus = shmbus::Bus::connect().value();
    shmbus::QueueSettings s;
    s.durable = true;
    s.capacity = 1024;
    s.max_message_size = 64;
    s.sync = policy == "never"    ? shmbus::SyncPolicy::kNever
             : policy == "always" ? shmbus::SyncPolicy::kAlways
                                  : shmbus::SyncPolicy::kInterval;
    auto producer = bus.queue_producer("bench/sync", {.queue = s}).value();
    auto consumer = bus.queue_consumer("bench/sync").value();
    std::vector<double> ns;
    ns.reserve(count);
    const std::byte msg[64]{};
    const auto start = Clock::now();
    for (int i = 0; i < count; ++i) {
      const auto t0 = Clock::now();
      if (!producer.send(msg).ok()) rc = 1;
      auto d = consumer.receive(1s);
      if (!d || !d->ack().ok()) rc = 1;
      ns.push_back(static_cast<double>((Clock::now() - t0).count()));
    }
    const double secs = std::chrono::duration<double>(Clock::now() - start).count();
    std::printf(
        "{\"mode\":\"sync\",\"policy\":\"%s\",\"count\":%d,\"msg_per_s\":%.0f,\"p50_ns\":%.0f,\"p99_ns\":%."
        "0f,"
        "\"p999_ns\":%.0f}\n",
        policy.c_str(), count, count / secs, percentile(ns, 0.5), percentile(ns, 0.99),
        percentile(ns, 0.999));
  }
  std::error_code ec;
  std::filesystem::remove_all(data_dir, ec);
  return rc;
}

int rpc(int argc, char** argv) {
  const int count = std::stoi(arg(argc, argv, "--count", "100000"));
  const std::size_t size = std::stoul(arg(argc, argv, "--size", "64"));
  bench::PrivateDaemon daemon;
  auto bus = shmbus::Bus::connect().value();
  shmbus::ClientOptions co;
  co.queue.max_message_size = static_cast<uint32_t>(std::max<std::size_t>(size, 8));
  co.max_response_size = co.queue.max_message_size.value();
  auto client = bus.client("bench/echo", co).value();
  const pid_t server = fork();
  if (server == 0) {
    auto b = shmbus::Bus::connect().value();
    auto s = b.server("bench/echo").value();
    for (;;) {
      auto r = s.receive(0ns);
      if (!r) continue;
      if (r->bytes().size() == 1) {
        (void)r->respond(r->bytes());
        _exit(0);
      }
      (void)r->respond(r->bytes());
    }
  }
  std::vector<std::byte> request(size, std::byte{7});
  std::vector<double> ns;
  ns.reserve(count);
  int failures = 0;
  for (int i = 0; i < count + 1000; ++i) {
    const auto t0 = Clock::now();
    auto response = client.call(request, 5s);
    const auto t1 = Clock::now();
    if (!response) ++failures;
    if (i >= 1000) ns.push_back(static_cast<double>((t1 - t0).count()));  // the first 1000 warm up
  }
  const std::byte stop[1]{};
  (void)client.call(stop, 5s);
  waitpid(server, nullptr, 0);
  std::printf(
      "{\"mode\":\"rpc\",\"size\":%zu,\"count\":%d,\"failures\":%d,\"p50_ns\":%.0f,\"p90_ns\":%.0f,"
      "\"p99_ns\":%.0f,\"p999_ns\":%.0f}\n",
      size, count, failures, percentile(ns, 0.5), percentile(ns, 0.9), percentile(ns, 0.99),
      percentile(ns, 0.999));
  return failures == 0 ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  const std::string mode = argc > 1 ? argv[1] : "";
  try {
    if (mode == "mm1") return mm1(argc, argv);
    if (mode == "sync") return sync_cost(argc, argv);
    if (mode == "rpc") return rpc(argc, argv);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench-patterns: %s\n", e.what());
    return 1;
  }
  std::fprintf(stderr, "usage: bench-patterns mm1|sync|rpc [options] (see the source's first lines)\n");
  return 2;
}

// Micro-benchmarks of the client library's hot path, one thread, through a private shmbusd: what a message
// costs in the calls a user makes, with no cross-core transfer (publisher and subscriber share the thread,
// so every line stays in this core's cache). The part of a message that per-message work sets on near vCPU
// placements, where a transfer is cheap (BENCHMARKS.md).
//
//   BM_LoanPublishTake/<stamp>   loan(), write the 8-byte sequence in place, publish(), try_take(), read it,
//                                drop the Sample; <stamp> 1: the default publish stamp, 0: stamp_publish_time
//                                off
//   BM_CopyPublishTake           publish(span) of 64 B (stamp off), try_take()
//   BM_PublishDrain/<k>          k loans and publishes (stamp off), then one drain(k)
//
// 64 B lossless topic. Times are per message. For instruction counts (independent of the machine's noise):
//   valgrind --tool=callgrind --toggle-collect='*BM_*' ./bench-micro-bus --benchmark_min_time=0.01
// and divide each benchmark's instructions by its iterations (callgrind_annotate --inclusive=yes).
#include <benchmark/benchmark.h>

#include <array>
#include <cstring>
#include <optional>
#include <span>
#include <string>

#include "shmbus/bench_private_daemon.h"  // bench/shmbus/
#include "shmbus/bus.h"

namespace {

using namespace shmbus;

constexpr std::size_t kSize = 64;

// One bus, one publisher and one subscriber on a fresh topic of the private daemon.
struct Endpoints {
  Bus bus;
  Publisher pub;
  Subscriber sub;
  // Empty, with the state skipped with the reason, if any of the three cannot be had: no exception leaves a
  // benchmark (an abort would skip the daemon's clean-up).
  static std::optional<Endpoints> open(benchmark::State& state, const std::string& topic, bool stamp) {
    TopicSettings s;
    s.max_message_size = kSize;
    s.depth = 1024;
    s.policy = Policy::kLossless;
    s.max_publishers = 1;
    s.max_subscribers = 1;
    auto bus = Bus::connect();
    if (!bus) {
      state.SkipWithError(bus.status().to_string().c_str());
      return std::nullopt;
    }
    auto sub = bus->subscriber(topic, {.topic = s});
    auto pub = bus->publisher(topic, {.topic = s, .stamp_publish_time = stamp});
    if (!sub || !pub) {
      state.SkipWithError((!sub ? sub.status() : pub.status()).to_string().c_str());
      return std::nullopt;
    }
    return Endpoints{std::move(bus).value(), std::move(pub).value(), std::move(sub).value()};
  }
};

// Takes one message and checks that it carries `seq` (dropping the Sample: its slot goes back).
bool take_expected(Subscriber& sub, uint64_t seq) {
  Sample m = sub.try_take();
  uint64_t got = ~uint64_t{0};
  if (m) std::memcpy(&got, m.data(), sizeof got);
  return got == seq;
}

// Started by the first benchmark, stopped at exit (SIGTERM: it removes its segments and socket).
bench::PrivateDaemon& private_daemon() {
  static bench::PrivateDaemon d;
  return d;
}

void BM_LoanPublishTake(benchmark::State& state) {
  private_daemon();
  auto opened = Endpoints::open(state, "micro/loan-" + std::to_string(state.range(0)), state.range(0) != 0);
  if (!opened) return;
  Endpoints& e = *opened;
  uint64_t seq = 0;
  for (auto _ : state) {
    auto loan = e.pub.loan();
    if (!loan) {
      state.SkipWithError(loan.status().to_string().c_str());
      break;
    }
    std::memcpy(loan->data(), &seq, sizeof seq);
    loan->set_size(kSize);
    e.pub.publish(std::move(loan).value());
    if (!take_expected(e.sub, seq++)) {
      state.SkipWithError("the message taken is not the one published");
      break;
    }
  }
  state.SetItemsProcessed(state.iterations());
}

void BM_CopyPublishTake(benchmark::State& state) {
  private_daemon();
  auto opened = Endpoints::open(state, "micro/copy", false);
  if (!opened) return;
  Endpoints& e = *opened;
  std::array<std::byte, kSize> buffer{};
  uint64_t seq = 0;
  for (auto _ : state) {
    std::memcpy(buffer.data(), &seq, sizeof seq);
    if (Status s = e.pub.publish(buffer); !s.ok()) {
      state.SkipWithError(s.to_string().c_str());
      break;
    }
    if (!take_expected(e.sub, seq++)) {
      state.SkipWithError("the message taken is not the one published");
      break;
    }
  }
  state.SetItemsProcessed(state.iterations());
}

void BM_PublishDrain(benchmark::State& state) {
  private_daemon();
  const auto k = static_cast<std::size_t>(state.range(0));
  auto opened = Endpoints::open(state, "micro/drain-" + std::to_string(k), false);
  if (!opened) return;
  Endpoints& e = *opened;
  uint64_t seq = 0;
  uint64_t expected = 0;
  for (auto _ : state) {
    for (std::size_t i = 0; i < k; ++i) {
      auto loan = e.pub.loan();
      if (!loan) {
        state.SkipWithError(loan.status().to_string().c_str());
        return;
      }
      std::memcpy(loan->data(), &seq, sizeof seq);
      ++seq;
      loan->set_size(kSize);
      e.pub.publish(std::move(loan).value());
    }
    bool in_order = true;
    const std::size_t n = e.sub.drain(k, [&](const SampleView& v) {
      uint64_t got;
      std::memcpy(&got, v.data(), sizeof got);
      in_order = in_order && got == expected++;
    });
    if (n != k || !in_order) {
      state.SkipWithError("drain did not hand over the messages published, in order");
      return;
    }
  }
  state.SetItemsProcessed(state.iterations() * static_cast<int64_t>(k));
  state.counters["messages_per_iteration"] = static_cast<double>(k);
}

BENCHMARK(BM_LoanPublishTake)->ArgName("stamp")->Arg(1)->Arg(0);
BENCHMARK(BM_CopyPublishTake);
BENCHMARK(BM_PublishDrain)->ArgName("k")->Arg(1)->Arg(8)->Arg(64);

}  // namespace

BENCHMARK_MAIN();

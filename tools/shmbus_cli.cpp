// shmbus: look at and poke the bus from a shell. Every failure is one line on stderr and a non-zero exit.
#include <CLI/CLI.hpp>

#include <chrono>
#include <cstdio>
#include <exception>
#include <iostream>
#include <string>
#include <thread>

#include "shmbus/bus.h"
#include "tools/queue_commands.h"
#include "tools/stats_view.h"
#ifdef SHMBUS_WITH_BRIDGE
#include "bridge/bridge_stats_view.h"
#endif

namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

int fail(const shmbus::Status& s) {
  std::cerr << "shmbus: " << s.to_string() << "\n";
  return 1;
}

void print_sample(const shmbus::Sample& m, const std::string& topic, const std::string& format) {
  const auto* p = reinterpret_cast<const unsigned char*>(m.data());
  std::string line;
  if (format == "hex") {
    static const char* digits = "0123456789abcdef";
    for (std::size_t i = 0; i < m.size(); ++i) line += {digits[p[i] >> 4], digits[p[i] & 15]};
  } else if (format == "json") {
    // null: the publisher does not stamp its messages.
    const std::string latency =
        m.has_publish_time()
            ? std::to_string(std::chrono::nanoseconds(Clock::now() - m.publish_time()).count())
            : "null";
    line = "{\"topic\":\"" + topic + "\",\"sequence\":" + std::to_string(m.sequence()) +
           ",\"publisher\":" + std::to_string(m.publisher_id()) + ",\"size\":" + std::to_string(m.size()) +
           ",\"latency_ns\":" + latency + ",\"data\":\"";
    for (std::size_t i = 0; i < m.size(); ++i) {
      const unsigned char c = p[i];
      if (c == '"' || c == '\\') {
        line += '\\', line += static_cast<char>(c);
      } else if (c < 0x20 || c >= 0x7f) {
        char buf[8];
        std::snprintf(buf, sizeof buf, "\\u%04x", c);
        line += buf;
      } else {
        line += static_cast<char>(c);
      }
    }
    line += "\"}";
  } else {
    line.assign(reinterpret_cast<const char*>(p), m.size());
  }
  std::cout << line << "\n" << std::flush;
}

}  // namespace

int main(int argc, char** argv) try {
  CLI::App app{"shmbus: inspect and use a shmbus instance"};
  app.require_subcommand(1);
  shmbus::BusOptions bus_options;
  bus_options.name = "shmbus-cli";
  app.add_option("-i,--instance", bus_options.instance,
                 "instance (default: $SHMBUS_INSTANCE, else \"default\")");
  app.add_option("-r,--runtime-dir", bus_options.runtime_dir,
                 "daemon socket directory (default: $SHMBUS_RUNTIME_DIR)");

  auto* list = app.add_subcommand("list", "topics with their publishers, subscribers and rate");
  bool json = false;
  auto* stats = app.add_subcommand("stats", "per-topic and per-participant statistics");
  stats->add_flag("--json", json, "print JSON");

  std::string topic, data;
  uint64_t count = 0;
  double rate = 0;
  auto* pub = app.add_subcommand("pub", "publish DATA (or each line of stdin with '-')");
  pub->add_option("topic", topic, "topic name")->required();
  pub->add_option("data", data, "message text, or - to publish each line read from stdin")->required();
  pub->add_option("-n,--count", count, "messages to publish (default 1; with '-': every line)");
  pub->add_option("--rate", rate, "messages per second (default: as fast as possible)");

  std::string format = "text";
  double timeout_s = 0;
  auto* sub = app.add_subcommand("sub", "print messages as they arrive");
  sub->add_option("topic", topic, "topic name")->required();
  sub->add_option("-n,--count", count, "exit after this many messages (default: never)");
  sub->add_option("--format", format, "text, hex or json")->check(CLI::IsMember({"text", "hex", "json"}));
  sub->add_option("--timeout", timeout_s, "exit with status 3 after this many seconds without a message");

  auto* hz = app.add_subcommand("hz", "measure a topic's message rate once a second");
  hz->add_option("topic", topic, "topic name")->required();
  hz->add_option("-n,--count", count, "reports to print (default: until interrupted)");

  shmbus::tools::QueueCommands queue_commands(app);

  CLI11_PARSE(app, argc, argv);

  auto bus = shmbus::Bus::connect(bus_options);
  if (!bus) return fail(bus.status());
  if (queue_commands.parsed()) return queue_commands.run(bus.value());

  if (list->parsed() || stats->parsed()) {
    auto doc = bus.value().daemon_statistics();
    if (!doc) return fail(doc.status());
    const auto f = list->parsed()
                       ? shmbus::tools::StatsFormat::kTopicList
                       : (json ? shmbus::tools::StatsFormat::kJson : shmbus::tools::StatsFormat::kFull);
    std::string document = doc.value();
#ifdef SHMBUS_WITH_BRIDGE
    // Bridges publish their own counters on the bus: one JSON document holds both for --json.
    if (stats->parsed() && json) document = shmbus::tools::with_bridge_stats(bus.value(), document);
#endif
    if (auto s = shmbus::tools::render_stats(document, f, std::cout); !s.ok()) return fail(s);
#ifdef SHMBUS_WITH_BRIDGE
    if (stats->parsed() && !json)
      (void)shmbus::bridge::render_bridge_stats(bus.value(), document, false, std::cout);
#endif
    return 0;
  }
  if (pub->parsed()) {
    auto p = bus->publisher(topic);
    if (!p) return fail(p.status());
    const auto period = rate > 0 ? std::chrono::nanoseconds(static_cast<int64_t>(1e9 / rate)) : 0ns;
    auto next = Clock::now();
    auto send = [&](const std::string& text) -> bool {
      if (period.count() > 0) {
        std::this_thread::sleep_until(next);
        next += period;
      }
      auto s = p->publish(std::as_bytes(std::span(text.data(), text.size())));
      if (!s.ok()) fail(s);
      return s.ok();
    };
    if (data == "-") {
      std::string line;
      for (uint64_t i = 0; (count == 0 || i < count) && std::getline(std::cin, line); ++i) {
        if (!send(line)) return 1;
      }
    } else {
      for (uint64_t i = 0; i < (count == 0 ? 1 : count); ++i) {
        if (!send(data)) return 1;
      }
    }
    return 0;
  }
  shmbus::SubscriberOptions options;
  auto s = bus->subscriber(topic, options);
  if (!s) return fail(s.status());
  if (sub->parsed()) {
    auto last = Clock::now();
    for (uint64_t n = 0; count == 0 || n < count;) {
      if (auto m = s->take(200ms)) {
        print_sample(m, topic, format);
        ++n;
        last = Clock::now();
      } else if (s->closed()) {
        return fail({shmbus::Errc::kDaemonUnavailable, "the daemon closed topic " + topic});
      } else if (timeout_s > 0 && Clock::now() - last > std::chrono::duration<double>(timeout_s)) {
        std::cerr << "shmbus: no message on " << topic << " for " << timeout_s << " s\n";
        return 3;
      }
    }
    return 0;
  }
  // hz
  for (uint64_t reports = 0; count == 0 || reports < count; ++reports) {
    const auto start = Clock::now();
    uint64_t n = 0, bytes = 0;
    while (Clock::now() - start < 1s) {
      if (auto m = s->take(100ms)) ++n, bytes += m.size();
    }
    const double seconds = std::chrono::duration<double>(Clock::now() - start).count();
    std::printf("%s: %.1f msg/s, %.3f MB/s, dropped %llu\n", topic.c_str(), static_cast<double>(n) / seconds,
                static_cast<double>(bytes) / seconds / 1e6, static_cast<unsigned long long>(s->dropped()));
    std::fflush(stdout);
  }
  return 0;
} catch (const std::exception& e) {
  // Whatever escaped (a filesystem or logging error): a clear message and a failure, not std::terminate.
  std::fprintf(stderr, "shmbus: %s\n", e.what());
  return 1;
}

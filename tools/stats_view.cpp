#include "tools/stats_view.h"

#include <toml++/toml.h>
#include <optional>
#include <sstream>

#ifdef SHMBUS_WITH_BRIDGE
#include "bridge/bridge_stats_view.h"
#endif
#include <cstdio>

namespace shmbus::tools {
namespace {

std::string cell(const toml::node_view<const toml::node>& n) {
  if (auto s = n.value<std::string>()) return *s;
  if (auto d = n.as_floating_point()) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.1f", d->get());
    return buf;
  }
  if (auto i = n.value<int64_t>()) return std::to_string(*i);
  return "-";
}

// A floating-point field with `decimals` digits after the point, scaled by `scale`; "-" when absent.
std::string number(const toml::node_view<const toml::node>& n, int decimals, double scale = 1.0) {
  const std::optional<double> v = n.value<double>();
  if (!v) return "-";
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.*f", decimals, *v * scale);
  return buf;
}

void pad(std::ostream& out, const std::string& s, std::size_t width) {
  out << s;
  for (std::size_t i = s.size(); i < width; ++i) out << ' ';
}

}  // namespace

Status render_stats(const std::string& document, StatsFormat format, std::ostream& out) {
  toml::table doc;
  try {
    doc = toml::parse(document);
  } catch (const toml::parse_error& e) {
    return {Errc::kProtocolError,
            std::string("unreadable statistics from the daemon: ") + std::string(e.description())};
  }
  if (format == StatsFormat::kJson) {
    out << toml::json_formatter(doc) << "\n";
    return Status::Ok();
  }
  const toml::array* topics = doc["topic"].as_array();
  if (format == StatsFormat::kTopicList) {
    pad(out, "TOPIC", 32), pad(out, "PUBS", 6), pad(out, "SUBS", 6), pad(out, "RATE(Hz)", 10),
        out << "POLICY\n";
  } else {
    pad(out, "TOPIC", 28), pad(out, "MESSAGES", 11), pad(out, "BYTES", 13), pad(out, "DROPS", 8),
        pad(out, "QUEUED", 8), pad(out, "LAT_P50_NS", 12), out << "LAT_P99_NS\n";
  }
  if (topics) {
    for (const toml::node& n : *topics) {
      const toml::node_view<const toml::node> t{n};
      if (format == StatsFormat::kTopicList) {
        pad(out, cell(t["name"]), 32), pad(out, cell(t["publishers"]), 6),
            pad(out, cell(t["subscribers"]), 6), pad(out, cell(t["rate_hz"]), 10),
            out << cell(t["policy"]) << "\n";
      } else {
        pad(out, cell(t["name"]), 28), pad(out, cell(t["messages"]), 11), pad(out, cell(t["bytes"]), 13),
            pad(out, cell(t["drops"]), 8), pad(out, cell(t["slots_in_use"]), 8),
            pad(out, cell(t["latency_p50_ns"]), 12), out << cell(t["latency_p99_ns"]) << "\n";
      }
    }
  }
  if (format == StatsFormat::kFull && topics) {
    // Queueing metrics per subscriber (each is a queue), over the daemon's sliding window: arrival rate λ,
    // take rate, service rate μ (take rate while backlogged; "-" if never), ρ = λ/μ, mean backlog L, mean
    // publish -> take wait W, and Little's law (L against λW) with its relative error; then the sleeps that
    // ended at their cap with a message waiting (Subscriber::late_wakeups).
    bool header = false;
    for (const toml::node& n : *topics) {
      const toml::node_view<const toml::node> t{n};
      const toml::array* subs = t["subscriber"].as_array();
      if (!subs) continue;
      for (const toml::node& sn : *subs) {
        const toml::node_view<const toml::node> sub{sn};
        const auto m = sub["metrics"];
        if (!m) continue;
        // μ (and so ρ) is known only if the subscriber had a standing backlog for a sampling interval.
        const bool busy = m["busy_s"].value_or(0.0) > 0;
        if (!header) {
          out << "\n";
          pad(out, "TOPIC", 28), pad(out, "SUB", 6), pad(out, "ARRIVE/s", 10), pad(out, "TAKE/s", 10),
              pad(out, "SERVE/s", 10), pad(out, "UTIL", 7), pad(out, "L", 9), pad(out, "W_MS", 10),
              pad(out, "LAMBDA*W", 10), pad(out, "LITTLE_ERR", 12), out << "LATE_WAKEUPS\n";
          header = true;
        }
        pad(out, cell(t["name"]), 28), pad(out, cell(sub["id"]), 6),
            pad(out, number(m["arrival_rate"], 1), 10), pad(out, number(m["throughput"], 1), 10),
            pad(out, busy ? number(m["service_rate"], 1) : "-", 10),
            pad(out, busy ? number(m["utilisation"], 2) : "-", 7), pad(out, number(m["queue_length"], 2), 9),
            pad(out, number(m["waiting_time_s"], 3, 1e3), 10),
            pad(out, number(m["littles_law_lambda_w"], 2), 10),
            pad(out, number(m["littles_law_error"], 2), 12), out << cell(sub["late_wakeups"]) << "\n";
      }
    }
  }
  if (const toml::array* processes = doc["process"].as_array(); processes && !processes->empty()) {
    out << "\n";
    pad(out, "PROCESS", 20), pad(out, "PID", 9), pad(out, "STATE", 10), out << "RESTARTS\n";
    for (const toml::node& n : *processes) {
      const toml::node_view<const toml::node> p{n};
      pad(out, cell(p["name"]), 20), pad(out, cell(p["pid"]), 9), pad(out, cell(p["state"]), 10),
          out << cell(p["restarts"]) << "\n";
    }
  }
  if (format == StatsFormat::kFull) {
    out << "\n";
    pad(out, "PARTICIPANT", 13), pad(out, "PID", 9), pad(out, "UID", 7), pad(out, "ENDPOINTS", 11),
        out << "NAME\n";
    if (const toml::array* people = doc["participant"].as_array()) {
      for (const toml::node& n : *people) {
        const toml::node_view<const toml::node> p{n};
        pad(out, cell(p["id"]), 13), pad(out, cell(p["pid"]), 9), pad(out, cell(p["uid"]), 7),
            pad(out, cell(p["endpoints"]), 11), out << cell(p["name"]) << "\n";
      }
    }
  }
  return Status::Ok();
}

#ifdef SHMBUS_WITH_BRIDGE
std::string with_bridge_stats(Bus& bus, const std::string& document) {
  auto bridges = bridge::read_bridge_stats(bus, document);
  if (!bridges || bridges.value().empty()) return document;
  try {
    toml::table doc = toml::parse(document);
    toml::array list;
    for (const auto& b : bridges.value()) {
      toml::table t = toml::parse(b.toml);
      t.insert_or_assign("name", b.name);
      list.push_back(std::move(t));
    }
    doc.insert_or_assign("bridge", std::move(list));
    std::ostringstream out;
    out << doc;
    return out.str();
  } catch (const toml::parse_error&) {
    return document;  // a garbled bridge document: show the daemon's part
  }
}
#endif

}  // namespace shmbus::tools

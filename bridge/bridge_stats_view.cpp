#include "bridge/bridge_stats_view.h"

#include <toml++/toml.h>

namespace shmbus::bridge {
namespace {

constexpr std::string_view kPrefix = "shmbus/bridge/";
constexpr std::string_view kSuffix = "/stats";

std::string cell(const toml::node_view<const toml::node>& n) {
  if (auto s = n.value<std::string>()) return *s;
  if (auto i = n.value<int64_t>()) return std::to_string(*i);
  return "-";
}

void pad(std::ostream& out, const std::string& s, std::size_t width) {
  out << s << std::string(s.size() < width ? width - s.size() : 1, ' ');
}

}  // namespace

Result<std::vector<BridgeStatsDocument>> read_bridge_stats(Bus& bus, const std::string& daemon_statistics,
                                                           std::chrono::milliseconds wait) {
  toml::table doc;
  try {
    doc = toml::parse(daemon_statistics);
  } catch (const toml::parse_error& e) {
    return Status{Errc::kProtocolError,
                  std::string("unreadable daemon statistics: ") + std::string(e.description())};
  }
  std::vector<BridgeStatsDocument> found;
  const toml::array* topics = doc["topic"].as_array();
  if (!topics) return found;
  for (const toml::node& t : *topics) {
    auto name = toml::node_view<const toml::node>{t}["name"].value<std::string>();
    if (!name || name->size() <= kPrefix.size() + kSuffix.size() || name->rfind(kPrefix, 0) != 0 ||
        name->compare(name->size() - kSuffix.size(), kSuffix.size(), kSuffix) != 0) {
      continue;
    }
    SubscriberOptions o;
    o.history = 1;  // the bridge keeps its latest document as history
    auto sub = bus.subscriber(*name, o);
    if (!sub) continue;
    if (Sample m = sub->take(wait)) {
      found.push_back({name->substr(kPrefix.size(), name->size() - kPrefix.size() - kSuffix.size()),
                       std::string(reinterpret_cast<const char*>(m.data()), m.size())});
    }
  }
  return found;
}

Status render_bridge_stats(Bus& bus, const std::string& daemon_statistics, bool json, std::ostream& out) {
  auto docs = read_bridge_stats(bus, daemon_statistics);
  if (!docs) return docs.status();
  if (docs->empty()) return Status::Ok();
  if (!json) {
    out << "\n";
    for (auto [h, w] : {std::pair{"BRIDGE", 14},
                        {"OUT_MSGS", 11},
                        {"OUT_BYTES", 13},
                        {"IN_MSGS", 11},
                        {"IN_BYTES", 13},
                        {"LOST", 8},
                        {"LATE", 8},
                        {"DUPS", 8},
                        {"MALFORMED", 10},
                        {"REFUSED", 8}}) {
      pad(out, h, w);
    }
    out << "\n";
  }
  for (const auto& d : docs.value()) {
    toml::table t;
    try {
      t = toml::parse(d.toml);
    } catch (const toml::parse_error&) {
      out << d.name << ": unreadable statistics\n";
      continue;
    }
    if (json) {
      out << toml::json_formatter(t) << "\n";
      continue;
    }
    const toml::node_view<const toml::node> v{t};
    pad(out, d.name, 14), pad(out, cell(v["out"]["messages"]), 11), pad(out, cell(v["out"]["bytes"]), 13);
    pad(out, cell(v["in"]["messages"]), 11), pad(out, cell(v["in"]["bytes"]), 13);
    // Lost: skipped and never filled late along another path. As uint64_t, as the bridge counts them (the
    // document carries them as int64: modular arithmetic, so exact and never an overflow).
    pad(out,
        std::to_string(static_cast<uint64_t>(v["in"]["gaps"].value_or<int64_t>(0)) -
                       static_cast<uint64_t>(v["in"]["gaps_filled"].value_or<int64_t>(0))),
        8);
    pad(out, cell(v["in"]["late"]), 8);
    pad(out, cell(v["in"]["duplicates"]), 8);
    pad(out,
        std::to_string(v["in"]["malformed"].value_or<int64_t>(0) +
                       v["in"]["unknown_version"].value_or<int64_t>(0)),
        10);
    out << cell(v["auth"]["refused"]) << "\n";
    for (const char* kind : {"peer", "listener"}) {
      if (const toml::array* links = t[kind].as_array()) {
        for (const toml::node& l : *links) {
          const toml::node_view<const toml::node> link{l};
          out << "  " << kind << " " << cell(link["endpoint"]) << " " << cell(link["state"])
              << " (connections " << cell(link["connections"]) << ", connects " << cell(link["connects"])
              << ", disconnects " << cell(link["disconnects"]) << ", handshake failures "
              << cell(link["handshake_failures"]) << ")\n";
        }
      }
    }
    if (const toml::array* streams = t["stream"].as_array()) {
      for (const toml::node& s : *streams) {
        const toml::node_view<const toml::node> st{s};
        if (st["missing"].value_or<int64_t>(0) == 0) continue;
        out << "  gap: origin " << cell(st["origin_id"]) << " topic " << cell(st["topic"]) << " missing "
            << cell(st["missing"]) << " of " << cell(st["last_sequence"]) << "\n";
      }
    }
  }
  return Status::Ok();
}

}  // namespace shmbus::bridge

#include "bridge/stats_document.h"

#include <unistd.h>

#include <toml++/toml.h>
#include <algorithm>
#include <cstdio>
#include <sstream>
#include <vector>

namespace shmbus::bridge {
namespace {

std::string hex(uint64_t v) {
  char buf[20];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(v));
  return buf;
}

int64_t n(const std::atomic<uint64_t>& a) {
  return static_cast<int64_t>(a.load(std::memory_order_relaxed));
}

toml::array links(const std::map<std::string, LinkState>& all) {
  toml::array out;
  for (const auto& [endpoint, s] : all) {
    out.push_back(toml::table{{"endpoint", endpoint},
                              {"state", s.state},
                              {"connections", static_cast<int64_t>(s.connections)},
                              {"connects", static_cast<int64_t>(s.connects)},
                              {"disconnects", static_cast<int64_t>(s.disconnects)},
                              {"handshake_failures", static_cast<int64_t>(s.handshake_failures)}});
  }
  return out;
}

}  // namespace

std::string stats_topic(std::string_view bridge_name) {
  return "shmbus/bridge/" + std::string(bridge_name) + "/stats";
}

std::string render_stats_document(const StatsInput& in) {
  const Counters& c = in.counters;
  toml::table doc;
  doc.insert("bridge", toml::table{{"name", in.config.name},
                                   {"origin_id", hex(in.config.origin_id)},
                                   {"epoch_ns", static_cast<int64_t>(in.epoch)},
                                   {"pid", static_cast<int64_t>(getpid())},
                                   {"uptime_ms", static_cast<int64_t>(in.uptime_ms)},
                                   {"bus", in.bus_connected ? "connected" : "disconnected"},
                                   {"curve", in.config.curve},
                                   {"lossless", in.config.lossless}});
  doc.insert("out", toml::table{{"messages", n(c.messages_out)},
                                {"bytes", n(c.bytes_out)},
                                {"relayed", n(c.relayed_out)},
                                {"send_dropped", n(c.send_dropped)},
                                {"local_dropped", n(c.local_dropped)},
                                {"remote_topics", n(c.remote_topics)},
                                {"unselected_subscriptions", n(c.unselected_subscriptions)}});
  doc.insert("in", toml::table{{"messages", n(c.messages_in)},
                               {"bytes", n(c.bytes_in)},
                               {"gaps", n(c.gaps)},
                               {"late", n(c.late)},
                               {"gaps_filled", n(c.gaps_filled)},
                               {"duplicates", n(c.duplicates)},
                               {"own_origin", n(c.own_origin)},
                               {"stale_epoch", n(c.stale_epoch)},
                               {"malformed", n(c.malformed)},
                               {"unknown_version", n(c.unknown_version)},
                               {"hop_limit", n(c.hop_limit)},
                               {"unselected", n(c.unselected)},
                               {"unsubscribed", n(c.unsubscribed)},
                               {"too_large", n(c.too_large)},
                               {"publish_failed", n(c.publish_failed)},
                               {"relay_dropped", n(c.relay_dropped)},
                               {"subscribed_topics", static_cast<int64_t>(in.subscribed_topics)},
                               {"local_publishers", static_cast<int64_t>(in.local_publishers)}});
  doc.insert("auth", toml::table{{"accepted", n(c.auth_accepted)}, {"refused", n(c.auth_refused)}});
  doc.insert("peer", links(in.links.peers()));
  doc.insert("listener", links(in.links.listeners()));
  // At most kMaxStreamRows rows, those missing the most messages first: the document must fit its topic
  // however many origins and topics pass (it stopped being published past 256 KiB); [in] counts them all.
  struct Row {
    uint64_t origin, epoch;
    const std::string* topic;
    const SequenceTracker::TopicState* state;
  };
  std::vector<Row> rows;
  in.tracker.for_each(
      [&](uint64_t origin, uint64_t epoch, const std::string& topic, const SequenceTracker::TopicState& s) {
        rows.push_back({origin, epoch, &topic, &s});
      });
  const std::size_t listed = std::min(rows.size(), kMaxStreamRows);
  std::partial_sort(rows.begin(), rows.begin() + static_cast<std::ptrdiff_t>(listed), rows.end(),
                    [](const Row& a, const Row& b) {
                      return a.state->missing != b.state->missing ? a.state->missing > b.state->missing
                                                                  : a.state->delivered > b.state->delivered;
                    });
  toml::array streams;
  for (std::size_t i = 0; i < listed; ++i) {
    const Row& r = rows[i];
    streams.push_back(toml::table{{"origin_id", hex(r.origin)},
                                  {"epoch_ns", static_cast<int64_t>(r.epoch)},
                                  {"topic", *r.topic},
                                  {"delivered", static_cast<int64_t>(r.state->delivered)},
                                  {"missing", static_cast<int64_t>(r.state->missing)},
                                  {"last_sequence", static_cast<int64_t>(r.state->last)}});
  }
  if (toml::table* t = doc["in"].as_table()) {
    t->insert("streams", static_cast<int64_t>(rows.size()));
    t->insert("streams_listed", static_cast<int64_t>(listed));
  }
  doc.insert("stream", std::move(streams));
  std::ostringstream out;
  out << doc << "\n";
  return out.str();
}

}  // namespace shmbus::bridge

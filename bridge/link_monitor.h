// Connection state of the bridge's links, from ZeroMQ socket monitor events: one LinkState per peer we
// connect to (XSUB) and one per endpoint we listen on (XPUB). Owned by the inbound thread.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>

namespace shmbus::bridge {

struct LinkState {
  std::string state = "connecting";  // connecting, connected, disconnected, auth-failed, handshake-failed
  uint64_t connections = 0;          // current (listeners: peers connected to us)
  uint64_t connects = 0;             // handshakes completed
  uint64_t disconnects = 0;
  uint64_t handshake_failures = 0;  // refused keys included
};

struct MonitorEvent {
  uint16_t event = 0;
  uint32_t value = 0;
  std::string address;
};

// The next event on a monitor PAIR socket, or nullopt if none is waiting (or it was malformed).
std::optional<MonitorEvent> read_monitor_event(void* monitor);

class LinkMonitor {
 public:
  // `listening`: an XPUB endpoint (peers connect to us); else a peer we connect to.
  void add(const std::string& endpoint, bool listening);
  // Applies an event; returns a one-line description when the state changed (for the log), else empty.
  std::string apply(const MonitorEvent& e, bool listening);
  const std::map<std::string, LinkState>& peers() const { return peers_; }
  const std::map<std::string, LinkState>& listeners() const { return listeners_; }

 private:
  std::map<std::string, LinkState> peers_;
  std::map<std::string, LinkState> listeners_;
};

}  // namespace shmbus::bridge

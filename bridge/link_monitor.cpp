#include "bridge/link_monitor.h"

#include <zmq.h>

#include <cstring>

#include "bridge/zmq_message.h"

namespace shmbus::bridge {

std::optional<MonitorEvent> read_monitor_event(void* monitor) {
  // libzmq 4.x: frame 1 is a 16-bit event id and a 32-bit value, frame 2 the endpoint address.
  ZmqMessage first, second;
  if (zmq_msg_recv(first.get(), monitor, ZMQ_DONTWAIT) < 0) return std::nullopt;
  if (!first.more()) return std::nullopt;
  if (zmq_msg_recv(second.get(), monitor, 0) < 0) return std::nullopt;
  while (second.more()) {
    ZmqMessage extra;
    if (zmq_msg_recv(extra.get(), monitor, 0) < 0 || !extra.more()) break;
  }
  if (first.bytes().size() != 6) return std::nullopt;
  MonitorEvent e;
  std::memcpy(&e.event, first.bytes().data(), 2);
  std::memcpy(&e.value, first.bytes().data() + 2, 4);
  e.address.assign(reinterpret_cast<const char*>(second.bytes().data()), second.bytes().size());
  return e;
}

void LinkMonitor::add(const std::string& endpoint, bool listening) {
  LinkState s;
  s.state = listening ? "listening" : "connecting";
  (listening ? listeners_ : peers_)[endpoint] = s;
}

std::string LinkMonitor::apply(const MonitorEvent& e, bool listening) {
  auto& links = listening ? listeners_ : peers_;
  // Listener events name the bound endpoint; a wildcard port shows up resolved, so match what we have.
  auto it = links.find(e.address);
  if (it == links.end() && links.size() == 1 && listening) it = links.begin();
  if (it == links.end()) it = links.emplace(e.address, LinkState{}).first;
  LinkState& s = it->second;
  const std::string before = s.state;
  switch (e.event) {
    case ZMQ_EVENT_HANDSHAKE_SUCCEEDED:
      ++s.connects;
      if (listening) {
        ++s.connections;
      } else {
        s.connections = 1;
        s.state = "connected";
      }
      break;
    case ZMQ_EVENT_DISCONNECTED:
      ++s.disconnects;
      if (listening) {
        if (s.connections > 0) --s.connections;
      } else {
        s.connections = 0;
        // A refused handshake is followed by a disconnect: keep saying why.
        if (s.state != "auth-failed" && s.state != "handshake-failed") s.state = "disconnected";
      }
      break;
    case ZMQ_EVENT_HANDSHAKE_FAILED_AUTH:
      ++s.handshake_failures;
      if (!listening) s.state = "auth-failed";
      break;
    case ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL:
    case ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL:
      ++s.handshake_failures;
      if (!listening) s.state = "handshake-failed";
      break;
    case ZMQ_EVENT_CONNECT_RETRIED:
      if (!listening && s.state == "connected") s.state = "connecting";
      break;
    default:
      break;
  }
  if (s.state == before && !(listening && (e.event == ZMQ_EVENT_HANDSHAKE_FAILED_AUTH ||
                                           e.event == ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL ||
                                           e.event == ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL))) {
    return {};
  }
  return (listening ? "listener " : "peer ") + it->first + ": " +
         (listening ? "handshake failed" : before + " -> " + s.state);
}

}  // namespace shmbus::bridge

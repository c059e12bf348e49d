// Names the configured peer a monitor event of the bridge's XSUB is about. libzmq names a connection's
// events by the endpoint it was given (tcp://host:port) until its first retry, and by the address it resolved
// (tcp://127.0.0.1:port) from then on; the link state and the redial of dropped peers key on the configured
// endpoint, so that a peer given by host name is one link, and its own retries cancel its redial.
//
// Owned by the inbound thread.
#pragma once

#include <chrono>
#include <string>
#include <vector>

namespace shmbus::bridge {

class PeerEndpoints {
 public:
  explicit PeerEndpoints(const std::vector<std::string>& configured);

  // The configured endpoint `address` belongs to: `address` itself if it is one; else the endpoint given by
  // host name on the same port, if only one is; else the first of those whose host resolves to `address`'s;
  // else `address`. Only several host-name peers on one port need a lookup (getaddrinfo, so /etc/hosts or
  // DNS: blocking), at most once per kLookupEvery each.
  std::string configured_endpoint(const std::string& address);

  static constexpr std::chrono::seconds kLookupEvery{10};

 private:
  struct ByHostName {
    std::string endpoint;  // as configured
    std::string host;
    std::string port;
    std::vector<std::string> addresses;  // numeric, as inet_ntop writes them
    std::chrono::steady_clock::time_point looked_up{};
    bool ever_looked_up = false;
  };
  std::vector<std::string> by_address_;  // endpoints that name a numeric address
  std::vector<ByHostName> by_host_name_;
};

}  // namespace shmbus::bridge

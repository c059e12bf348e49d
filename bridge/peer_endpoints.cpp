#include "bridge/peer_endpoints.h"

#include <arpa/inet.h>
#include <netdb.h>

#include <algorithm>
#include <optional>

namespace shmbus::bridge {
namespace {

struct HostPort {
  std::string host;  // without the brackets of an IPv6 address
  std::string port;
};

// "tcp://host:port" split, or nullopt for another transport or no port.
std::optional<HostPort> split_tcp(const std::string& endpoint) {
  constexpr std::string_view kTcp = "tcp://";
  if (endpoint.rfind(kTcp, 0) != 0) return std::nullopt;
  const std::size_t colon = endpoint.rfind(':');
  if (colon == std::string::npos || colon < kTcp.size()) return std::nullopt;
  HostPort hp{endpoint.substr(kTcp.size(), colon - kTcp.size()), endpoint.substr(colon + 1)};
  if (hp.host.size() >= 2 && hp.host.front() == '[' && hp.host.back() == ']')
    hp.host = hp.host.substr(1, hp.host.size() - 2);
  return hp;
}

// `host` in inet_ntop's form if it is a numeric IPv4 or IPv6 address, else nullopt.
std::optional<std::string> numeric(const std::string& host) {
  unsigned char bytes[sizeof(in6_addr)];
  char text[INET6_ADDRSTRLEN];
  for (int family : {AF_INET, AF_INET6}) {
    if (inet_pton(family, host.c_str(), bytes) == 1 && inet_ntop(family, bytes, text, sizeof text) != nullptr)
      return std::string(text);
  }
  return std::nullopt;
}

// Where `a`'s address bytes are, for inet_ntop; nullptr for a family other than IPv4 and IPv6.
const void* address_bytes(const sockaddr* a) {
  if (a->sa_family == AF_INET) return &reinterpret_cast<const sockaddr_in*>(a)->sin_addr;
  if (a->sa_family == AF_INET6) return &reinterpret_cast<const sockaddr_in6*>(a)->sin6_addr;
  return nullptr;
}

// The numeric addresses `host` resolves to (empty if the lookup fails).
std::vector<std::string> look_up(const std::string& host, const std::string& port) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* found = nullptr;
  std::vector<std::string> addresses;
  if (getaddrinfo(host.c_str(), port.c_str(), &hints, &found) != 0) return addresses;
  for (const addrinfo* a = found; a != nullptr; a = a->ai_next) {
    char text[INET6_ADDRSTRLEN];
    const void* bytes = address_bytes(a->ai_addr);
    if (bytes != nullptr && inet_ntop(a->ai_family, bytes, text, sizeof text) != nullptr)
      addresses.emplace_back(text);
  }
  freeaddrinfo(found);
  return addresses;
}

}  // namespace

PeerEndpoints::PeerEndpoints(const std::vector<std::string>& configured) {
  for (const std::string& endpoint : configured) {
    const auto hp = split_tcp(endpoint);
    if (!hp || numeric(hp->host)) {
      by_address_.push_back(endpoint);
    } else {
      by_host_name_.push_back({.endpoint = endpoint, .host = hp->host, .port = hp->port});
    }
  }
}

std::string PeerEndpoints::configured_endpoint(const std::string& address) {
  if (std::find(by_address_.begin(), by_address_.end(), address) != by_address_.end()) return address;
  const auto hp = split_tcp(address);
  const auto ip = hp ? numeric(hp->host) : std::nullopt;
  // Events come only from peers we dial: the one peer given by host name on this port, if there is one,
  // is the one, without a lookup (which may block on DNS).
  const ByHostName* only = nullptr;
  int on_port = 0;
  for (const ByHostName& named : by_host_name_) {
    if (named.endpoint == address) return address;
    if (ip && named.port == hp->port) ++on_port, only = &named;
  }
  if (on_port == 1) return only->endpoint;
  for (ByHostName& named : by_host_name_) {
    if (!ip || named.port != hp->port) continue;
    const auto now = std::chrono::steady_clock::now();
    if (!named.ever_looked_up || now - named.looked_up >= kLookupEvery) {
      named.addresses = look_up(named.host, named.port);
      named.looked_up = now;
      named.ever_looked_up = true;
    }
    if (std::find(named.addresses.begin(), named.addresses.end(), *ip) != named.addresses.end())
      return named.endpoint;
  }
  return address;
}

}  // namespace shmbus::bridge

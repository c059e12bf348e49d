// Hosts for bridge tests: either network namespaces joined by veth pairs (real, separate network stacks) or,
// where namespaces cannot be made, plain loopback on this host. Created by one test, removed on destruction
// (pass or fail); namespaces left by a killed earlier run are swept at the next creation.
#pragma once

#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace shmbus::test {

class Topology {
 public:
  // `links`: pairs of host indices joined by a veth pair (each link its own 10.77.<link>.0/24 subnet; host i
  // is .i+1). On loopback every host reaches every other at 127.0.0.1.
  static std::unique_ptr<Topology> loopback(int hosts);
  // nullptr and *why set if namespaces cannot be created here.
  static std::unique_ptr<Topology> namespaces(int hosts, const std::vector<std::pair<int, int>>& links,
                                              std::string* why);
  ~Topology();

  bool uses_namespaces() const { return !namespaces_.empty(); }
  int hosts() const { return hosts_; }
  // argv prefix that runs a program on host i ("ip netns exec NAME", or nothing).
  std::vector<std::string> exec_prefix(int host) const;
  // The address host `host` has on the link it shares with `other` (127.0.0.1 on loopback).
  std::string address(int host, int other) const;
  // Every address of a host (one per link it is on).
  std::vector<std::string> addresses(int host) const;
  // Bytes host `host` has sent on its link to `other` (namespaces only; 0 otherwise).
  uint64_t tx_bytes(int host, int other) const;

 private:
  Topology() = default;
  struct Link {
    int a, b;
    std::string veth_a, veth_b;
    int subnet;
  };
  const Link* link(int host, int other) const;
  int hosts_ = 0;
  std::vector<std::string> namespaces_;
  std::vector<Link> links_;
};

// Why namespaces cannot be used on this machine (empty if they can): probed once per process.
std::string namespaces_unavailable_reason();
// The path of the `ip` program.
std::string ip_program();

}  // namespace shmbus::test

#include "support/topology.h"

#include <signal.h>
#include <unistd.h>

#include <sstream>

#include "support/test_daemon.h"

namespace shmbus::test {
namespace {

bool ip(const std::vector<std::string>& args, std::string* out = nullptr) {
  std::vector<std::string> argv{ip_program()};
  argv.insert(argv.end(), args.begin(), args.end());
  ProcessResult r = run_process(argv, 20);
  if (out) *out = r.out;
  return r.status == 0;
}

// Namespaces named sbb<pid>n<k> whose creating process is gone: leftovers of a run that was killed.
void sweep_leftovers() {
  std::string list;
  if (!ip({"netns", "list"}, &list)) return;
  std::istringstream in(list);
  for (std::string line; std::getline(in, line);) {
    const std::string name = line.substr(0, line.find(' '));
    if (name.rfind("sbb", 0) != 0) continue;
    const auto n = name.find('n', 3);
    if (n == std::string::npos) continue;
    const pid_t owner = static_cast<pid_t>(std::atol(name.substr(3, n - 3).c_str()));
    if (owner > 0 && ::kill(owner, 0) != 0 && errno == ESRCH) ip({"netns", "delete", name});
  }
}

}  // namespace

std::string ip_program() {
  for (const char* p : {"/usr/sbin/ip", "/sbin/ip", "/usr/bin/ip", "/bin/ip"}) {
    if (access(p, X_OK) == 0) return p;
  }
  return "ip";
}

std::string namespaces_unavailable_reason() {
  static const std::string reason = [] {
    if (geteuid() != 0)
      return std::string("network namespaces need root (euid ") + std::to_string(geteuid()) + ")";
    if (access(ip_program().c_str(), X_OK) != 0)
      return std::string("the ip program (iproute2) is not installed");
    const std::string probe = "sbb" + std::to_string(getpid()) + "n99";
    std::string out;
    if (!ip({"netns", "add", probe}, &out)) return "`ip netns add` failed: " + out;
    const std::string veth = "sbb" + std::to_string(getpid()) + "p";
    const bool veth_ok = ip({"link", "add", veth + "0", "type", "veth", "peer", "name", veth + "1"});
    if (veth_ok) ip({"link", "delete", veth + "0"});
    ip({"netns", "delete", probe});
    return veth_ok ? std::string() : std::string("veth pairs cannot be created here");
  }();
  return reason;
}

std::unique_ptr<Topology> Topology::loopback(int hosts) {
  std::unique_ptr<Topology> t(new Topology());
  t->hosts_ = hosts;
  return t;
}

std::unique_ptr<Topology> Topology::namespaces(int hosts, const std::vector<std::pair<int, int>>& links,
                                               std::string* why) {
  *why = namespaces_unavailable_reason();
  if (!why->empty()) return nullptr;
  sweep_leftovers();
  static int counter = 0;
  const std::string base = "sbb" + std::to_string(getpid());
  std::unique_ptr<Topology> t(new Topology());
  t->hosts_ = hosts;
  auto fail = [&](const std::string& what) {
    *why = what;
    return nullptr;
  };
  for (int h = 0; h < hosts; ++h) {
    const std::string ns = base + "n" + std::to_string(counter++);
    if (!ip({"netns", "add", ns})) return fail("ip netns add " + ns + " failed");
    t->namespaces_.push_back(ns);
    ip({"-n", ns, "link", "set", "lo", "up"});
  }
  int subnet = 1;
  for (auto [a, b] : links) {
    Link l{a, b, base + "v" + std::to_string(counter) + "a", base + "v" + std::to_string(counter) + "b",
           subnet++};
    ++counter;
    if (!ip({"link", "add", l.veth_a, "type", "veth", "peer", "name", l.veth_b}))
      return fail("veth creation failed");
    for (auto [dev, host] : {std::pair{l.veth_a, a}, std::pair{l.veth_b, b}}) {
      const std::string& ns = t->namespaces_[static_cast<std::size_t>(host)];
      const std::string addr = "10.77." + std::to_string(l.subnet) + "." + std::to_string(host + 1) + "/24";
      if (!ip({"link", "set", dev, "netns", ns}) || !ip({"-n", ns, "addr", "add", addr, "dev", dev}) ||
          !ip({"-n", ns, "link", "set", dev, "up"})) {
        return fail("configuring " + dev + " in " + ns + " failed");
      }
    }
    t->links_.push_back(l);
  }
  return t;
}

Topology::~Topology() {
  // Deleting a namespace deletes the veth ends inside it, and with them their peers.
  for (const auto& ns : namespaces_) ip({"netns", "delete", ns});
}

std::vector<std::string> Topology::exec_prefix(int host) const {
  if (namespaces_.empty()) return {};
  return {ip_program(), "netns", "exec", namespaces_[static_cast<std::size_t>(host)]};
}

const Topology::Link* Topology::link(int host, int other) const {
  for (const auto& l : links_) {
    if ((l.a == host && l.b == other) || (l.a == other && l.b == host)) return &l;
  }
  return nullptr;
}

std::string Topology::address(int host, int other) const {
  const Link* l = link(host, other);
  if (!l) return "127.0.0.1";
  return "10.77." + std::to_string(l->subnet) + "." + std::to_string(host + 1);
}

std::vector<std::string> Topology::addresses(int host) const {
  std::vector<std::string> out;
  for (const auto& l : links_) {
    if (l.a == host || l.b == host)
      out.push_back("10.77." + std::to_string(l.subnet) + "." + std::to_string(host + 1));
  }
  if (out.empty()) out.push_back("127.0.0.1");
  return out;
}

uint64_t Topology::tx_bytes(int host, int other) const {
  const Link* l = link(host, other);
  if (!l) return 0;
  const std::string dev = l->a == host ? l->veth_a : l->veth_b;
  std::vector<std::string> argv = exec_prefix(host);
  argv.insert(argv.end(), {"/bin/cat", "/sys/class/net/" + dev + "/statistics/tx_bytes"});
  return std::strtoull(run_process(argv, 10).out.c_str(), nullptr, 10);
}

}  // namespace shmbus::test

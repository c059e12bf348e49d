// The fixture of the bridge scenario tests: each test runs twice, over network namespaces (skipped with the
// reason where they cannot be made) and over loopback (always).
#pragma once

#include <gtest/gtest.h>

#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "support/bridge_host.h"
#include "support/topology.h"

namespace shmbus::test {

enum class Net { kNamespaces, kLoopback };

// Polls `f` every 5 ms until it holds, at most `limit` (a liveness bound, not a timing check).
inline bool wait_until(const std::function<bool()>& f,
                       std::chrono::seconds limit = std::chrono::seconds(20)) {
  const auto deadline = std::chrono::steady_clock::now() + limit;
  while (std::chrono::steady_clock::now() < deadline) {
    if (f()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return false;
}

inline std::string net_name(const ::testing::TestParamInfo<Net>& info) {
  return info.param == Net::kNamespaces ? "Namespaces" : "Loopback";
}

class BridgeTest : public ::testing::TestWithParam<Net> {
 protected:
  // Creates `count` hosts named a, b, c... joined by `links` (namespaces) or on loopback. Skips the test
  // (with the reason, visible in the output) when namespaces are asked for and cannot be made.
  void make_hosts(int count, const std::vector<std::pair<int, int>>& links) {
    if (GetParam() == Net::kNamespaces) {
      std::string why;
      topology_ = Topology::namespaces(count, links, &why);
      if (!topology_)
        GTEST_SKIP() << "network namespaces unavailable (" << why << "); the Loopback variant runs instead";
    } else {
      topology_ = Topology::loopback(count);
    }
    for (int i = 0; i < count; ++i)
      hosts_.push_back(std::make_unique<BridgeHost>(*topology_, i, std::string(1, char('a' + i))));
  }

  BridgeHost& host(int i) { return *hosts_[static_cast<std::size_t>(i)]; }

  // A complete bridge configuration for host i receiving from `peers` and accepting connections from
  // `clients` (their keys on the allow-list), with `rules` ([[rule]] tables) and extra [network] lines.
  std::string config(int i, const std::vector<int>& peers, const std::vector<int>& clients,
                     const std::string& rules, const std::string& network_extra = "", bool curve = true) {
    BridgeHost& h = host(i);
    std::string c = "name = \"" + h.name() + "\"\n" + h.bus_section();
    c += "[network]\nbind = " + h.bind_list() + "\nstats_interval_ms = 200\ndiscovery_interval_ms = 20\n" +
         network_extra + "\n";
    if (curve) {
      c += "[security]\nsecret_key = \"" + h.secret_key() + "\"\nallow = [";
      for (std::size_t k = 0; k < clients.size(); ++k)
        c += (k ? ", \"" : "\"") + host(clients[k]).public_key() + "\"";
      c += "]\n";
    }
    for (int p : peers) {
      c += "[[peer]]\nendpoint = \"" + host(p).endpoint_for(i) + "\"\n";
      if (curve) c += "server_key = \"" + host(p).public_key() + "\"\n";
    }
    return c + rules;
  }

  // Tears hosts down before the topology (namespaces) they run in.
  void TearDown() override {
    hosts_.clear();
    topology_.reset();
  }

  std::unique_ptr<Topology> topology_;
  std::vector<std::unique_ptr<BridgeHost>> hosts_;
};

}  // namespace shmbus::test

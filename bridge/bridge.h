// One running bridge: the ZeroMQ context and sockets, the ZAP handler, and the outbound and inbound threads.
//
// Topology: each bridge binds one XPUB socket (peers connect there to receive what this host offers) and
// connects one XSUB socket to every configured peer (to receive what they offer). Subscriptions travel
// upstream XSUB -> XPUB, so a topic crosses a link only while a subscriber on the far side wants it.
#pragma once

#include <atomic>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "bridge/bridge_config.h"
#include "bridge/bridge_shared.h"
#include "bridge/topic_mapper.h"
#include "bridge/zap_handler.h"
#include "shmbus/status.h"

namespace shmbus::bridge {

class Bridge {
 public:
  // Sets up sockets (binding and connecting) and starts the threads. Errors name the endpoint. If a thread
  // fails (an exception: out of memory, say), the bridge logs it, stops both threads and calls `on_failure`
  // from that thread; failed() is true from then on.
  static Result<std::unique_ptr<Bridge>> start(BridgeConfig config, std::function<void()> on_failure = {});
  ~Bridge();  // stops the threads, closes the sockets, terminates the context
  Bridge(const Bridge&) = delete;
  Bridge& operator=(const Bridge&) = delete;

  // The endpoints actually bound (a '*' port resolved).
  const std::vector<std::string>& bound_endpoints() const { return bound_; }
  void stop();
  bool failed() const { return failed_.load(std::memory_order_acquire); }

 private:
  explicit Bridge(BridgeConfig config);
  Status open_sockets();
  void close_sockets();
  // Runs a thread's body; an exception stops the bridge instead of terminating the process.
  void run_thread(const char* name, const std::function<void()>& body);

  BridgeConfig config_;
  TopicMapper mapper_;
  Shared shared_;
  uint64_t epoch_ = 0;
  void* context_ = nullptr;
  void* xpub_ = nullptr;
  void* xsub_ = nullptr;
  void* xpub_monitor_ = nullptr;
  void* xsub_monitor_ = nullptr;
  std::unique_ptr<ZapHandler> zap_;
  std::vector<std::string> bound_;
  std::function<void()> on_failure_;
  std::atomic<bool> failed_{false};
  std::thread outbound_;
  std::thread inbound_;
};

}  // namespace shmbus::bridge

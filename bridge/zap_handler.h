// The ZAP (ZeroMQ authentication protocol, RFC 27) handler: decides which CURVE clients may connect to our
// XPUB. It fails closed: only keys on the allow-list pass, every other request (another mechanism, another
// domain, a malformed request) is refused and logged. It must be bound before the XPUB binds, and the XPUB
// sets ZMQ_ZAP_ENFORCE_DOMAIN so that a missing handler refuses everyone instead of accepting everyone.
#pragma once

#include <string>
#include <thread>
#include <vector>

#include "bridge/bridge_shared.h"
#include "shmbus/status.h"

namespace shmbus::bridge {

inline constexpr const char* kZapDomain = "shmbus-bridge";

class ZapHandler {
 public:
  // Binds inproc://zeromq.zap.01 in `context` and serves it on a thread until stop() or destruction.
  static Result<std::unique_ptr<ZapHandler>> start(void* context, std::vector<std::string> allowed_keys,
                                                   Counters& counters);
  ~ZapHandler();
  void stop();

 private:
  ZapHandler(void* socket, std::vector<std::string> allowed_keys, Counters& counters);
  void run();
  void serve_one();

  void* socket_;
  std::vector<std::string> allowed_;  // Z85
  Counters& counters_;
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

}  // namespace shmbus::bridge

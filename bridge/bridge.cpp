#include "bridge/bridge.h"

#include <spdlog/spdlog.h>
#include <unistd.h>
#include <zmq.h>

#include <chrono>

#include "bridge/inbound.h"
#include "bridge/outbound.h"
#include "bridge/wire_format.h"

// A draft option in libzmq 4.3's header, yet implemented by the library (checked at start: we refuse to run
// CURVE without it).
#ifndef ZMQ_ZAP_ENFORCE_DOMAIN
#define ZMQ_ZAP_ENFORCE_DOMAIN 93
#endif

namespace shmbus::bridge {
namespace {

Status zmq_failure(const std::string& what) {
  return {Errc::kInternal, what + ": " + zmq_strerror(zmq_errno())};
}

void set_int(void* socket, int option, int value) {
  zmq_setsockopt(socket, option, &value, sizeof value);
}

void set_int64(void* socket, int option, int64_t value) {
  zmq_setsockopt(socket, option, &value, sizeof value);
}

void set_key(void* socket, int option, const std::string& z85) {
  zmq_setsockopt(socket, option, z85.c_str(), 41);
}

// Connection-level settings both sides share: quick reconnects, and heartbeats so that a peer host that
// vanishes without closing its connection is noticed in seconds, not at the TCP timeout.
void set_link_options(void* socket) {
  set_int(socket, ZMQ_LINGER, 0);
  set_int(socket, ZMQ_RECONNECT_IVL, 100);
  set_int(socket, ZMQ_RECONNECT_IVL_MAX, 2000);
  set_int(socket, ZMQ_HEARTBEAT_IVL, 1000);
  set_int(socket, ZMQ_HEARTBEAT_TIMEOUT, 3000);
  set_int(socket, ZMQ_HEARTBEAT_TTL, 3000);
}

// The monitor's PAIR must be connected before the socket binds or connects: libzmq 4.3 sends each event
// blocking, so an event with nobody at the other end would hang the monitored socket.
Status monitor(void* context, void* socket, const std::string& endpoint, void** pair) {
  if (zmq_socket_monitor(socket, endpoint.c_str(), ZMQ_EVENT_ALL) != 0)
    return zmq_failure("zmq_socket_monitor");
  *pair = zmq_socket(context, ZMQ_PAIR);
  set_int(*pair, ZMQ_LINGER, 0);
  if (zmq_connect(*pair, endpoint.c_str()) != 0) return zmq_failure("connecting to " + endpoint);
  return Status::Ok();
}

}  // namespace

Bridge::Bridge(BridgeConfig config) : config_(std::move(config)), mapper_(config_.rules) {
  epoch_ = static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(
                                     std::chrono::system_clock::now().time_since_epoch())
                                     .count());
}

Result<std::unique_ptr<Bridge>> Bridge::start(BridgeConfig config, std::function<void()> on_failure) {
  std::unique_ptr<Bridge> b(new Bridge(std::move(config)));
  b->on_failure_ = std::move(on_failure);
  if (auto s = b->open_sockets(); !s.ok()) return s;
  LinkMonitor links;
  for (const auto& e : b->bound_) links.add(e, true);
  for (const auto& p : b->config_.peers) links.add(p.endpoint, false);
  Bridge* raw = b.get();
  b->outbound_ = std::thread([raw] {
    raw->run_thread("outbound", [raw] {
      Outbound(raw->config_, raw->mapper_, raw->xpub_, raw->epoch_, raw->shared_).run();
    });
  });
  b->inbound_ = std::thread([raw, links = std::move(links)]() mutable {
    raw->run_thread("inbound", [raw, &links] {
      Inbound(raw->config_, raw->mapper_, {raw->xsub_, raw->xsub_monitor_, raw->xpub_monitor_}, raw->epoch_,
              std::move(links), raw->shared_)
          .run();
    });
  });
  return b;
}

void Bridge::run_thread(const char* name, const std::function<void()>& body) {
  // The flags first, before anything that allocates (the failure may be out of memory). release: pairs with
  // failed()'s acquire. stop: the other thread stops too (a flag, as in stop()).
  auto fail = [&] {
    failed_.store(true, std::memory_order_release);
    shared_.stop.store(true, std::memory_order_relaxed);
  };
  try {
    body();
    return;
  } catch (const std::exception& e) {
    fail();
    spdlog::critical("{} thread failed: {}; stopping the bridge", name, e.what());
  } catch (...) {
    fail();
    spdlog::critical("{} thread failed: unknown exception; stopping the bridge", name);
  }
  if (on_failure_) on_failure_();
}

Status Bridge::open_sockets() {
  context_ = zmq_ctx_new();
  if (!context_) return zmq_failure("zmq_ctx_new");
  if (config_.curve) {
    // The handler first: with ZMQ_ZAP_ENFORCE_DOMAIN below, no handler means nobody gets in (never everyone).
    auto zap = ZapHandler::start(context_, config_.allowed_keys, shared_.counters);
    if (!zap) return zap.status();
    zap_ = std::move(zap).value();
  } else {
    spdlog::warn("no [security] section: links are neither encrypted nor authenticated");
  }

  xpub_ = zmq_socket(context_, ZMQ_XPUB);
  set_link_options(xpub_);
  set_int64(xpub_, ZMQ_MAXMSGSIZE, kMaxSubscriptionBytes);  // peers send it subscriptions only
  set_int(xpub_, ZMQ_SNDHWM, config_.high_water_mark);
  if (config_.lossless) {
    set_int(xpub_, ZMQ_XPUB_NODROP, 1);
    set_int(xpub_, ZMQ_SNDTIMEO, static_cast<int>(config_.send_timeout.count()));
  }
  if (config_.curve) {
    set_int(xpub_, ZMQ_CURVE_SERVER, 1);
    set_key(xpub_, ZMQ_CURVE_SECRETKEY, config_.secret_key);
    zmq_setsockopt(xpub_, ZMQ_ZAP_DOMAIN, kZapDomain, std::char_traits<char>::length(kZapDomain));
    const int enforce = 1;
    int enforced = 0;
    std::size_t size = sizeof enforced;
    if (zmq_setsockopt(xpub_, ZMQ_ZAP_ENFORCE_DOMAIN, &enforce, sizeof enforce) != 0 ||
        zmq_getsockopt(xpub_, ZMQ_ZAP_ENFORCE_DOMAIN, &enforced, &size) != 0 || enforced != 1) {
      return {Errc::kInternal,
              "this libzmq cannot enforce ZAP authentication (ZMQ_ZAP_ENFORCE_DOMAIN): refusing to run"};
    }
  }
  const std::string tag = std::to_string(getpid()) + "-" + std::to_string(reinterpret_cast<uintptr_t>(this));
  const std::string xpub_monitor = "inproc://shmbus-bridge-monitor-xpub-" + tag;
  const std::string xsub_monitor = "inproc://shmbus-bridge-monitor-xsub-" + tag;
  if (auto st = monitor(context_, xpub_, xpub_monitor, &xpub_monitor_); !st.ok()) return st;
  for (const auto& endpoint : config_.bind) {
    if (zmq_bind(xpub_, endpoint.c_str()) != 0) return zmq_failure("cannot bind " + endpoint);
    char last[256] = {};
    std::size_t size = sizeof last;
    zmq_getsockopt(xpub_, ZMQ_LAST_ENDPOINT, last, &size);
    bound_.emplace_back(last);
  }

  xsub_ = zmq_socket(context_, ZMQ_XSUB);
  set_link_options(xsub_);
  set_int(xsub_, ZMQ_RCVHWM, config_.high_water_mark);
  set_int64(xsub_, ZMQ_MAXMSGSIZE, config_.max_frame_bytes);
  if (auto st = monitor(context_, xsub_, xsub_monitor, &xsub_monitor_); !st.ok()) return st;
  for (const auto& peer : config_.peers) {
    if (config_.curve) {
      // CURVE options are taken per connect(): each peer gets its own server key.
      set_key(xsub_, ZMQ_CURVE_PUBLICKEY, config_.public_key);
      set_key(xsub_, ZMQ_CURVE_SECRETKEY, config_.secret_key);
      set_key(xsub_, ZMQ_CURVE_SERVERKEY, peer.server_key);
    }
    if (zmq_connect(xsub_, peer.endpoint.c_str()) != 0)
      return zmq_failure("cannot connect to " + peer.endpoint);
  }
  return Status::Ok();
}

void Bridge::stop() {
  shared_.stop.store(true, std::memory_order_relaxed);
  if (outbound_.joinable()) outbound_.join();
  if (inbound_.joinable()) inbound_.join();
}

void Bridge::close_sockets() {
  if (xpub_) zmq_socket_monitor(xpub_, nullptr, 0);
  if (xsub_) zmq_socket_monitor(xsub_, nullptr, 0);
  for (void** s : {&xpub_monitor_, &xsub_monitor_, &xpub_, &xsub_}) {
    if (*s) zmq_close(*s), *s = nullptr;
  }
  if (zap_) zap_->stop();
  zap_.reset();
  if (context_) zmq_ctx_term(context_), context_ = nullptr;
}

Bridge::~Bridge() {
  stop();
  close_sockets();
}

}  // namespace shmbus::bridge

#include "bridge/zap_handler.h"

#include <spdlog/spdlog.h>
#include <zmq.h>

#include <algorithm>
#include <array>

#include "bridge/zmq_message.h"

namespace shmbus::bridge {
namespace {

std::string text(ZmqMessage& m) {
  return {reinterpret_cast<const char*>(m.bytes().data()), m.bytes().size()};
}

void send_frame(void* socket, const std::string& s, bool more) {
  zmq_send(socket, s.data(), s.size(), more ? ZMQ_SNDMORE : 0);
}

}  // namespace

Result<std::unique_ptr<ZapHandler>> ZapHandler::start(void* context, std::vector<std::string> allowed_keys,
                                                      Counters& counters) {
  void* socket = zmq_socket(context, ZMQ_REP);
  const int linger = 0;
  if (socket) zmq_setsockopt(socket, ZMQ_LINGER, &linger, sizeof linger);
  if (!socket || zmq_bind(socket, "inproc://zeromq.zap.01") != 0) {
    const std::string why = zmq_strerror(zmq_errno());
    if (socket) zmq_close(socket);
    return Status{Errc::kInternal, "cannot bind the ZAP handler: " + why};
  }
  std::unique_ptr<ZapHandler> h(new ZapHandler(socket, std::move(allowed_keys), counters));
  h->thread_ = std::thread([p = h.get()] { p->run(); });
  return h;
}

ZapHandler::ZapHandler(void* socket, std::vector<std::string> allowed_keys, Counters& counters)
    : socket_(socket), allowed_(std::move(allowed_keys)), counters_(counters) {}

ZapHandler::~ZapHandler() {
  stop();
}

void ZapHandler::stop() {
  // relaxed: a flag polled for a prompt exit; join() orders everything after it.
  stop_.store(true, std::memory_order_relaxed);
  if (thread_.joinable()) thread_.join();
  if (socket_) zmq_close(socket_), socket_ = nullptr;
}

void ZapHandler::run() {
  zmq_pollitem_t item{socket_, 0, ZMQ_POLLIN, 0};
  while (!stop_.load(std::memory_order_relaxed)) {  // relaxed: see stop()
    if (zmq_poll(&item, 1, 100) > 0 && (item.revents & ZMQ_POLLIN)) serve_one();
  }
}

void ZapHandler::serve_one() {
  // Request: version, request id, domain, address, identity, mechanism, credentials... (RFC 27).
  std::vector<ZmqMessage> frames;
  frames.reserve(16);
  do {
    frames.emplace_back();
    if (zmq_msg_recv(frames.back().get(), socket_, 0) < 0) {
      // Nothing received: nothing to answer. Part of a request: answer it (refused, below), or the REP
      // socket stays waiting for a reply and serves no handshake again.
      if (frames.size() == 1) return;
      frames.pop_back();
      break;
    }
  } while (frames.back().more() && frames.size() < 16);
  while (frames.back().more()) {  // a hostile request longer than any valid one: drain, then refuse
    ZmqMessage extra;
    if (zmq_msg_recv(extra.get(), socket_, 0) < 0) break;
    if (!extra.more()) break;
  }
  const std::string request_id = frames.size() > 1 ? text(frames[1]) : "";
  std::string status = "400", reason = "malformed request", who = "?", key = "-";
  if (frames.size() >= 6 && text(frames[0]) == "1.0") {
    who = text(frames[3]);
    const std::string domain = text(frames[2]), mechanism = text(frames[5]);
    if (domain != kZapDomain) {
      reason = "unknown domain \"" + domain + "\"";
    } else if (mechanism != "CURVE" || frames.size() != 7 || frames[6].bytes().size() != 32) {
      reason = "mechanism " + mechanism + " is not allowed";
    } else {
      std::array<char, 41> z85{};
      zmq_z85_encode(z85.data(), reinterpret_cast<const uint8_t*>(frames[6].bytes().data()), 32);
      key.assign(z85.data(), 40);
      if (std::find(allowed_.begin(), allowed_.end(), key) != allowed_.end()) {
        status = "200", reason = "OK";
      } else {
        reason = "key not on the allow-list";
      }
    }
  }
  if (status == "200") {
    counters_.auth_accepted.fetch_add(1, std::memory_order_relaxed);
    spdlog::info("auth: accepted peer {} key {}", who, key);
  } else {
    // ZeroMQ retries refused clients; log the first refusals of a run in full, then one in a hundred.
    const uint64_t n = counters_.auth_refused.fetch_add(1, std::memory_order_relaxed);
    if (n < 10 || n % 100 == 0)
      spdlog::warn("auth: refused peer {} key {}: {} ({} refusals)", who, key, reason, n + 1);
  }
  send_frame(socket_, "1.0", true);
  send_frame(socket_, request_id, true);
  send_frame(socket_, status, true);
  send_frame(socket_, reason, true);
  send_frame(socket_, status == "200" ? key : "", true);  // user id
  send_frame(socket_, "", false);                         // metadata
}

}  // namespace shmbus::bridge

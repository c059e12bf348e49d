// bench-iceoryx: Eclipse iceoryx 2.0 zero-copy publish/subscribe (untyped API), one topic per
// direction. The sender loans a chunk from RouDi's mempools, writes the 8-byte sequence
// number into it and publishes it; the receiver busy polls take(), reads the sequence number
// and releases the chunk. The rest of the payload is never touched: that is the point of
// zero copy, and why its cost should not grow with the size.
//
// Needs a running iox-roudi whose mempools fit the size (run_peers.sh starts one with
// bench/roudi_config.toml).

#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <stdexcept>
#include <string>
#include <thread>

#include "harness/two_process_bench.h"
#include "iceoryx_hoofs/log/logmanager.hpp"
#include "iceoryx_hoofs/platform/platform_settings.hpp"
#include "iceoryx_posh/iceoryx_posh_types.hpp"
#include "iceoryx_posh/popo/untyped_publisher.hpp"
#include "iceoryx_posh/popo/untyped_subscriber.hpp"
#include "iceoryx_posh/runtime/posh_runtime.hpp"

namespace {

constexpr auto kConnectTimeout = std::chrono::seconds(10);

// Without RouDi, initRuntime waits a minute and then terminates the process: check first,
// so a missing daemon is a one-line error. RouDi listens on a datagram Unix socket.
bool roudi_is_running() {
  const std::string path =
      std::string(iox::platform::IOX_UDS_SOCKET_PATH_PREFIX) + iox::roudi::IPC_CHANNEL_ROUDI_NAME;
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  std::strncpy(address.sun_path, path.c_str(), sizeof(address.sun_path) - 1);
  const int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  const bool connected = connect(fd, reinterpret_cast<const sockaddr*>(&address), sizeof(address)) == 0;
  close(fd);
  return connected;
}

iox::capro::IdString_t id(const std::string& text) {
  return iox::capro::IdString_t(iox::cxx::TruncateToCapacity, text);
}

// At most ~16 MiB of chunks queued per subscriber, within iceoryx's limit of 256; the RouDi
// config's pool counts are sized from this rule.
uint64_t queue_capacity_for(uint64_t message_bytes) {
  return std::clamp<uint64_t>((16u << 20) / message_bytes, 4, iox::MAX_SUBSCRIBER_QUEUE_CAPACITY);
}

// Lossless in both directions: a full subscriber queue makes the publisher wait rather than
// drop, so a stream counts delivered messages, not discarded ones.
iox::popo::PublisherOptions publisher_options() {
  iox::popo::PublisherOptions options;
  options.subscriberTooSlowPolicy = iox::popo::ConsumerTooSlowPolicy::WAIT_FOR_CONSUMER;
  return options;
}

iox::popo::SubscriberOptions subscriber_options(uint64_t message_bytes) {
  iox::popo::SubscriberOptions options;
  options.queueCapacity = queue_capacity_for(message_bytes);
  options.queueFullPolicy = iox::popo::QueueFullPolicy::BLOCK_PRODUCER;
  return options;
}

// Registers this process with RouDi; constructed before the ports, which need the runtime.
struct RuntimeRegistration {
  explicit RuntimeRegistration(const std::string& name) {
    // The library logs at debug level by default; keep stderr for what went wrong.
    iox::log::LogManager::GetLogManager().SetDefaultLogLevel(iox::log::LogLevel::kWarn,
                                                             iox::log::LogLevelOutput::kHideLogLevel);
    iox::runtime::PoshRuntime::initRuntime(iox::RuntimeName_t(iox::cxx::TruncateToCapacity, name));
  }
};

class IceoryxTransport {
 public:
  // `instance` is unique to the run (A's pid), so concurrent runs never see each other.
  IceoryxTransport(const std::string& instance, bench::Side side, uint64_t message_bytes)
      : runtime_("shmbus-bench-" + instance + (side == bench::Side::a ? "-a" : "-b")),
        publisher_({id("shmbus-bench"), id(instance), id(side == bench::Side::a ? "a2b" : "b2a")},
                   publisher_options()),
        subscriber_({id("shmbus-bench"), id(instance), id(side == bench::Side::a ? "b2a" : "a2b")},
                    subscriber_options(message_bytes)),
        message_bytes_(static_cast<uint32_t>(message_bytes)) {
    wait_until_connected();
  }
  IceoryxTransport(const IceoryxTransport&) = delete;
  IceoryxTransport& operator=(const IceoryxTransport&) = delete;

  void send(uint64_t seq) {
    auto loaned = publisher_.loan(message_bytes_, alignof(uint64_t));
    if (loaned.has_error())
      throw std::runtime_error(std::string("iceoryx loan of ") + std::to_string(message_bytes_) +
                               " bytes failed: " + iox::popo::asStringLiteral(loaned.get_error()) +
                               " (mempools in roudi_config.toml?)");
    void* chunk = loaned.value();
    std::memcpy(chunk, &seq, sizeof(seq));
    publisher_.publish(chunk);
  }

  uint64_t receive() {
    while (true) {
      auto taken = subscriber_.take();
      if (!taken.has_error()) {
        uint64_t seq;
        std::memcpy(&seq, taken.value(), sizeof(seq));
        subscriber_.release(taken.value());
        return seq;
      }
      if (taken.get_error() != iox::popo::ChunkReceiveResult::NO_CHUNK_AVAILABLE)
        throw std::runtime_error(std::string("iceoryx take failed: ") +
                                 iox::popo::asStringLiteral(taken.get_error()));
    }
  }

 private:
  // Connection is asynchronous (RouDi matches ports in its discovery loop): wait for both
  // our subscription and a subscriber on our topic before the first message.
  void wait_until_connected() {
    const auto deadline = std::chrono::steady_clock::now() + kConnectTimeout;
    while (subscriber_.getSubscriptionState() != iox::SubscribeState::SUBSCRIBED ||
           !publisher_.hasSubscribers()) {
      if (std::chrono::steady_clock::now() > deadline)
        throw std::runtime_error("iceoryx publisher and subscriber did not connect within 10 s");
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
  }

  RuntimeRegistration runtime_;
  iox::popo::UntypedPublisher publisher_;
  iox::popo::UntypedSubscriber subscriber_;
  uint32_t message_bytes_;
};

class IceoryxPeer {
 public:
  static constexpr const char* kName = "iceoryx";
  static constexpr bool kSupportsStream = true;
  static constexpr bool kCopiesPayload = false;

  explicit IceoryxPeer(const bench::BenchOptions& options)
      : instance_(std::to_string(getpid())), message_bytes_(options.size) {
    if (!roudi_is_running())
      throw std::runtime_error(
          "iox-roudi is not running (start it with bench/roudi_config.toml, or use run_peers.sh)");
  }

  IceoryxTransport open(bench::Side side) { return IceoryxTransport(instance_, side, message_bytes_); }

 private:
  std::string instance_;
  uint64_t message_bytes_;
};

}  // namespace

int main(int argc, char** argv) {
  return bench::run_two_process_bench<IceoryxPeer>(argc, argv);
}

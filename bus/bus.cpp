#include "shmbus/bus.h"

#include <unistd.h>

#include <fstream>

#include "bus/log.h"
#include "bus/publisher_core.h"
#include "bus/runtime_paths.h"
#include "bus/subscriber_core.h"
#include "shm/topic_segment_layout.h"
#include "shmbus/topic_name.h"

namespace shmbus {
namespace {

std::string program_name() {
  std::ifstream comm("/proc/self/comm");
  std::string name;
  std::getline(comm, name);
  return name.empty() ? "unknown" : name;
}

}  // namespace

Result<Bus> Bus::connect(const BusOptions& options) {
  const std::string instance = detail::resolve_instance(options.instance);
  if (Status s = detail::validate_instance_name(instance); !s.ok()) return s;
  const std::string dir = detail::resolve_runtime_dir(options.runtime_dir, /*create=*/false);
  const std::string name = options.name.empty() ? program_name() : options.name;
  auto connection =
      detail::Connection::open(detail::socket_path(dir, instance), name, options.control_timeout);
  if (!connection) return connection.status();
  connection.value()->set_instance(instance);
  detail::log().debug("connected to shmbusd instance {} as participant {}", instance,
                      connection.value()->participant_id());
  return Bus(std::move(connection).value());
}

Result<Publisher> Bus::publisher(std::string_view topic, PublisherOptions options) {
  if (Status s = validate_topic_name(topic); !s.ok()) return s;
  auto core = std::make_unique<detail::PublisherCore>();
  core->connection = connection_;
  core->options = options;
  if (Status s = core->attach(std::string(topic)); !s.ok()) return s;
  return Publisher(std::move(core));
}

Result<Subscriber> Bus::subscriber(std::string_view topic, SubscriberOptions options) {
  if (Status s = validate_topic_name(topic); !s.ok()) return s;
  if (options.max_held_samples == 0) return Status{Errc::kInvalidArgument, "max_held_samples must be >= 1"};
  auto core = std::make_unique<detail::SubscriberCore>();
  core->connection = connection_;
  core->options = options;
  if (Status s = core->attach(std::string(topic)); !s.ok()) return s;
  return Subscriber(std::move(core));
}

Result<std::string> Bus::daemon_statistics() {
  return connection_->stats();
}

const std::string& Bus::instance() const {
  return connection_->instance();
}
uint64_t Bus::participant_id() const {
  return connection_->participant_id();
}

}  // namespace shmbus

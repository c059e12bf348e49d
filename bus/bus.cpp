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

detail::OpenRequest make_open(detail::RecordType type, std::string_view topic, const TopicSettings& settings,
                              uint32_t history) {
  detail::OpenRequest request{};
  request.header = detail::make_header(type, sizeof request, 0);
  detail::copy_string(topic, request.topic, sizeof request.topic);
  request.settings = detail::to_wire(settings);
  request.history = history;
  return request;
}

}  // namespace

Result<Bus> Bus::connect(BusOptions options) {
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
  auto request = make_open(detail::RecordType::kOpenPublisher, topic, options.topic, 0);
  detail::Reply reply{};
  int fd = -1;
  if (Status s = connection_->call(&request, sizeof request, &reply, &fd); !s.ok()) return s;
  auto attachment = detail::TopicAttachment::map(fd, reply, std::string(topic));
  if (!attachment) return attachment.status();
  auto core = std::make_unique<detail::PublisherCore>();
  core->connection = connection_;
  core->topic = std::move(attachment).value();
  core->options = options;
  core->slot = reply.slot;
  core->generation = reply.generation;
  core->id = reply.participant_id;
  if (core->slot >= core->topic.geometry.max_publishers) {
    return Status{Errc::kProtocolError, "the daemon assigned an out-of-range publisher slot"};
  }
  connection_->add_endpoint(
      detail::make_reclaim(core->topic.topic_id, detail::kRolePublisher, core->slot, core->id));
  core->writer = shm::RingWriter(core->topic.base(), core->topic.geometry, core->slot, core->generation,
                                 core->topic.lossless);
  detail::log().debug("publisher {} on {} (ring {})", core->id, core->topic.topic, core->slot);
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

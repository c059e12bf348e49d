#include "tools/queue_commands.h"

#include <toml++/toml.h>
#include <cstdio>
#include <iostream>
#include <sstream>

#include "shmbus/rpc.h"
#include "shmbus/work_queue.h"

namespace shmbus::tools {
namespace {

int fail(const Status& s) {
  std::cerr << "shmbus: " << s.to_string() << "\n";
  return 1;
}

std::string printable(std::span<const std::byte> bytes) {
  std::string out;
  for (std::byte b : bytes) {
    const auto c = static_cast<unsigned char>(b);
    if (c >= 0x20 && c < 0x7f) {
      out += static_cast<char>(c);
    } else {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\x%02x", c);
      out += buf;
    }
  }
  return out;
}

std::chrono::nanoseconds seconds(double s) {
  return std::chrono::nanoseconds(static_cast<int64_t>(s * 1e9));
}

}  // namespace

QueueCommands::QueueCommands(CLI::App& app) {
  queue_ = app.add_subcommand("queue", "work queues: list, stats, send, recv, dead, replay, purge");
  queue_->require_subcommand(1);
  list_ = queue_->add_subcommand("list", "queues and services: depth, in flight, dead letters, consumers");
  stats_ =
      queue_->add_subcommand("stats", "one queue's counters and queueing metrics (lambda, mu, rho, L, W)");
  stats_->add_option("queue", name_, "queue name")->required();
  stats_->add_flag("--json", json_, "print JSON");
  send_ = queue_->add_subcommand("send", "send DATA to a queue");
  send_->add_option("queue", name_, "queue name")->required();
  send_->add_option("data", data_, "message text")->required();
  send_->add_option("-p,--priority", priority_, "0..9 (higher first)")->check(CLI::Range(0, 9));
  send_->add_option("-n,--count", count_, "times to send it");
  recv_ = queue_->add_subcommand("recv", "receive, print and acknowledge messages");
  recv_->add_option("queue", name_, "queue name")->required();
  recv_->add_option("-n,--count", count_, "messages to receive (default 1)");
  recv_->add_option("--timeout", timeout_s_, "seconds to wait for each (default 5); exit 3 when none came");
  dead_ = queue_->add_subcommand("dead", "print a queue's dead letters");
  dead_->add_option("queue", name_, "queue name")->required();
  replay_ = queue_->add_subcommand("replay", "move a queue's dead letters back to it");
  replay_->add_option("queue", name_, "queue name")->required();
  purge_ = queue_->add_subcommand("purge", "drop a queue's dead letters");
  purge_->add_option("queue", name_, "queue name")->required();
  call_ = app.add_subcommand("call", "call SERVICE with DATA and print the response");
  call_->add_option("service", name_, "service name")->required();
  call_->add_option("data", data_, "request text")->required();
  call_->add_option("--timeout", timeout_s_, "seconds to wait for the response (default 5)");
}

bool QueueCommands::parsed() const {
  return queue_->parsed() || call_->parsed();
}

int QueueCommands::run(Bus& bus) {
  return call_->parsed() ? run_call(bus) : run_queue(bus);
}

int QueueCommands::run_call(Bus& bus) {
  auto client = bus.client(name_);
  if (!client) return fail(client.status());
  auto response = client->call(std::as_bytes(std::span(data_.data(), data_.size())), seconds(timeout_s_));
  if (!response) return fail(response.status());
  std::cout << printable(response->bytes()) << "\n";
  return 0;
}

int QueueCommands::run_queue(Bus& bus) {
  if (list_->parsed() || stats_->parsed()) {
    auto doc_text = bus.daemon_statistics();
    if (!doc_text) return fail(doc_text.status());
    toml::table doc;
    try {
      doc = toml::parse(doc_text.value());
    } catch (const toml::parse_error& e) {
      return fail({Errc::kProtocolError, std::string("statistics do not parse: ") + e.what()});
    }
    const toml::array* queues = doc["queue"].as_array();
    if (list_->parsed()) {
      std::printf("%-32s %-8s %8s %9s %6s %9s %10s\n", "QUEUE", "KIND", "READY", "IN_FLIGHT", "DEAD",
                  "CONSUMERS", "ARRIVALS/S");
      for (const toml::node& n : queues ? *queues : toml::array{}) {
        const toml::table& q = *n.as_table();
        std::printf("%-32s %-8s %8lld %9lld %6lld %9lld %10.1f\n",
                    q["name"].value_or(std::string("?")).c_str(),
                    q["kind"].value_or(std::string("?")).c_str(), q["ready"].value_or(0LL),
                    q["in_flight"].value_or(0LL), q["dead_letters"].value_or(0LL),
                    q["consumers"].value_or(0LL), q["metrics"]["arrival_rate"].value_or(0.0));
      }
      return 0;
    }
    for (const toml::node& n : queues ? *queues : toml::array{}) {
      const toml::table& q = *n.as_table();
      if (q["name"].value_or(std::string()) != name_ || q["kind"].value_or(std::string()) == "reply")
        continue;
      if (json_) {
        std::cout << toml::json_formatter(q) << "\n";
      } else {
        std::cout << toml::toml_formatter(q) << "\n";
      }
      return 0;
    }
    return fail({Errc::kInvalidArgument, "no queue named " + name_});
  }
  if (send_->parsed()) {
    auto producer = bus.queue_producer(name_);
    if (!producer) return fail(producer.status());
    for (uint64_t i = 0; i < count_; ++i) {
      if (Status s = producer->send(std::as_bytes(std::span(data_.data(), data_.size())), priority_);
          !s.ok()) {
        return fail(s);
      }
    }
    return 0;
  }
  if (recv_->parsed()) {
    auto consumer = bus.queue_consumer(name_);
    if (!consumer) return fail(consumer.status());
    for (uint64_t i = 0; i < count_; ++i) {
      auto d = consumer->receive(seconds(timeout_s_));
      if (!d) {
        if (d.status().code() == Errc::kTimeout) return 3;
        return fail(d.status());
      }
      std::cout << printable(d->bytes()) << "\n" << std::flush;
      if (Status s = d->ack(); !s.ok()) return fail(s);
    }
    return 0;
  }
  auto inspector = bus.queue_inspector(name_);
  if (!inspector) return fail(inspector.status());
  if (dead_->parsed()) {
    for (const DeadLetterInfo& d : inspector->dead_letters(1000)) {
      std::cout << "seq " << d.sequence << " priority " << d.priority << " deliveries " << d.deliveries
                << ": " << printable(d.payload) << "\n";
    }
    return 0;
  }
  if (replay_->parsed()) {
    std::cout << "replayed " << inspector->replay_dead_letters() << " dead letter(s)\n";
    return 0;
  }
  std::cout << "purged " << inspector->purge_dead_letters() << " dead letter(s)\n";
  return 0;
}

}  // namespace shmbus::tools

// Writes the binary seed corpora: one valid control record of each type, a few topic segments with messages
// in their rings, the example daemon configuration, and (with the bridge) one valid bridge message or
// subscription of each kind and the example bridge configuration. Usage: fuzz_make_seeds <fuzz/corpus
// directory>. Re-run after a protocol or layout version change; the seeds must stay valid or libFuzzer starts
// blind.
#include <cstring>
#include <filesystem>
#include <fstream>
#include <initializer_list>
#include <iostream>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "bus/control_protocol.h"
#include "daemon/daemon_config.h"
#include "shm/ring_writer.h"
#include "shm/topic_segment_layout.h"
#include "shm/work_queue.h"

#ifdef SHMBUS_FUZZ_BRIDGE
#include "bridge/bridge_config.h"
#include "bridge/wire_format.h"
#endif

using namespace shmbus;
using namespace shmbus::detail;
namespace fs = std::filesystem;

namespace {

void write(const fs::path& path, const void* data, std::size_t size) {
  fs::create_directories(path.parent_path());
  std::ofstream(path, std::ios::binary)
      .write(static_cast<const char*>(data), static_cast<std::streamsize>(size));
}

template <typename Record>
void write_record(const fs::path& dir, const char* name, Record r, RecordType type) {
  r.header = make_header(type, sizeof r, 7);
  write(dir / name, &r, sizeof r);
}

void write_queue_records(const fs::path& dir) {
  OpenQueueRequest open{};
  copy_string("jobs/resize", open.name, sizeof open.name);
  open.settings = to_wire(QueueSettings{.capacity = 64, .max_message_size = 512, .durable = true});
  open.role = kQueueConsumer;
  write_record(dir, "open_queue", open, RecordType::kOpenQueue);
  CloseQueueRequest close{};
  close.queue_id = 1;
  close.role = kQueueConsumer;
  write_record(dir, "close_queue", close, RecordType::kCloseQueue);
  ReclaimQueueRequest reclaim{};
  copy_string("svc/resize", reclaim.name, sizeof reclaim.name);
  reclaim.queue_id = 3;
  reclaim.role = kServiceServer;
  reclaim.count = 2;
  write_record(dir, "reclaim_queue", reclaim, RecordType::kReclaimQueue);
}

void write_records(const fs::path& dir) {
  write_queue_records(dir);
  HelloRequest hello{};
  copy_string("seed-peer", hello.name, sizeof hello.name);
  write_record(dir, "hello", hello, RecordType::kHello);
  OpenRequest open{};
  copy_string("robot/arm/pose", open.topic, sizeof open.topic);
  open.settings = to_wire({.max_message_size = 256, .depth = 16, .policy = Policy::kLossless, .history = 4});
  write_record(dir, "open_publisher", open, RecordType::kOpenPublisher);
  open.history = 4;
  open.settings = to_wire({.max_publishers = 2, .max_subscribers = 8});
  write_record(dir, "open_subscriber", open, RecordType::kOpenSubscriber);
  write_record(dir, "close", CloseRequest{.topic_id = 1, .role = kRoleSubscriber, .slot = 3, .generation = 1},
               RecordType::kClose);
  write_record(dir, "reclaim",
               ReclaimRequest{.topic_id = 1, .role = kRolePublisher, .slot = 0, .endpoint_id = 9},
               RecordType::kReclaim);
  write_record(dir, "stats", StatsRequest{}, RecordType::kStats);
  Reply reply{};
  reply.code = static_cast<int32_t>(Errc::kIncompatibleSettings);
  reply.settings = to_wire({.max_message_size = 4096,
                            .depth = 64,
                            .policy = Policy::kLossy,
                            .history = 0,
                            .max_publishers = 8,
                            .max_subscribers = 32});
  copy_string("topic robot/arm/pose exists with depth=64", reply.message, sizeof reply.message);
  write_record(dir, "reply", reply, RecordType::kReply);
  StatsChunk chunk{};
  const char text[] = "[daemon]\ntopics = 1\n";
  chunk.last = 1;
  chunk.size = sizeof text - 1;
  std::memcpy(chunk.data, text, chunk.size);
  write_record(dir, "stats_chunk", chunk, RecordType::kStatsChunk);
}

// A segment as the daemon lays it out, ring 0 handed to a publisher that wrote `messages` messages, and
// subscriber 0 joined at position `start`.
// A topic segment with `messages` in ring 0; `packed`: a lossless topic written with one batch, so that
// small messages share slots (shm/packed_slot.h).
void write_segment(const fs::path& path, uint32_t max_message_size, uint32_t depth, uint32_t publishers,
                   uint32_t subscribers, uint32_t messages, uint64_t start, bool packed = false) {
  std::string error;
  const auto g = shm::compute_topic_geometry(max_message_size, depth, publishers, subscribers, &error);
  if (!g) throw std::runtime_error(error);
  std::vector<std::byte> storage(g->segment_size + shm::kCacheLine);
  std::byte* base = storage.data() + (-reinterpret_cast<uintptr_t>(storage.data()) % shm::kCacheLine);
  shm::initialize_topic_segment(base, *g, /*topic_id=*/1, packed ? shm::kPolicyLossless : shm::kPolicyLossy,
                                /*history=*/0, "robot/arm/pose", 1);
  shm::publisher_slot(base, *g, 0)->state.store(shm::kSlotActive);
  shm::publisher_slot(base, *g, 0)->generation.store(1);
  shm::cursor(base, *g, 0, 0)->value.store(shm::make_cursor(1, start));
  shm::RingWriter writer(base, *g, 0, 1, /*lossless=*/packed);
  if (packed) {
    std::vector<std::string> bodies;
    std::vector<std::span<const std::byte>> batch;
    for (uint32_t m = 0; m < messages; ++m)
      bodies.emplace_back((m * 7) % 40 + 1, static_cast<char>('a' + m % 26));
    for (const auto& b : bodies) batch.push_back(std::as_bytes(std::span(b.data(), b.size())));
    writer.write_batch(batch, 1000, std::chrono::nanoseconds(0));
    write(path, base, g->segment_size);
    return;
  }
  for (uint32_t m = 0; m < messages; ++m) {
    std::byte* payload = writer.claim(std::chrono::nanoseconds(0));
    const uint32_t size = (m * 37) % max_message_size + 1;
    std::memset(payload, 'a' + m % 26, size);
    writer.commit(size, 1000 + m);
  }
  write(path, base, g->segment_size);
}

// A small queue image with entries in every state: ready at two priorities, in flight, dead, free.
void write_work_queue(const fs::path& path, bool durable) {
  const shm::WorkQueueGeometry g{4, 32, 2, durable ? shm::kQueueDurable : 0u};
  const std::size_t size = shm::work_queue_bytes(g);
  std::vector<std::byte> image(size + 64);
  auto* base = reinterpret_cast<std::byte*>((reinterpret_cast<uintptr_t>(image.data()) + 63) / 64 * 64);
  shm::WorkQueue::initialize(base, size, g, 1, "seed/queue", "seed-boot");
  auto q = shm::WorkQueue::attach(base, size, nullptr).value();
  for (uint32_t i = 0; i < 4; ++i) {
    shm::ClaimedEntry c;
    q.reserve(1, &c);
    std::memset(c.payload, 'a' + static_cast<int>(i), 8 + i);
    q.commit(c, 1, {.size = 8 + i, .priority = i % 2 ? 9u : 0u, .correlation = i});
  }
  shm::DeliveredEntry d;
  q.pop(2, std::chrono::seconds(1), &d);
  q.reject(d.index, d.tag, false);  // a dead letter
  q.pop(2, std::chrono::seconds(1), &d);
  q.ack(d.index, d.tag);                  // free again
  q.pop(2, std::chrono::seconds(1), &d);  // left in flight
  write(path, base, size);
}

#ifdef SHMBUS_FUZZ_BRIDGE
// fuzz_bridge_frame's input: each frame as a 2-byte little-endian length, then its bytes.
void write_frames(const fs::path& path, std::initializer_list<std::string_view> frames) {
  std::string out;
  for (const std::string_view f : frames) {
    out.push_back(static_cast<char>(f.size() & 0xff));
    out.push_back(static_cast<char>(f.size() >> 8));
    out.append(f);
  }
  write(path, out.data(), out.size());
}

// Batches as the bridge's own encoder makes them (version kWireVersion): from the origin, relayed, with an
// empty payload and with several records; and one subscription and unsubscription as its XSUB sends them.
void write_bridge_frames(const fs::path& dir) {
  using namespace shmbus::bridge;
  const auto batch = [](const BatchHeader& h,
                        std::initializer_list<std::pair<uint64_t, std::string_view>> m) {
    std::vector<WireRecord> records;
    for (const auto& [sequence, payload] : m) {
      records.push_back({.sequence = sequence,
                         .publish_time_ns = 1764000000000500000ull + sequence,
                         .payload = std::as_bytes(std::span(payload.data(), payload.size()))});
    }
    const std::vector<std::byte> b = encode_batch(h, records);
    return std::string(reinterpret_cast<const char*>(b.data()), b.size());
  };
  const std::string topic = topic_frame("robot/arm/pose");
  const BatchHeader origin{
      .hops = 0, .flags = 0, .origin_id = origin_id_of("site-a"), .origin_epoch = 1764000000000000000ull};
  write_frames(dir / "message_origin", {topic, batch(origin, {{1, "pose x=1 y=2 z=3"}})});
  BatchHeader relayed = origin;
  relayed.hops = 1;
  relayed.flags = kFlagRelayed;
  write_frames(dir / "message_relayed", {topic, batch(relayed, {{42, "pose x=4 y=5 z=6"}})});
  write_frames(dir / "message_empty_payload", {topic_frame("a"), batch(origin, {{2, ""}})});
  write_frames(dir / "message_batch",
               {topic, batch(origin, {{3, "pose 3"}, {4, ""}, {6, "pose 6 after a gap"}})});
  write_frames(dir / "subscribe", {subscription_frame("robot/arm/pose", true)});
  write_frames(dir / "unsubscribe", {subscription_frame("remote/site-b/camera/x", false)});
}
#endif

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::cerr << "usage: fuzz_make_seeds <fuzz/corpus directory>\n";
    return 2;
  }
  const fs::path corpus = argv[1];
  write_records(corpus / "control_record");
  write_segment(corpus / "topic_header" / "smallest", 1, 2, 1, 1, 1, 0);
  write_segment(corpus / "topic_header" / "lapped", 40, 8, 2, 2, 21, 3);  // the reader fell behind
  write_segment(corpus / "topic_header" / "caught_up", 100, 4, 1, 2, 3, 0);
  write_segment(corpus / "topic_header" / "packed", 256, 8, 1, 2, 20, 0, /*packed=*/true);
  write_work_queue(corpus / "work_queue" / "mixed_states", false);
  write_work_queue(corpus / "work_queue" / "durable_mixed_states", true);
  const std::string example = daemon::kExampleConfig;
  write(corpus / "daemon_config" / "example.toml", example.data(), example.size());
#ifdef SHMBUS_FUZZ_BRIDGE
  write_bridge_frames(corpus / "bridge_frame");
  const std::string bridge_example = shmbus::bridge::kExampleConfig;
  write(corpus / "bridge_config" / "example.toml", bridge_example.data(), bridge_example.size());
#endif
  return 0;
}

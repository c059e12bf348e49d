// Camera-frame-like 1 MiB payloads, zero-copy: the publisher writes a frame in place, the subscriber (a child
// process) reads it in place. Nothing copies the megabyte; latency stays that of a small message.
#include <shmbus/bus.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <thread>
#include <vector>

struct Frame {
  uint64_t number;
  uint32_t width, height;
  uint8_t pixels[1024 * 1024 - 16];
};

int main() {
  using namespace std::chrono;
  constexpr int kFrames = 200;
  shmbus::SubscriberOptions sub_options;
  sub_options.topic.max_message_size = sizeof(Frame);
  sub_options.topic.depth = 8;
  sub_options.topic.policy = shmbus::Policy::kLossless;
  if (fork() == 0) {  // the subscriber
    auto bus = shmbus::Bus::connect();
    auto sub = bus ? bus->subscriber<Frame>("camera/front", sub_options) : bus.status();
    if (!sub) return std::fprintf(stderr, "subscriber: %s\n", sub.status().to_string().c_str()), 1;
    std::vector<int64_t> latency;
    for (int i = 0; i < kFrames; ++i) {
      auto frame = sub->take(seconds(10));
      if (!frame || frame->number != static_cast<uint64_t>(i) ||
          frame->pixels[frame->number % 1000] != uint8_t(i)) {
        return std::fprintf(stderr, "subscriber: bad or missing frame %d\n", i), 1;
      }
      latency.push_back(duration_cast<nanoseconds>(steady_clock::now() - frame.publish_time()).count());
    }
    std::sort(latency.begin(), latency.end());
    std::printf("%d frames of %zu bytes, publish->take latency p50 %lld ns, p99 %lld ns\n", kFrames,
                sizeof(Frame), (long long)latency[kFrames / 2], (long long)latency[kFrames * 99 / 100]);
    return 0;
  }
  auto bus = shmbus::Bus::connect();
  if (!bus) return std::fprintf(stderr, "publisher: %s\n", bus.status().to_string().c_str()), 1;
  shmbus::PublisherOptions options;
  options.topic = sub_options.topic;
  auto pub = bus->publisher<Frame>("camera/front", options);
  if (!pub) return std::fprintf(stderr, "publisher: %s\n", pub.status().to_string().c_str()), 1;
  while (pub->untyped().subscribers() == 0) std::this_thread::sleep_for(milliseconds(1));
  for (int i = 0; i < kFrames; ++i) {
    auto frame = pub->loan().value();
    frame->number = static_cast<uint64_t>(i);
    frame->width = 1024;
    frame->height = 1024;
    frame->pixels[frame->number % 1000] = static_cast<uint8_t>(i);  // a real camera would DMA the image here
    pub->publish(std::move(frame));
    std::this_thread::sleep_for(milliseconds(1));
  }
  int status = 0;
  wait(&status);
  return WIFEXITED(status) ? WEXITSTATUS(status) : 1;
}

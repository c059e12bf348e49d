// The EventSources watching one endpoint, so that an endpoint destroyed while watched is forgotten by them
// instead of used after free.
#pragma once

#include <algorithm>
#include <vector>

namespace shmbus::detail {

struct EventSourceState;
// Stops `source` watching the endpoint `watching` belongs to (event_source.cpp). Owner thread only.
void forget_watched(EventSourceState* source, const class WatchingSources* watching);

// A member of each endpoint an EventSource can watch (SubscriberCore, QueueAttachment): these stay put when
// their Subscriber, QueueConsumer, Server or Client is moved, so a source keeps watching a moved endpoint.
// Its owner's destructor calls forget_all() first, while the endpoint is still whole (attached, mapped).
// Owner thread only, as EventSource.
class WatchingSources {
 public:
  WatchingSources() = default;
  WatchingSources(const WatchingSources&) = delete;
  WatchingSources& operator=(const WatchingSources&) = delete;
  ~WatchingSources() { forget_all(); }

  void forget_all() {
    std::vector<EventSourceState*> sources;
    sources.swap(sources_);
    for (EventSourceState* source : sources) forget_watched(source, this);
  }

  void add(EventSourceState* source) { sources_.push_back(source); }
  void remove(EventSourceState* source) { std::erase(sources_, source); }

 private:
  std::vector<EventSourceState*> sources_;
};

}  // namespace shmbus::detail

// The calls of one Client that wait for their responses, and the responses that came for them but were not
// collected yet. On the heap, owned by the Client: a PendingCall keeps pointing at it while its Client moves.
// Used by the Client's thread only (Client::poll, and EventSource::rearm for a watched Client).
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>

#include "bus/queue_attachment.h"

namespace shmbus::detail {

struct CallTable {
  struct Call {
    uint64_t deadline_ns = 0;                     // steady clock
    std::optional<shm::DeliveredEntry> response;  // taken from the queue (IN_FLIGHT), not yet collected
  };

  QueueAttachment* responses = nullptr;  // the Client's private response queue
  std::map<uint64_t, Call> calls;        // pending calls by correlation id
  std::size_t answered = 0;              // calls holding a response
  uint64_t late = 0;                     // responses discarded: their call had timed out or was abandoned

  // Kept responses are not given back when the table goes: the response queue is the Client's own and is
  // released with it.

  // Takes every response waiting in the queue, without blocking: one for a call in `calls` is kept there,
  // the others are acknowledged and counted as late. Returns whether some pending call has its response.
  bool collect();
  // Forgets a pending call (its PendingCall was dropped); a response kept for it is acknowledged.
  void abandon(uint64_t correlation);
};

}  // namespace shmbus::detail

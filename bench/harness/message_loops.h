#pragma once
// The two measurements, written once for every transport.

#include <concepts>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include "clock.h"

namespace bench {

// What a peer provides on each side after fork. Both calls move one message of the run's
// fixed size; the sequence number travels in the message's first 8 bytes (or, for the
// cache-line floor, is the message). Failures throw.
template <class T>
concept Transport = requires(T transport, uint64_t seq) {
  transport.send(seq);
  { transport.receive() } -> std::convertible_to<uint64_t>;
};

inline void check_sequence(uint64_t got, uint64_t expected) {
  if (got != expected)
    throw std::runtime_error("message out of order: expected #" + std::to_string(expected) + ", got #" +
                             std::to_string(got));
}

// Side A of rtt. Returns one latency per measured round trip. One clock read per round trip:
// each sample is the time between the ends of two consecutive round trips.
template <Transport T>
std::vector<uint64_t> measure_round_trips(T& transport, uint64_t warmup, uint64_t count) {
  std::vector<uint64_t> samples(count);  // value-initialised: every page touched before timing
  uint64_t seq = 0;
  for (; seq < warmup; ++seq) {
    transport.send(seq);
    check_sequence(transport.receive(), seq);
  }
  uint64_t previous = now_ns();
  for (uint64_t i = 0; i < count; ++i, ++seq) {
    transport.send(seq);
    check_sequence(transport.receive(), seq);
    const uint64_t now = now_ns();
    samples[i] = now - previous;
    previous = now;
  }
  return samples;
}

// Side B of rtt: sends every message back with its sequence number.
template <Transport T>
void echo_round_trips(T& transport, uint64_t warmup, uint64_t count) {
  for (uint64_t seq = 0; seq < warmup + count; ++seq) {
    check_sequence(transport.receive(), seq);
    transport.send(seq);
  }
}

// Side A of stream.
// A transport that batches (send() queues, flush() hands the queue over) is flushed at the end.
template <Transport T>
void send_stream(T& transport, uint64_t total) {
  for (uint64_t seq = 0; seq < total; ++seq) transport.send(seq);
  if constexpr (requires { transport.flush(); }) transport.flush();
}

// Side B of stream. Times from the arrival of the last warm-up message to the arrival of the
// last one, so the interval holds exactly `count` messages.
// REQUIRES: warmup >= 1.
template <Transport T>
uint64_t receive_stream(T& transport, uint64_t warmup, uint64_t count) {
  uint64_t seq = 0;
  for (; seq < warmup; ++seq) check_sequence(transport.receive(), seq);
  const uint64_t start = now_ns();
  for (; seq < warmup + count; ++seq) check_sequence(transport.receive(), seq);
  return now_ns() - start;
}

}  // namespace bench

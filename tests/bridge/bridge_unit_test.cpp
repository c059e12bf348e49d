// The bridge's parts without a network: wire format, configuration errors, topic mapping, duplicate and gap
// accounting.
#include <gtest/gtest.h>
#include <toml++/toml.h>

#include <cstring>
#include <filesystem>
#include <fstream>

#include "bridge/bridge_config.h"
#include "bridge/bridge_shared.h"
#include "bridge/curve_keys.h"
#include "bridge/log_throttle.h"
#include "bridge/peer_endpoints.h"
#include "bridge/sequence_tracker.h"
#include "bridge/stats_document.h"
#include "bridge/topic_mapper.h"
#include "bridge/wire_format.h"
#include "support/test_daemon.h"

namespace shmbus::bridge {
namespace {

std::span<const std::byte> bytes(const std::string& s) {
  return std::as_bytes(std::span(s.data(), s.size()));
}

std::span<const std::byte> bytes_of(const char* s) {
  return std::as_bytes(std::span(s, std::strlen(s)));
}

TEST(WireFormatTest, BatchRoundTripsAndIsLittleEndian) {
  const BatchHeader h{.hops = 3, .flags = kFlagRelayed, .origin_id = 0x1122334455667788, .origin_epoch = 42};
  const std::vector<WireRecord> records = {
      {.sequence = 0x0102030405060708, .publish_time_ns = 99, .payload = bytes_of("first")},
      {.sequence = 0x0102030405060709, .publish_time_ns = 100, .payload = {}},  // an empty message
      {.sequence = 0x010203040506070b, .publish_time_ns = 101, .payload = bytes_of("third")}};
  const std::vector<std::byte> b = encode_batch(h, records);
  ASSERT_EQ(b.size(), kBatchHeaderSize + 3 * kRecordHeaderSize + 10);
  EXPECT_EQ(std::memcmp(b.data(), "BSBR", 4), 0);
  EXPECT_EQ(b[kOffsetVersion], std::byte{kWireVersion});
  EXPECT_EQ(b[kOffsetOrigin], std::byte{0x88});
  EXPECT_EQ(b[kBatchHeaderSize + kRecordSequence], std::byte{0x08});
  EXPECT_EQ(b[kBatchHeaderSize + kRecordSize], std::byte{5});
  BatchHeader d;
  std::vector<WireRecord> got;
  ASSERT_EQ(decode_batch(b, &d, &got), BatchError::kNone);
  EXPECT_EQ(d.hops, 3);
  EXPECT_EQ(d.flags, kFlagRelayed);
  EXPECT_EQ(d.origin_id, h.origin_id);
  EXPECT_EQ(d.origin_epoch, 42u);
  ASSERT_EQ(got.size(), 3u);
  for (std::size_t i = 0; i < 3; ++i) {
    EXPECT_EQ(got[i].sequence, records[i].sequence);
    EXPECT_EQ(got[i].publish_time_ns, records[i].publish_time_ns);
    ASSERT_EQ(got[i].payload.size(), records[i].payload.size());
    EXPECT_TRUE(std::equal(got[i].payload.begin(), got[i].payload.end(), records[i].payload.begin()));
    EXPECT_TRUE(got[i].payload.empty() ||
                (got[i].payload.data() > b.data() && &got[i].payload.back() < &b.back() + 1))
        << "payloads are read in place, inside the frame";
  }
}

TEST(WireFormatTest, BadBatchesAreClassifiedNotRead) {
  BatchHeader d;
  std::vector<WireRecord> got;
  const std::vector<WireRecord> one = {{.sequence = 1, .payload = bytes_of("abc")}};
  std::vector<std::byte> b = encode_batch({}, one);
  const std::span<const std::byte> all(b);
  EXPECT_EQ(decode_batch(all.first(3), &d, &got), BatchError::kMalformed);
  EXPECT_EQ(decode_batch({}, &d, &got), BatchError::kMalformed);
  EXPECT_EQ(decode_batch(all.first(kBatchHeaderSize - 1), &d, &got), BatchError::kMalformed);
  EXPECT_EQ(decode_batch(all.first(kBatchHeaderSize), &d, &got), BatchError::kMalformed) << "no record";
  EXPECT_EQ(decode_batch(all.first(kBatchHeaderSize + kRecordHeaderSize - 1), &d, &got),
            BatchError::kMalformed);
  EXPECT_EQ(decode_batch(all.first(b.size() - 1), &d, &got), BatchError::kMalformed) << "payload cut short";
  std::vector<std::byte> longer = b;
  longer.push_back(std::byte{0});
  EXPECT_EQ(decode_batch(longer, &d, &got), BatchError::kMalformed) << "a stray byte after the last record";
  std::vector<std::byte> huge = b;
  huge[kBatchHeaderSize + kRecordSize + 3] = std::byte{0xff};  // a size far past the frame's end
  EXPECT_EQ(decode_batch(huge, &d, &got), BatchError::kMalformed);
  b[0] = std::byte{'X'};
  EXPECT_EQ(decode_batch(b, &d, &got), BatchError::kMalformed);
  // At most kMaxBatchRecords records: what one frame can cost a receiver stays bounded.
  std::vector<WireRecord> many(kMaxBatchRecords, WireRecord{.sequence = 1});
  EXPECT_EQ(decode_batch(encode_batch({}, many), &d, &got), BatchError::kNone);
  EXPECT_EQ(got.size(), kMaxBatchRecords);
  many.push_back({.sequence = 2});
  EXPECT_EQ(decode_batch(encode_batch({}, many), &d, &got), BatchError::kMalformed);
  b = encode_batch({}, one);
  b[kOffsetVersion] = std::byte{1};
  EXPECT_EQ(decode_batch(b, &d, &got), BatchError::kUnknownVersion);
  EXPECT_EQ(decode_batch(std::span<const std::byte>(b).first(6), &d, &got),
            BatchError::kUnknownVersion);  // any size of another version
}

TEST(WireFormatTest, TopicFramesAreTerminatedSoNoneIsAPrefixOfAnother) {
  const std::string a = topic_frame("a"), ab = topic_frame("ab");
  EXPECT_NE(ab.rfind(a, 0), 0u);  // ZeroMQ's prefix filter: "a\0" does not match "ab\0"
  EXPECT_EQ(parse_topic_frame(bytes(a)), "a");
  EXPECT_FALSE(parse_topic_frame(bytes(std::string("a"))));          // no terminator
  EXPECT_FALSE(parse_topic_frame(bytes(std::string("a\0b\0", 4))));  // NUL inside
  EXPECT_FALSE(parse_topic_frame(bytes(std::string("a//b\0", 5))));  // not a topic name
  EXPECT_FALSE(parse_topic_frame(bytes(std::string("\0", 1))));
  auto s = parse_subscription_frame(bytes(subscription_frame("robot/pose", true)));
  ASSERT_TRUE(s);
  EXPECT_TRUE(s->subscribe);
  EXPECT_EQ(s->wire_topic, "robot/pose");
  EXPECT_FALSE(parse_subscription_frame(bytes(std::string("\2x\0", 3))));
}

Rule rule(std::string pattern, Direction d, std::string local = "", std::string remote = "") {
  Rule r;
  r.pattern = std::move(pattern);
  r.direction = d;
  r.local_prefix = std::move(local);
  r.remote_prefix = std::move(remote);
  return r;
}

TEST(TopicMapperTest, RulesSelectByDirectionAndRemapPrefixes) {
  TopicMapper m({rule("robot/*/pose", Direction::kOut), rule("**", Direction::kIn, "remote/b/", "")});
  EXPECT_EQ(m.local_to_wire("robot/arm/pose", Direction::kOut)->name, "robot/arm/pose");
  EXPECT_FALSE(m.local_to_wire("robot/arm/x/pose", Direction::kOut));  // '*' is one level
  // From the wire, the out rule names it alike; brought in, the first in rule applies: its remap.
  EXPECT_EQ(m.wire_to_local("robot/arm/pose", Direction::kOut)->name, "robot/arm/pose");
  EXPECT_EQ(m.wire_to_local("robot/arm/pose", Direction::kIn)->name, "remote/b/robot/arm/pose");
  EXPECT_EQ(m.wire_to_local("camera/x", Direction::kIn)->name, "remote/b/camera/x");
  EXPECT_EQ(m.local_to_wire("remote/b/camera/x", Direction::kIn)->name, "camera/x");
  EXPECT_FALSE(m.local_to_wire("camera/x", Direction::kIn));  // outside the local prefix
  EXPECT_FALSE(m.local_to_wire("shmbus/bridge/a/stats", Direction::kOut));
  TopicMapper all({rule("**", Direction::kBoth)});
  EXPECT_FALSE(all.local_to_wire("shmbus/bridge/a/stats", Direction::kOut));  // the bus's own never crosses
  EXPECT_FALSE(all.wire_to_local("shmbus/x", Direction::kIn));
  EXPECT_EQ(all.wire_to_local("a", Direction::kIn)->name, "a");
}

// A recurring error is logged once per interval; the next line reports how many were held back.
// Monitor events name a peer given by host name by its resolved address once libzmq retried it: they are
// mapped back to the configured endpoint: by port where one host-name peer has it, by looking the names up
// where several share a port; other addresses stay as they are.
TEST(PeerEndpointsTest, ResolvedAddressesMapBackToTheEndpointGivenByHostName) {
  bridge::PeerEndpoints peers({"tcp://localhost:7001", "tcp://10.0.0.9:7002", "tcp://[::1]:7003",
                               "tcp://localhost:7005", "tcp://LOCALHOST:7005"});
  EXPECT_EQ(peers.configured_endpoint("tcp://localhost:7001"), "tcp://localhost:7001");
  EXPECT_EQ(peers.configured_endpoint("tcp://127.0.0.1:7001"), "tcp://localhost:7001");
  EXPECT_EQ(peers.configured_endpoint("tcp://10.0.0.8:7001"), "tcp://localhost:7001");   // the only one there
  EXPECT_EQ(peers.configured_endpoint("tcp://127.0.0.1:7009"), "tcp://127.0.0.1:7009");  // another port
  EXPECT_EQ(peers.configured_endpoint("tcp://10.0.0.9:7002"), "tcp://10.0.0.9:7002");
  EXPECT_EQ(peers.configured_endpoint("tcp://[::1]:7003"), "tcp://[::1]:7003");
  // Two host-name peers on one port (both resolve from /etc/hosts): the lookup decides, the first that
  // resolves to the address wins.
  EXPECT_EQ(peers.configured_endpoint("tcp://127.0.0.1:7005"), "tcp://localhost:7005");
  EXPECT_EQ(peers.configured_endpoint("tcp://10.0.0.8:7005"), "tcp://10.0.0.8:7005");
  EXPECT_EQ(peers.configured_endpoint("ipc:///tmp/x"), "ipc:///tmp/x");
  EXPECT_EQ(peers.configured_endpoint("garbage"), "garbage");
}

TEST(LogThrottleTest, OneLineAnIntervalAndTheNextSaysHowManyWereHeldBack) {
  using std::chrono::milliseconds;
  LogThrottle throttle(milliseconds(1000));
  const auto t0 = LogThrottle::Clock::now();
  uint64_t held_back = 99;
  EXPECT_TRUE(throttle.allow(t0, &held_back));
  EXPECT_EQ(held_back, 0u);
  EXPECT_FALSE(throttle.allow(t0 + milliseconds(1), &held_back));
  EXPECT_FALSE(throttle.allow(t0 + milliseconds(999), &held_back));
  EXPECT_TRUE(throttle.allow(t0 + milliseconds(1000), &held_back));
  EXPECT_EQ(held_back, 2u);
  EXPECT_TRUE(throttle.allow(t0 + milliseconds(5000), &held_back));
  EXPECT_EQ(held_back, 0u);
}

TEST(SequenceTrackerTest, SuppressesDuplicatesCountsGapsAndFollowsEpochs) {
  SequenceTracker t;
  using V = SequenceTracker::Verdict;
  EXPECT_EQ(t.observe(1, 10, "x", 5).verdict, V::kDeliver);  // a late joiner starts anywhere, no gap
  EXPECT_EQ(t.observe(1, 10, "x", 6).missing, 0u);
  EXPECT_EQ(t.observe(1, 10, "x", 6).verdict, V::kDuplicate);
  const auto below_first = t.observe(1, 10, "x", 4);  // from before the first: a slower path's copy
  EXPECT_EQ(below_first.verdict, V::kLate);
  EXPECT_FALSE(below_first.filled_gap) << "never counted as a gap";
  EXPECT_EQ(t.observe(1, 10, "x", 4).verdict, V::kDuplicate);
  auto gap = t.observe(1, 10, "x", 9);
  EXPECT_EQ(gap.verdict, V::kDeliver);
  EXPECT_EQ(gap.missing, 2u);
  EXPECT_EQ(t.observe(2, 10, "x", 1).verdict, V::kDeliver);  // another origin: its own stream
  EXPECT_EQ(t.observe(1, 11, "x", 1).verdict, V::kDeliver);  // origin restarted: numbering starts again
  EXPECT_EQ(t.observe(1, 10, "x", 10).verdict, V::kStale);   // a late copy from its previous run
  uint64_t missing = 0;
  t.for_each([&](uint64_t origin, uint64_t, const std::string&, const SequenceTracker::TopicState& s) {
    if (origin == 1) missing += s.missing;
  });
  EXPECT_EQ(missing, 2u);  // kept across the restart
}

// One forged (or wrapped) sequence far away does not block its stream: after UINT64_MAX the genuine
// sequences are delivered again, and no loss of 2^64 messages is counted.
TEST(SequenceTrackerTest, AFarJumpRestartsTheStreamInsteadOfBlockingIt) {
  SequenceTracker t;
  using V = SequenceTracker::Verdict;
  EXPECT_EQ(t.observe(1, 10, "x", 5).verdict, V::kDeliver);
  const auto forged = t.observe(1, 10, "x", UINT64_MAX);
  EXPECT_EQ(forged.verdict, V::kDeliver);
  EXPECT_EQ(forged.missing, 0u);
  EXPECT_EQ(t.observe(1, 10, "x", 6).verdict, V::kDeliver);
  EXPECT_EQ(t.observe(1, 10, "x", 7).verdict, V::kDeliver);
  EXPECT_EQ(t.observe(1, 10, "x", 7).verdict, V::kDuplicate);
  uint64_t missing = 0;
  t.for_each([&](uint64_t, uint64_t, const std::string&, const SequenceTracker::TopicState& s) {
    missing += s.missing;
  });
  EXPECT_EQ(missing, 0u);
}

// A triangle's relay path carries 1..; the direct link joins at 40, overtaking the relay's copies of 30..39.
// Those still arrive (late, out of order) and are delivered once; what both paths carry is delivered once.
TEST(SequenceTrackerTest, AFasterPathJoiningLateLosesNothingTheSlowerOneStillCarries) {
  SequenceTracker t;
  using V = SequenceTracker::Verdict;
  std::vector<int> delivered(101);
  auto arrive = [&](uint64_t seq) {
    const auto o = t.observe(1, 10, "x", seq);
    if (o.verdict == V::kDeliver || o.verdict == V::kLate) ++delivered[seq];
    return o;
  };
  for (uint64_t s = 1; s < 30; ++s) EXPECT_EQ(arrive(s).verdict, V::kDeliver);  // the relay alone
  EXPECT_EQ(arrive(40).missing, 10u);                                           // the direct link's first
  for (uint64_t s = 41; s <= 60; ++s) EXPECT_EQ(arrive(s).verdict, V::kDeliver);
  for (uint64_t s = 30; s < 40; ++s) {  // the relay catches up: late, and each one a gap filled
    const auto o = arrive(s);
    EXPECT_EQ(o.verdict, V::kLate);
    EXPECT_TRUE(o.filled_gap);
  }
  for (uint64_t s = 40; s <= 60; ++s) EXPECT_EQ(arrive(s).verdict, V::kDuplicate);
  for (uint64_t s = 61; s <= 99; ++s) {  // both carry everything now, in either order (61, 63/62, ...)
    if (s % 2) {
      EXPECT_EQ(arrive(s).verdict, V::kDeliver);
      EXPECT_EQ(arrive(s).verdict, V::kDuplicate);
    } else {
      (void)arrive(s + 1);
      EXPECT_EQ(arrive(s).verdict, V::kLate);
      EXPECT_EQ(arrive(s).verdict, V::kDuplicate);
      EXPECT_EQ(arrive(s + 1).verdict, V::kDuplicate);
      ++s;
    }
  }
  for (uint64_t s = 1; s <= 99; ++s) EXPECT_EQ(delivered[s], 1) << "sequence " << s;
  t.for_each([](uint64_t, uint64_t, const std::string&, const SequenceTracker::TopicState& s) {
    EXPECT_EQ(s.missing, 0u);  // every gap was filled
    EXPECT_EQ(s.delivered, 99u);
    EXPECT_TRUE(s.holes.empty());
  });
}

// A stream the tracker forgot, or an origin that went back to an older epoch, may already have delivered the
// sequences below its next first message: those are duplicates, not late copies.
TEST(SequenceTrackerTest, NothingBelowTheFirstIsLateWhereItMayHaveBeenDeliveredBefore) {
  using V = SequenceTracker::Verdict;
  {  // streams forgotten at kMaxTopicsPerOrigin
    SequenceTracker t;
    for (uint64_t s = 1; s <= 100; ++s) (void)t.observe(1, 1, "x", s);
    for (std::size_t i = 0; i < SequenceTracker::kMaxTopicsPerOrigin; ++i)
      (void)t.observe(1, 1, "t/" + std::to_string(i), 1);
    EXPECT_EQ(t.observe(1, 1, "x", 101).verdict, V::kDeliver);  // "x" afresh
    EXPECT_EQ(t.observe(1, 1, "x", 95).verdict, V::kDuplicate);
  }
  {  // back to an older epoch once the newer went quiet
    using std::chrono::seconds;
    SequenceTracker t;
    const auto t0 = std::chrono::steady_clock::now();
    for (uint64_t s = 1; s <= 100; ++s) (void)SequenceTracker::observe(*t.stream(1, 10, "x", t0), s);
    (void)SequenceTracker::observe(*t.stream(1, 20, "x", t0 + seconds(1)), 1);
    SequenceTracker::TopicState* back = t.stream(1, 10, "x", t0 + seconds(2) + SequenceTracker::kEpochQuiet);
    ASSERT_NE(back, nullptr);
    EXPECT_EQ(SequenceTracker::observe(*back, 101).verdict, V::kDeliver);
    EXPECT_EQ(SequenceTracker::observe(*back, 50).verdict, V::kDuplicate);
  }
  {  // origins forgotten at kMaxOrigins: a "new" one may be one of them
    SequenceTracker t;
    for (uint64_t origin = 1; origin <= SequenceTracker::kMaxOrigins + 1; ++origin)
      (void)t.observe(origin, 1, "x", 10);
    EXPECT_EQ(t.observe(5000, 1, "x", 10).verdict, V::kDeliver);
    EXPECT_EQ(t.observe(5000, 1, "x", 9).verdict, V::kDuplicate);
  }
  {  // a restart (a newer epoch) numbers afresh: below its first may come late
    SequenceTracker t;
    for (uint64_t s = 1; s <= 100; ++s) (void)t.observe(1, 10, "x", s);
    EXPECT_EQ(t.observe(1, 11, "x", 5).verdict, V::kDeliver);
    EXPECT_EQ(t.observe(1, 11, "x", 4).verdict, V::kLate);
  }
}

// At the end of the sequence space: UINT64_MAX + 1 wraps to 0, which is no successor.
// After UINT64_MAX, 0 is no successor (last + 1 wraps): it is a jump of 2^64 - 1 down, which restarts the
// stream (AFarJumpRestartsTheStreamInsteadOfBlockingIt) rather than pass as the next in order.
TEST(SequenceTrackerTest, SequenceZeroAfterTheLastRestartsTheStream) {
  using V = SequenceTracker::Verdict;
  SequenceTracker t;
  constexpr uint64_t kMax = UINT64_MAX;
  EXPECT_EQ(t.observe(1, 1, "x", kMax - 1).verdict, V::kDeliver);
  EXPECT_EQ(t.observe(1, 1, "x", kMax - 2).verdict, V::kLate);  // below the first: the hole
  EXPECT_EQ(t.observe(1, 1, "x", kMax).verdict, V::kDeliver);
  EXPECT_EQ(t.observe(1, 1, "x", kMax - 1).verdict, V::kDuplicate);
  const auto wrapped = t.observe(1, 1, "x", 0);
  EXPECT_EQ(wrapped.verdict, V::kDeliver);
  EXPECT_EQ(wrapped.missing, 0u);
  EXPECT_EQ(t.observe(1, 1, "x", 0).verdict, V::kDuplicate);
  EXPECT_EQ(t.observe(1, 1, "x", 1).verdict, V::kDeliver);
  SequenceTracker u;  // no holes at all: the in-order shortcut
  EXPECT_EQ(u.observe(1, 1, "x", 1).verdict, V::kDeliver);
  EXPECT_EQ(u.observe(1, 1, "x", 2).verdict, V::kDeliver);
  SequenceTracker::TopicState* s = u.stream(1, 1, "x");
  s->last = kMax - 1;  // as if it had counted that far in order
  EXPECT_EQ(SequenceTracker::observe(*s, kMax).verdict, V::kDeliver);
  EXPECT_EQ(SequenceTracker::observe(*s, kMax).verdict, V::kDuplicate);
  EXPECT_EQ(SequenceTracker::observe(*s, 0).missing, 0u);
  EXPECT_EQ(s->missing, 0u);
}

// Late copies below the first message come back with a new epoch: a restart after an older epoch's return,
// or an evicted origin's restart.
TEST(SequenceTrackerTest, ANewEpochMayFillBelowItsFirstAgain) {
  using V = SequenceTracker::Verdict;
  using std::chrono::seconds;
  {
    SequenceTracker t;
    const auto t0 = std::chrono::steady_clock::now();
    (void)SequenceTracker::observe(*t.stream(1, 10, "x", t0), 50);
    (void)SequenceTracker::observe(*t.stream(1, 20, "x", t0 + seconds(1)), 50);
    // 10 again after the quiet, then 20 again: both seen before.
    (void)SequenceTracker::observe(*t.stream(1, 10, "x", t0 + seconds(2) + SequenceTracker::kEpochQuiet), 60);
    SequenceTracker::TopicState* again = t.stream(1, 20, "x", t0 + seconds(3) + SequenceTracker::kEpochQuiet);
    EXPECT_EQ(SequenceTracker::observe(*again, 70).verdict, V::kDeliver);
    EXPECT_EQ(SequenceTracker::observe(*again, 40).verdict, V::kDuplicate);
    SequenceTracker::TopicState* fresh = t.stream(1, 30, "x", t0 + seconds(4) + SequenceTracker::kEpochQuiet);
    EXPECT_EQ(SequenceTracker::observe(*fresh, 70).verdict, V::kDeliver);
    EXPECT_EQ(SequenceTracker::observe(*fresh, 40).verdict, V::kLate);  // a new epoch: nothing delivered
  }
  {
    SequenceTracker t;
    for (uint64_t origin = 1; origin <= SequenceTracker::kMaxOrigins + 1; ++origin)
      (void)t.observe(origin, 5, "x", 10);
    EXPECT_EQ(t.observe(1, 6, "x", 10).verdict, V::kDeliver);  // an epoch newer than any evicted one
    EXPECT_EQ(t.observe(1, 6, "x", 9).verdict, V::kLate);
  }
}

// Holes are bounded in number and in age: what falls out stays missing, and its copies are duplicates.
TEST(SequenceTrackerTest, HolesAreBoundedInNumberAndAge) {
  SequenceTracker t;
  using V = SequenceTracker::Verdict;
  EXPECT_EQ(t.observe(1, 1, "x", 1).verdict, V::kDeliver);
  uint64_t seq = 1;
  for (std::size_t i = 0; i < SequenceTracker::kMaxHoles + 3; ++i) {
    seq += 2;  // skips one each time: a hole of one
    EXPECT_EQ(t.observe(1, 1, "x", seq).missing, 1u);
  }
  EXPECT_EQ(t.observe(1, 1, "x", 2).verdict, V::kDuplicate);  // among the three oldest, given up
  EXPECT_EQ(t.observe(1, 1, "x", 6).verdict, V::kDuplicate);
  EXPECT_EQ(t.observe(1, 1, "x", 8).verdict, V::kLate);  // the oldest kept
  // Splitting a hole past the bound gives up the oldest too.
  seq += 11;
  EXPECT_EQ(t.observe(1, 1, "x", seq).missing, 10u);  // holes: 10 12 ... 70, and 72..81
  EXPECT_EQ(t.observe(1, 1, "x", seq - 5).verdict, V::kLate);
  EXPECT_EQ(t.observe(1, 1, "x", 10).verdict, V::kDuplicate);
  EXPECT_EQ(t.observe(1, 1, "x", 12).verdict, V::kLate);
  EXPECT_EQ(t.observe(1, 1, "x", seq - 12).verdict, V::kLate);  // the newest hole of one
  // Age: a hole kLateWindow behind the newest sequence is given up.
  const uint64_t far = seq + SequenceTracker::kLateWindow + 1;
  EXPECT_EQ(t.observe(1, 1, "x", far).missing, SequenceTracker::kLateWindow);
  EXPECT_EQ(t.observe(1, 1, "x", seq - 4).verdict, V::kDuplicate);
  EXPECT_EQ(t.observe(1, 1, "x", seq + 1).verdict, V::kDuplicate);  // the new gap's part that fell out
  EXPECT_EQ(t.observe(1, 1, "x", far - 1).verdict, V::kLate);
  t.for_each([](uint64_t, uint64_t, const std::string&, const SequenceTracker::TopicState& s) {
    EXPECT_LE(s.holes.size(), SequenceTracker::kMaxHoles);
  });
}

// An origin whose restart carries an older epoch (its clock stepped back), or one shut out by a forged huge
// epoch, is heard again once nothing of the newer epoch came for kEpochQuiet.
TEST(SequenceTrackerTest, AnOlderEpochIsARestartOnceTheNewerOneWentQuiet) {
  using std::chrono::seconds;
  SequenceTracker t;
  const auto t0 = std::chrono::steady_clock::now();
  ASSERT_NE(t.stream(1, 100, "x", t0), nullptr);
  EXPECT_EQ(t.stream(1, 50, "x", t0 + seconds(1)), nullptr)
      << "a late copy of an earlier run while 100 is heard";
  ASSERT_NE(t.stream(1, 100, "x", t0 + seconds(2)), nullptr);
  SequenceTracker::TopicState* s = t.stream(1, 50, "x", t0 + seconds(2) + SequenceTracker::kEpochQuiet);
  ASSERT_NE(s, nullptr) << "epoch 100 went quiet: 50 is the origin restarted";
  EXPECT_EQ(SequenceTracker::observe(*s, 1).verdict, SequenceTracker::Verdict::kDeliver);
  SequenceTracker::TopicState* again = t.stream(1, 100, "x", t0 + seconds(3) + SequenceTracker::kEpochQuiet);
  ASSERT_NE(again, nullptr) << "a later epoch is a restart as ever";
  EXPECT_TRUE(again->fresh);
}

// Origins and topics come from peers' frames: forged ones cannot grow the tracker without end. Past the
// limit the origin heard from least recently goes; the others keep their state.
TEST(SequenceTrackerTest, OriginsAreBoundedTheQuietestGoesFirst) {
  using std::chrono::seconds;
  SequenceTracker t;
  const auto t0 = std::chrono::steady_clock::now();
  for (uint64_t origin = 1; origin <= SequenceTracker::kMaxOrigins; ++origin) {
    (void)SequenceTracker::observe(*t.stream(origin, 1, "x", t0 + seconds(origin)), 5);
  }
  (void)t.stream(1, 1, "x", t0 + seconds(5000));  // origin 1 heard again: now 2 is the quietest
  (void)t.stream(99999, 1, "x", t0 + seconds(5001));
  std::size_t origins = 0;
  bool has2 = false, has1 = false;
  t.for_each([&](uint64_t origin, uint64_t, const std::string&, const SequenceTracker::TopicState&) {
    ++origins;
    has1 |= origin == 1;
    has2 |= origin == 2;
  });
  EXPECT_EQ(origins, SequenceTracker::kMaxOrigins);
  EXPECT_TRUE(has1);
  EXPECT_FALSE(has2);
  EXPECT_EQ(t.stream(3, 1, "x", t0 + seconds(5002))->last, 5u) << "the others keep their state";
}

// Past kMaxTopicsPerOrigin an origin's streams start afresh instead of growing without end.
TEST(SequenceTrackerTest, TopicsPerOriginAreBounded) {
  SequenceTracker t;
  for (std::size_t i = 0; i <= SequenceTracker::kMaxTopicsPerOrigin; ++i) {
    (void)SequenceTracker::observe(*t.stream(1, 1, "t/" + std::to_string(i)), 3);
  }
  std::size_t streams = 0;
  t.for_each([&](uint64_t, uint64_t, const std::string&, const SequenceTracker::TopicState&) { ++streams; });
  EXPECT_EQ(streams, 1u) << "cleared at the limit, then the new one";
  EXPECT_TRUE(t.stream(1, 1, "t/0")->fresh) << "an earlier stream starts afresh";
}

// However many origins and topics pass, the statistics document fits its topic: the streams missing the most
// are listed, all are counted.
TEST(StatsDocumentTest, ManyStreamsListTheWorstAndFitTheTopic) {
  SequenceTracker tracker;
  for (uint64_t origin = 1; origin <= 40; ++origin) {
    for (int topic = 0; topic < 50; ++topic) {
      const std::string name =
          "site/" + std::to_string(origin) + "/a/rather/long/topic/name/" + std::to_string(topic);
      SequenceTracker::TopicState* s = tracker.stream(origin, 7, name);
      (void)SequenceTracker::observe(*s, 1);
      (void)SequenceTracker::observe(*s, origin == 3 && topic == 4 ? 1001 : 2);  // one stream lost 999
    }
  }
  BridgeConfig config;
  config.name = "many";
  Counters counters;
  LinkMonitor links;
  const std::string doc = render_stats_document({config, 1, 1, counters, links, tracker, 0, 0, true});
  EXPECT_LT(doc.size(), kStatsMaxSize);
  const toml::table t = toml::parse(doc);
  EXPECT_EQ(t["in"]["streams"].value<int64_t>(), 2000);
  EXPECT_EQ(t["in"]["streams_listed"].value<int64_t>(), int64_t(kMaxStreamRows));
  const toml::array* rows = t["stream"].as_array();
  ASSERT_NE(rows, nullptr);
  EXPECT_EQ(rows->size(), kMaxStreamRows);
  EXPECT_EQ(toml::node_view<const toml::node>((*rows)[0])["missing"].value<int64_t>(), 999)
      << "the worst first";
}

// The relay queue is bounded by bytes as well as by count: large relays for a stalled peer stop at 64 MiB;
// one item larger than the budget still passes an empty queue.
TEST(RelayQueueTest, BoundedByBytesYetOneLargeItemAlwaysFits) {
  RelayQueue q;
  int queued = 0;
  while (q.push({"t", ZmqMessage(1u << 20)}) && queued < 1000) ++queued;
  EXPECT_EQ(queued, 63) << "64 MiB of 1 MiB relays and their topic frames";
  std::vector<RelayQueue::Item> taken;
  q.take_all(&taken);
  EXPECT_EQ(taken.size(), 63u);
  EXPECT_TRUE(q.push({"t", ZmqMessage(RelayQueue::kMaxQueuedBytes + 1)}));
  EXPECT_FALSE(q.push({"t", ZmqMessage(1)}));
}

class ConfigTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = "/tmp/shmbus-bridge-config-test-" + std::to_string(getpid());
    std::filesystem::create_directories(dir_);
    ASSERT_TRUE(generate_key_files(dir_ + "/k").ok());
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  Status parse(const std::string& text) { return parse_bridge_config(text, "bridge.toml", dir_).status(); }
  std::string dir_;
};

TEST_F(ConfigTest, ValidConfigurationParses) {
  auto c = parse_bridge_config(R"(name = "a"
[network]
bind = ["tcp://127.0.0.1:7000"]
lossless = true
idle_spin_us = 500
[security]
secret_key = "k.key"
allow = ["k.pub"]
[[peer]]
endpoint = "tcp://127.0.0.1:7001"
server_key = "k.pub"
[[rule]]
pattern = "robot/**"
direction = "out"
remote_prefix = "site-a/"
[[rule]]
pattern = "*/cmd"
direction = "in"
policy = "lossless"
max_message_size = 128
)",
                               "bridge.toml", dir_);
  ASSERT_TRUE(c.ok()) << c.status().to_string();
  EXPECT_EQ(c->name, "a");
  EXPECT_EQ(c->origin_id, origin_id_of("a"));
  EXPECT_TRUE(c->curve);
  EXPECT_TRUE(c->lossless);
  ASSERT_EQ(c->rules.size(), 2u);
  EXPECT_EQ(c->rules[0].remote_prefix, "site-a/");
  EXPECT_EQ(c->idle_spin, std::chrono::microseconds(500));
  EXPECT_EQ(c->max_frame_bytes, int64_t(bridge::kMaxFrameBytes));  // the default
  EXPECT_EQ(c->rules[1].line, 16);
  EXPECT_EQ(*c->rules[1].topic.max_message_size, 128u);
  EXPECT_EQ(c->allowed_keys.size(), 1u);
  EXPECT_EQ(c->peers[0].server_key, c->allowed_keys[0]);
  // The documented example parses too (its key files aside).
  auto example = parse_bridge_config(kExampleConfig, "example", dir_);
  EXPECT_NE(example.status().message().find("keys/site-a.key"), std::string::npos)
      << example.status().message();
}

TEST_F(ConfigTest, ErrorsNameTheLineAndTheKey) {
  struct Case {
    std::string text, expected;
  };
  const std::vector<Case> cases = {
      {"name = \"a\"\n[network]\nbnid = [\"tcp://x:1\"]\n", "bridge.toml:3: network.bnid: unknown key"},
      {"name = \"a\"\n[network]\nbind = [\"tcp://x:1\"]\n[[rule]]\npattern = \"a/**\"\ndirection = "
       "\"sideways\"\n",
       "bridge.toml:6: rule.direction: \"sideways\" is not one of out, in, both"},
      {"name = \"a\"\n[network]\nbind = [\"tcp://x:1\"]\n[[rule]]\npattern = \"a/**b\"\n",
       "bridge.toml:5: rule.pattern"},
      {"name = \"a\"\n[network]\nbind = [\"tcp://x:1\"]\n", "rule: no [[rule]]"},
      {"name = \"a\"\n[network]\nbind = [\n  \"udp://x:1\"]\n[[rule]]\npattern = \"**\"\n",
       "bridge.toml:4: network.bind: \"udp://x:1\" is not a tcp:// endpoint"},
      {"name = \"a\"\n[security]\nsecret_key = \"missing.key\"\n",
       "bridge.toml:3: security.secret_key: cannot read key file"},
      {"name = \"a\"\n[security]\nsecret_key = \"k.pub\"\nallow = [\"k.key\"]\n[[peer]]\nendpoint = "
       "\"tcp://x:1\"\n[[rule]]\npattern=\"**\"\n",
       "bridge.toml:5: peer.server_key: missing"},
      {"name = \"a\"\n[network]\nbind = [\"tcp://x:1\"]\n[[rule]]\npattern = \"**\"\nlocal_prefix = \"x\"\n",
       "bridge.toml:6: rule.local_prefix"},
      {"name = \"a\"\n[network]\nhigh_water_mark = \"lots\"\n",
       "bridge.toml:3: high_water_mark: must be an integer"},
      {"name = \"a\"\n[network]\nidle_spin_us = 2000000\n",
       "bridge.toml:3: idle_spin_us: must be between 0 and 1000000"},
      {"name = \"a\"\n[network]\nmax_frame_bytes = 1000\n",
       "bridge.toml:3: max_frame_bytes: must be between 65536 and 268435500"},
      {"name = \"a\"\n\n[network\n", "bridge.toml:3: "},
      {"name = \"a/b\"\n", "bridge.toml:1: name"},
      {"name = \"" + std::string(236, 'n') + "\"\n", "bridge.toml:1: name: is too long"},
      // Topic settings the daemon would refuse at every open are refused here, as the daemon's own rules are.
      {"name = \"a\"\n[[rule]]\npattern = \"**\"\ndepth = 3\n",
       "bridge.toml:4: rule.depth: 3 is not a power"},
      {"name = \"a\"\n[[rule]]\npattern = \"**\"\nmax_publishers = 100\n", "bridge.toml:4: max_publishers"},
      {"name = \"a\"\n[[rule]]\npattern = \"**\"\nmax_message_size = 300000000\n",
       "bridge.toml:4: max_message_size"},
      {"name = \"a\"\n[[rule]]\npattern = \"**\"\ndepth = 8\nhistory = 7\n",
       "bridge.toml:5: rule.history: must be at most depth - 2 = 6"},
  };
  for (const auto& c : cases) {
    const Status s = parse(c.text);
    EXPECT_FALSE(s.ok()) << c.text;
    EXPECT_NE(s.message().find(c.expected), std::string::npos)
        << "got: " << s.message() << "\nwanted: " << c.expected;
  }
}

TEST_F(ConfigTest, TheProgramRefusesABadConfigurationWithExitCode2) {
  const std::string path = dir_ + "/bad.toml";
  std::ofstream(path) << "name = \"a\"\n[network]\nbind = [\"tcp://127.0.0.1:1\"]\n[[rule]]\npattern = "
                         "\"**\"\ndirection = 1\n";
  EXPECT_EQ(shmbus::test::run_process({SHMBUS_BRIDGE_PATH, "--config", path, "--check"}).status, 2);
  std::ofstream(path)
      << "name = \"a\"\n[network]\nbind = [\"tcp://127.0.0.1:1\"]\n[[rule]]\npattern = \"**\"\n";
  EXPECT_EQ(shmbus::test::run_process({SHMBUS_BRIDGE_PATH, "--config", path, "--check"}).status, 0);
}

TEST(CurveKeysTest, GeneratedKeysReadBackAndRefuseOverwrite) {
  const std::string prefix = "/tmp/shmbus-bridge-keys-" + std::to_string(getpid());
  ASSERT_TRUE(generate_key_files(prefix).ok());
  auto sec = read_key_file(prefix + ".key");
  auto pub = read_key_file(prefix + ".pub");
  ASSERT_TRUE(sec.ok() && pub.ok());
  EXPECT_EQ(public_key_of(sec.value()).value(), pub.value());
  EXPECT_FALSE(generate_key_files(prefix).ok());
  EXPECT_EQ(std::filesystem::status(prefix + ".key").permissions() & std::filesystem::perms::others_read,
            std::filesystem::perms::none);
  std::filesystem::remove(prefix + ".key");
  std::filesystem::remove(prefix + ".pub");
}

}  // namespace
}  // namespace shmbus::bridge

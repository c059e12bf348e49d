// bench-floor: the physical floor of any shared-memory IPC on this machine. A round trip is
// one 64-bit store on A's cache line and one on B's, each side busy spinning on the other's
// line: two cache-line transfers and nothing else. Round trips only.
//
// `--probe N` runs the same ping-pong for N round trips as a calibration line (README trap 1);
// run_peers.sh takes one before and after every row.

#include "harness/cache_line_channel.h"
#include "harness/shared_region.h"
#include "harness/two_process_bench.h"

namespace {

class FloorPeer {
 public:
  static constexpr const char* kName = "floor";
  static constexpr bool kSupportsStream = false;
  static constexpr uint64_t kFixedMessageSize = 8;  // the message is the sequence number

  explicit FloorPeer(const bench::BenchOptions&) : region_(sizeof(bench::PingPongLines)) {
    lines_ = new (region_.data()) bench::PingPongLines;
  }

  bench::CacheLineChannel open(bench::Side side) {
    if (side == bench::Side::a) return bench::CacheLineChannel(lines_->to_b, lines_->to_a);
    return bench::CacheLineChannel(lines_->to_a, lines_->to_b);
  }

 private:
  bench::SharedRegion region_;
  bench::PingPongLines* lines_ = nullptr;
};

}  // namespace

int main(int argc, char** argv) {
  return bench::run_two_process_bench<FloorPeer>(argc, argv);
}

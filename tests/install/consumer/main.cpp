// Built against the installed package: connects to an instance nobody serves and expects the documented
// error.
#include <shmbus/bus.h>
#include <shmbus/topic_name.h>

#include <cstdio>

int main() {
  shmbus::BusOptions o;
  o.instance = "no-daemon-for-install-test";
  o.runtime_dir = "/tmp/shmbus-install-test";
  auto bus = shmbus::Bus::connect(o);
  const bool ok = !bus && bus.status().code() == shmbus::Errc::kDaemonUnavailable &&
                  shmbus::validate_topic_name("robot/pose").ok();
  std::printf("%s\n", ok ? "consumer ok" : bus.status().to_string().c_str());
  return ok ? 0 : 1;
}

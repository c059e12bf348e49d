#include "shmbus/status.h"

namespace shmbus {

std::string_view errc_name(Errc code) {
  switch (code) {
    case Errc::kOk:
      return "ok";
    case Errc::kInvalidArgument:
      return "invalid argument";
    case Errc::kInvalidTopic:
      return "invalid topic";
    case Errc::kMessageTooLarge:
      return "message too large";
    case Errc::kIncompatibleSettings:
      return "incompatible settings";
    case Errc::kDaemonUnavailable:
      return "daemon unavailable";
    case Errc::kTimeout:
      return "timeout";
    case Errc::kExhausted:
      return "exhausted";
    case Errc::kPermissionDenied:
      return "permission denied";
    case Errc::kProtocolError:
      return "protocol error";
    case Errc::kInternal:
      return "internal error";
    case Errc::kServerDied:
      return "server died";
    case Errc::kClosed:
      return "closed";
  }
  return "unknown error";
}

std::string Status::to_string() const {
  if (ok()) return "ok";
  return std::string(errc_name(code_)) + ": " + message_;
}

}  // namespace shmbus

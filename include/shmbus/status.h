// Errors of control-plane calls: a code from a short list and a message that names what was wrong.
#pragma once

#include <string>
#include <string_view>
#include <utility>
#include <variant>

namespace shmbus {

enum class Errc {
  kOk = 0,
  kInvalidArgument,       // a malformed option, instance or configuration value
  kInvalidTopic,          // a topic name that breaks the naming rules
  kMessageTooLarge,       // larger than the topic's max_message_size
  kIncompatibleSettings,  // the topic exists with other settings; the message names both
  kDaemonUnavailable,     // no shmbusd answers on the instance's socket (or it went away)
  kTimeout,               // a lossless topic stayed full, or the daemon did not answer in time
  kExhausted,             // no free publisher/subscriber slot, too many topics, out of shared memory
  kPermissionDenied,      // the daemon's access rules refuse this user
  kProtocolError,         // a malformed control message (version mismatch, bad length)
  kInternal,              // a system call failed unexpectedly; the message has errno's text
  kServerDied,            // the server handling a request died before it responded
  kClosed,                // the daemon shut the queue or topic down
};

std::string_view errc_name(Errc code);

class [[nodiscard]] Status {
 public:
  Status() = default;
  Status(Errc code, std::string message) : code_(code), message_(std::move(message)) {}
  static Status Ok() { return {}; }

  bool ok() const { return code_ == Errc::kOk; }
  Errc code() const { return code_; }
  const std::string& message() const { return message_; }
  // "<code name>: <message>", or "ok".
  std::string to_string() const;

 private:
  Errc code_ = Errc::kOk;
  std::string message_;
};

// A value or the Status explaining why there is none.
template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::move(value)) {}         // NOLINT(google-explicit-constructor)
  Result(Status status) : v_(std::move(status)) {}  // NOLINT(google-explicit-constructor)

  bool ok() const { return std::holds_alternative<T>(v_); }
  explicit operator bool() const { return ok(); }
  // REQUIRES: ok().
  T& value() & { return std::get<T>(v_); }
  T&& value() && { return std::get<T>(std::move(v_)); }
  T* operator->() { return &std::get<T>(v_); }
  T& operator*() & { return std::get<T>(v_); }
  // Ok() when a value is held.
  Status status() const { return ok() ? Status::Ok() : std::get<Status>(v_); }

 private:
  std::variant<T, Status> v_;
};

}  // namespace shmbus

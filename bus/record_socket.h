// Sending and receiving control records on a SOCK_SEQPACKET Unix socket, optionally with one descriptor.
#pragma once

#include <sys/types.h>
#include <chrono>
#include <cstddef>

namespace shmbus::detail {

// Sends one record (and `fd` via SCM_RIGHTS when >= 0). Returns false with errno set on failure.
bool send_record(int socket, const void* data, std::size_t size, int fd = -1);

// Receives one record into `buffer` within `timeout` (negative: wait forever). Returns its size, 0 when the
// peer closed, -1 with errno set (ETIMEDOUT on timeout). A received descriptor goes to `*fd` (else -1); a
// record larger than `capacity` is reported as EMSGSIZE.
ssize_t receive_record(int socket, void* buffer, std::size_t capacity, std::chrono::milliseconds timeout,
                       int* fd = nullptr);

}  // namespace shmbus::detail

// CURVE key files: one Z85 key (40 characters) on the first line that is not blank or a '#' comment.
// `shmbus-bridge --generate-keys PREFIX` writes PREFIX.key (secret, mode 0600) and PREFIX.pub (public).
#pragma once

#include <string>

#include "shmbus/status.h"

namespace shmbus::bridge {

// The key in `path`: kInvalidArgument naming the file if it is missing, unreadable or not a Z85 key.
Result<std::string> read_key_file(const std::string& path);
// The public key belonging to a secret key (both Z85).
Result<std::string> public_key_of(const std::string& secret_key);
// Writes a new key pair to prefix.key and prefix.pub; refuses to overwrite.
Status generate_key_files(const std::string& prefix);
// True if `key` is 40 Z85 characters that decode to 32 bytes.
bool is_z85_key(const std::string& key);

}  // namespace shmbus::bridge

// toml::table declared, for headers that only pass reports around (the daemon's `stats` document is built
// with toml++): their users need not include all of toml++.
#pragma once

namespace toml {
inline namespace v3 {
class table;
}
}  // namespace toml

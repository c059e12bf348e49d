// `shmbus queue ...` (work queues: list, stats, send, recv, dead, replay, purge) and `shmbus call`
// (request/response). Registered on the CLI app, run once it parsed.
#pragma once

#include <CLI/CLI.hpp>

#include <cstdint>
#include <string>

#include "shmbus/bus.h"

namespace shmbus::tools {

class QueueCommands {
 public:
  explicit QueueCommands(CLI::App& app);
  // True if one of these commands was given on the command line.
  bool parsed() const;
  // Runs it; returns the exit status.
  int run(Bus& bus);

 private:
  int run_queue(Bus& bus);
  int run_call(Bus& bus);

  CLI::App* queue_ = nullptr;
  CLI::App *list_ = nullptr, *stats_ = nullptr, *send_ = nullptr, *recv_ = nullptr;
  CLI::App *dead_ = nullptr, *replay_ = nullptr, *purge_ = nullptr, *call_ = nullptr;
  std::string name_, data_;
  uint32_t priority_ = 0;
  uint64_t count_ = 1;
  double timeout_s_ = 5;
  bool json_ = false;
};

}  // namespace shmbus::tools

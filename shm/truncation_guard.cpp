#include "shm/truncation_guard.h"

#include <signal.h>
#include <sys/mman.h>

#include <array>
#include <atomic>
#include <cerrno>
#include <mutex>

namespace shmbus::shm {
namespace {

// base: 0 free, kClaiming while guard_mapping fills the entry in, else the mapping's address.
constexpr uintptr_t kClaiming = 1;

struct GuardedMapping {
  std::atomic<uintptr_t> base{0};
  std::atomic<std::size_t> size{0};
  std::atomic<std::size_t> word_offset{kNoWord};
  std::atomic<uint32_t> word_value{0};
  std::atomic<bool> replaced{false};
};

std::array<GuardedMapping, kMaxGuardedMappings> table;
std::atomic<std::size_t> table_used{0};  // entries [0, table_used) have been claimed at least once
std::atomic<uint64_t> replaced_count{0};
struct sigaction previous_action {};
std::once_flag install_once;

// Async-signal-safe: atomics, mmap and nothing that allocates or locks.
bool replace(uintptr_t address) {
  const std::size_t used = table_used.load(std::memory_order_acquire);
  for (std::size_t i = 0; i < used && i < table.size(); ++i) {
    GuardedMapping& m = table[i];
    // acquire: pairs with guard_mapping's release store of base; size and the word are visible after it.
    const uintptr_t base = m.base.load(std::memory_order_acquire);
    if (base <= kClaiming) continue;
    const std::size_t size = m.size.load(std::memory_order_relaxed);
    if (address - base >= size) continue;
    // The whole mapping, not just the lost pages: what is left of the segment is as unusable to its owner as
    // what is gone, and a mapping that no longer follows the segment cannot be half stale.
    void* p = mmap(reinterpret_cast<void*>(base), size, PROT_READ | PROT_WRITE,
                   MAP_FIXED | MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (p == MAP_FAILED) return false;
    const std::size_t offset = m.word_offset.load(std::memory_order_relaxed);
    if (offset != kNoWord && offset % 4 == 0 && offset + 4 <= size) {
      // relaxed: other threads of this process read the word with their own atomics; the mapping is private.
      reinterpret_cast<std::atomic<uint32_t>*>(base + offset)
          ->store(m.word_value.load(std::memory_order_relaxed), std::memory_order_relaxed);
    }
    // relaxed: counts and flags for whoever asks later.
    m.replaced.store(true, std::memory_order_relaxed);
    replaced_count.fetch_add(1, std::memory_order_relaxed);
    return true;
  }
  return false;
}

void on_sigbus(int signal, siginfo_t* info, void* context) {
  const int saved_errno = errno;
  // BUS_ADRERR: an access to a page of a file mapping that lies past the end of the file.
  const bool ours =
      info != nullptr && info->si_code == BUS_ADRERR && replace(reinterpret_cast<uintptr_t>(info->si_addr));
  errno = saved_errno;
  if (ours) return;  // the faulting access runs again, on the replacement
  if ((previous_action.sa_flags & SA_SIGINFO) != 0) {
    if (previous_action.sa_sigaction != nullptr) previous_action.sa_sigaction(signal, info, context);
    return;
  }
  if (previous_action.sa_handler == SIG_DFL || previous_action.sa_handler == SIG_IGN) {
    // Not ours: the action there was before the guard. SIG_DFL: raised again (blocked until this handler
    // returns), it then kills as it would have. SIG_IGN: a fault runs again and the kernel kills.
    sigaction(SIGBUS, &previous_action, nullptr);
    if (previous_action.sa_handler == SIG_DFL) raise(SIGBUS);
    return;
  }
  previous_action.sa_handler(signal);
}

void install_handler() {
  struct sigaction action {};
  action.sa_sigaction = on_sigbus;
  sigemptyset(&action.sa_mask);
  action.sa_flags = SA_SIGINFO | SA_ONSTACK | SA_RESTART;
  sigaction(SIGBUS, &action, &previous_action);
}

}  // namespace

bool guard_mapping(void* base, std::size_t size, std::size_t word_offset, uint32_t word_value) {
  if (base == nullptr || size == 0) return false;
  std::call_once(install_once, install_handler);
  const auto b = reinterpret_cast<uintptr_t>(base);
  const std::size_t used = table_used.load(std::memory_order_acquire);
  for (std::size_t i = 0; i < used; ++i) {  // guarded already: a new word
    GuardedMapping& m = table[i];
    if (m.base.load(std::memory_order_acquire) != b) continue;
    m.word_offset.store(word_offset, std::memory_order_relaxed);
    m.word_value.store(word_value, std::memory_order_relaxed);
    return true;
  }
  for (std::size_t i = 0; i < table.size(); ++i) {
    GuardedMapping& m = table[i];
    uintptr_t expected = 0;
    // acquire: the entry's last owner is done with it (its unguard's release store of 0).
    if (!m.base.compare_exchange_strong(expected, kClaiming, std::memory_order_acquire)) continue;
    m.size.store(size, std::memory_order_relaxed);
    m.word_offset.store(word_offset, std::memory_order_relaxed);
    m.word_value.store(word_value, std::memory_order_relaxed);
    m.replaced.store(false, std::memory_order_relaxed);
    // release: the handler, which loads base with acquire, sees the fields above once it sees the base.
    m.base.store(b, std::memory_order_release);
    std::size_t seen = table_used.load(std::memory_order_relaxed);
    // release: pairs with the scans' acquire load; entry i is filled in before they look that far.
    while (seen < i + 1 && !table_used.compare_exchange_weak(seen, i + 1, std::memory_order_release)) {
    }
    return true;
  }
  return false;
}

void unguard_mapping(void* base) {
  const auto b = reinterpret_cast<uintptr_t>(base);
  const std::size_t used = table_used.load(std::memory_order_acquire);
  for (std::size_t i = 0; i < used; ++i) {
    uintptr_t expected = b;
    // release: a later guard_mapping that claims the entry (acquire) starts after this owner let go.
    if (table[i].base.compare_exchange_strong(expected, 0, std::memory_order_release)) return;
  }
}

bool mapping_replaced(const void* base) {
  const auto b = reinterpret_cast<uintptr_t>(base);
  const std::size_t used = table_used.load(std::memory_order_acquire);
  for (std::size_t i = 0; i < used; ++i) {
    // relaxed: a flag the handler set in this process.
    if (table[i].base.load(std::memory_order_acquire) == b)
      return table[i].replaced.load(std::memory_order_relaxed);
  }
  return false;
}

uint64_t replaced_mappings() {
  return replaced_count.load(std::memory_order_relaxed);
}

}  // namespace shmbus::shm

#include "shm/truncation_guard.h"

#include <signal.h>
#include <sys/mman.h>

#include <array>
#include <atomic>
#include <cerrno>
#include <mutex>

namespace shmbus::shm {
namespace {

// One guarded mapping. `version` is a seqlock over base and size: odd while guard_mapping or unguard_mapping
// change them, so that a handler never pairs one mapping's base with another's size (an entry can be let go
// and claimed again while a handler scans). `word` packs the offset (high 32 bits) and the value (low 32) of
// the word to write, so that both change at once; kNoWordBits: none. `state` makes one thread the replacer:
// its low 2 bits say where the mapping stands, the rest is the version it was guarded under, so that a
// handler that read an entry before it was let go and guarded again cannot win the new mapping's state.
constexpr uint64_t kNoWordBits = ~uint64_t{0};
enum : uint64_t { kLive = 0, kReplacing = 1, kReplaced = 2, kRetired = 3 };
uint64_t state_of(uint64_t version, uint64_t stage) {
  return (version << 2) | stage;
}

struct GuardedMapping {
  std::atomic<uint64_t> version{0};
  std::atomic<std::byte*> base{nullptr};  // null: free
  std::atomic<std::size_t> size{0};
  std::atomic<uint64_t> word{kNoWordBits};
  std::atomic<uint64_t> state{kLive};  // state_of(version, stage)
  std::atomic<bool> claimed{false};  // taken by a guard_mapping (base may still be null while it fills it in)
};

std::array<GuardedMapping, kMaxGuardedMappings> table;
std::atomic<std::size_t> table_used{0};  // entries [0, table_used) have been claimed at least once
std::atomic<uint64_t> replaced_count{0};
struct sigaction previous_action {};
std::once_flag install_once;

// The entry guarding `base`, for the thread that owns the mapping (never for the handler).
GuardedMapping* find(const void* base) {
  const auto* b = static_cast<const std::byte*>(base);
  const std::size_t used = table_used.load(std::memory_order_acquire);
  for (std::size_t i = 0; i < used; ++i) {
    // acquire: pairs with the release of claimed by the last unguard; relaxed base: an entry's base is
    // changed only by its owner, whose guard_mapping the caller's own code follows.
    if (table[i].claimed.load(std::memory_order_acquire) &&
        table[i].base.load(std::memory_order_relaxed) == b)
      return &table[i];
  }
  return nullptr;
}

void signal_default_and_raise() {
  struct sigaction action {};
  action.sa_handler = SIG_DFL;
  sigemptyset(&action.sa_mask);
  sigaction(SIGBUS, &action, nullptr);
  raise(SIGBUS);
}

uint64_t pack_word(std::size_t offset, uint32_t value) {
  return offset == kNoWord || offset > 0xffffffffu ? kNoWordBits : (uint64_t{offset} << 32) | value;
}

// Replaces `m` (base, size as read under its seqlock at `version`) once, whichever thread faults first; the
// others wait for that and return, their access then runs on the replacement. Async-signal-safe: atomics
// and mmap.
bool replace(GuardedMapping& m, uint64_t version, std::byte* base, std::size_t size) {
  uint64_t expected = state_of(version, kLive);
  // acq_rel: the winner's replacement and word are published by its release store of kReplaced.
  if (!m.state.compare_exchange_strong(expected, state_of(version, kReplacing), std::memory_order_acq_rel)) {
    uint64_t state = expected;
    while (state == state_of(version, kReplacing)) state = m.state.load(std::memory_order_acquire);
    // kLive again: the winner's mmap failed, and so do we; another version: let go (and guarded again)
    // while we faulted on it, a use after unmap of its owner's.
    return state == state_of(version, kReplaced);
  }
  // The whole mapping, not just the lost pages: what is left of the segment is as unusable to its owner as
  // what is gone, and a mapping that no longer follows the segment cannot be half stale.
  void* p = mmap(base, size, PROT_READ | PROT_WRITE, MAP_FIXED | MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
                 -1, 0);
  if (p == MAP_FAILED) {
    m.state.store(state_of(version, kLive), std::memory_order_release);
    return false;
  }
  // relaxed: packed, so offset and value are one guard's pair.
  const uint64_t word = m.word.load(std::memory_order_relaxed);
  const uint64_t offset = word >> 32;
  if (word != kNoWordBits && offset % 4 == 0 && offset + 4 <= size) {
    // relaxed: other threads of this process read the word with their own atomics after our release below
    // or after their own fault returns.
    reinterpret_cast<std::atomic<uint32_t>*>(base + offset)
        ->store(static_cast<uint32_t>(word), std::memory_order_relaxed);
  }
  replaced_count.fetch_add(1, std::memory_order_relaxed);  // relaxed: a count
  m.state.store(state_of(version, kReplaced), std::memory_order_release);
  return true;
}

bool replace_containing(const void* address) {
  const std::size_t used = table_used.load(std::memory_order_acquire);
  for (std::size_t i = 0; i < used && i < table.size(); ++i) {
    GuardedMapping& m = table[i];
    // Seqlock read: acquire on the version, then the fields, then an acquire fence and the version again.
    const uint64_t before = m.version.load(std::memory_order_acquire);
    if (before % 2 != 0) continue;  // being changed: not guarded yet, or no longer
    std::byte* const base = m.base.load(std::memory_order_relaxed);
    const std::size_t size = m.size.load(std::memory_order_relaxed);
    std::atomic_thread_fence(std::memory_order_acquire);
    if (m.version.load(std::memory_order_relaxed) != before) continue;
    if (base == nullptr ||
        reinterpret_cast<uintptr_t>(address) - reinterpret_cast<uintptr_t>(base) >= size)  // not in it
      continue;
    return replace(m, before, base, size);
  }
  return false;
}

void on_sigbus(int signo, siginfo_t* info, void* context) {
  const int saved_errno = errno;
  // BUS_ADRERR: an access to a page of a file mapping that lies past the end of the file.
  const bool fault = info != nullptr && info->si_code > 0;
  const bool ours = fault && info->si_code == BUS_ADRERR && replace_containing(info->si_addr);
  errno = saved_errno;
  if (ours) return;  // the faulting access runs again, on the replacement
  // Not ours: the action there was before the guard.
  const struct sigaction& previous = previous_action;
  if (previous.sa_handler == SIG_IGN && !fault) return;  // a kill -BUS, ignored as before
  if (previous.sa_handler == SIG_DFL || previous.sa_handler == SIG_IGN) {
    // The default action (a fault cannot be ignored: the kernel would kill on the next try anyway). Raised
    // again, blocked until this handler returns, it then kills as it would have without the guard.
    signal_default_and_raise();
    return;
  }
  if ((previous.sa_flags & SA_SIGINFO) != 0) {
    previous.sa_sigaction(signo, info, context);
  } else {
    previous.sa_handler(signo);
  }
}

void install_handler() {
  // The action before ours first: our handler may run as soon as it is installed.
  sigaction(SIGBUS, nullptr, &previous_action);
  struct sigaction action {};
  action.sa_sigaction = on_sigbus;
  sigemptyset(&action.sa_mask);
  action.sa_flags = SA_SIGINFO | SA_ONSTACK | SA_RESTART;
  sigaction(SIGBUS, &action, nullptr);
}

}  // namespace

bool guard_mapping(void* base, std::size_t size, std::size_t word_offset, uint32_t word_value) {
  if (base == nullptr || size == 0) return false;
  std::call_once(install_once, install_handler);
  for (std::size_t i = 0; i < table.size(); ++i) {
    GuardedMapping& m = table[i];
    bool expected = false;
    // acquire: the entry's last owner is done with it (its unguard's release store of claimed).
    if (!m.claimed.compare_exchange_strong(expected, true, std::memory_order_acquire)) continue;
    // Seqlock write: odd, the fields, even again (release: a handler that sees the even version sees them).
    const uint64_t v = m.version.load(std::memory_order_relaxed);
    m.version.store(v + 1, std::memory_order_relaxed);
    std::atomic_thread_fence(std::memory_order_release);
    m.base.store(static_cast<std::byte*>(base), std::memory_order_relaxed);
    m.size.store(size, std::memory_order_relaxed);
    m.word.store(pack_word(word_offset, word_value), std::memory_order_relaxed);
    m.state.store(state_of(v + 2, kLive), std::memory_order_relaxed);
    m.version.store(v + 2, std::memory_order_release);
    std::size_t seen = table_used.load(std::memory_order_relaxed);
    // release: pairs with the scans' acquire load; entry i is filled in before they look that far.
    while (seen < i + 1 && !table_used.compare_exchange_weak(seen, i + 1, std::memory_order_release)) {
    }
    return true;
  }
  return false;
}

void set_truncation_word(const void* base, std::size_t word_offset, uint32_t word_value) {
  GuardedMapping* m = find(base);
  // relaxed: one packed store; a handler reads it after it won the entry.
  if (m != nullptr) m->word.store(pack_word(word_offset, word_value), std::memory_order_relaxed);
}

void unguard_mapping(const void* base) {
  GuardedMapping* m = find(base);
  if (m == nullptr) return;
  // Retired first, once no handler is replacing it: a handler still holding this version can no longer win
  // it (acquire: after a replacement that finished).
  uint64_t state = m->state.load(std::memory_order_acquire);
  while (
      (state & 3) == kReplacing ||
      !m->state.compare_exchange_weak(state, (state & ~uint64_t{3}) | kRetired, std::memory_order_acquire)) {
    if ((state & 3) == kReplacing) state = m->state.load(std::memory_order_acquire);
  }
  const uint64_t v = m->version.load(std::memory_order_relaxed);
  m->version.store(v + 1, std::memory_order_relaxed);
  std::atomic_thread_fence(std::memory_order_release);
  m->base.store(nullptr, std::memory_order_relaxed);
  m->version.store(v + 2, std::memory_order_release);
  // release: a later guard_mapping that claims the entry (acquire) starts after this owner let go.
  m->claimed.store(false, std::memory_order_release);
}

bool mapping_replaced(const void* base) {
  const GuardedMapping* m = find(base);
  // acquire: pairs with the replacer's release of kReplaced.
  return m != nullptr && (m->state.load(std::memory_order_acquire) & 3) == kReplaced;
}

uint64_t replaced_mappings() {
  return replaced_count.load(std::memory_order_relaxed);
}

}  // namespace shmbus::shm

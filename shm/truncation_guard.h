// Keeps a segment that another process cuts short (ftruncate) from killing this one.
//
// Pages of a shared mapping past the end of its file no longer exist: touching one raises SIGBUS, whose
// default action kills the process. Any process allowed to map a segment read-write can shrink it, so one
// buggy or hostile participant could kill the daemon and every peer on its topic. A guarded mapping is
// instead replaced in place, on the first such fault, by private zero-filled pages (the faulting access then
// completes on them and the process goes on), a word of the owner's choice is written into the replacement
// (a topic's `closed`, so that its users see the topic gone and re-open it through the daemon) and the event
// is counted. The replacement never sees the shared segment again. A SIGBUS anywhere else goes to the handler
// that was installed before the first guard, or takes the default action, as if no guard existed.
//
// The handler is installed by the first guard_mapping() of the process. Thread safety: every function may
// be called from any thread; the handler reads the table without locks.
#pragma once

#include <cstddef>
#include <cstdint>

namespace shmbus::shm {

inline constexpr std::size_t kNoWord = ~std::size_t{0};

// Guards [base, base + size). On a truncation fault the 32-bit `word_value` is written at `base +
// word_offset` of the replacement (4-byte aligned, < size and < 4 GiB), or nothing if word_offset is
// kNoWord. False if the table (kMaxGuardedMappings) is full: the mapping then stays unguarded.
bool guard_mapping(void* base, std::size_t size, std::size_t word_offset = kNoWord, uint32_t word_value = 0);
// Changes the word of the mapping guarded at `base`.
void set_truncation_word(const void* base, std::size_t word_offset, uint32_t word_value);
// Before the mapping at `base` is unmapped.
void unguard_mapping(const void* base);
// True once the mapping at `base` was replaced after a truncation fault.
bool mapping_replaced(const void* base);
// Mappings replaced so far in this process.
uint64_t replaced_mappings();

inline constexpr std::size_t kMaxGuardedMappings = 4096;

}  // namespace shmbus::shm

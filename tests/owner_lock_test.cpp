// The process-shared lock of work queues (shm/owner_lock.h) on its own: threads of several processes
// exclude each other; an owner that dies, or a garbage word, is taken over and reported; a live holder makes
// others time out. Run under ThreadSanitizer in CI.
#include <gtest/gtest.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <thread>
#include <vector>

#include "shm/owner_lock.h"
#include "support/fork_child.h"

namespace shmbus::shm {
namespace {

using namespace std::chrono_literals;
using test::wait_exit;

// What the processes share: the lock word and what it guards.
struct Shared {
  std::atomic<uint32_t> word{0};
  std::atomic<uint32_t> inside{0};  // critical sections running now: never more than one
  uint64_t counter = 0;             // incremented under the lock only
  std::atomic<uint32_t> overlaps{0};
};

// An anonymous MAP_SHARED mapping: forked children share it with the test.
class SharedMapping {
 public:
  SharedMapping() {
    void* p = mmap(nullptr, sizeof(Shared), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) throw std::runtime_error("mmap");
    shared_ = new (p) Shared;
  }
  ~SharedMapping() { munmap(shared_, sizeof(Shared)); }
  SharedMapping(const SharedMapping&) = delete;
  SharedMapping& operator=(const SharedMapping&) = delete;
  Shared* operator->() const { return shared_; }

 private:
  Shared* shared_;
};

void increment(Shared* s, int times) {
  for (int i = 0; i < times; ++i) {
    ASSERT_EQ(OwnerLock::lock(&s->word, 30s), LockResult::kLocked);
    if (s->inside.fetch_add(1) != 0) s->overlaps.fetch_add(1);
    ++s->counter;
    s->inside.fetch_sub(1);
    OwnerLock::unlock(&s->word);
  }
}

TEST(OwnerLockTest, ThreadsOfSeveralProcessesExcludeEachOther) {
  constexpr int kProcesses = 2, kThreads = 2, kTimes = 20'000;
  SharedMapping s;
  std::vector<pid_t> children;
  for (int p = 0; p < kProcesses; ++p) {  // forked while this process has one thread
    const pid_t pid = fork();
    if (pid == 0) {
      std::vector<std::thread> threads;
      for (int t = 0; t < kThreads; ++t) threads.emplace_back([&] { increment(s.operator->(), kTimes); });
      for (auto& t : threads) t.join();
      _exit(::testing::Test::HasFailure() ? 1 : 0);
    }
    children.push_back(pid);
  }
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) threads.emplace_back([&] { increment(s.operator->(), kTimes); });
  for (auto& t : threads) t.join();
  for (pid_t pid : children) EXPECT_EQ(wait_exit(pid), 0);
  EXPECT_EQ(s->overlaps.load(), 0u);
  EXPECT_EQ(s->counter, uint64_t{(kProcesses + 1) * kThreads * kTimes});
  EXPECT_EQ(s->word.load(), 0u);
}

// An owner that dies holding the lock: a waiter takes it over once it is gone, and says so.
TEST(OwnerLockTest, AnOwnerThatDiesHoldingTheLockIsTakenOverAndReported) {
  SharedMapping s;
  int ready[2];
  ASSERT_EQ(pipe(ready), 0);
  const pid_t child = fork();
  if (child == 0) {
    const bool locked = OwnerLock::lock(&s->word, 1s) == LockResult::kLocked;
    (void)!write(ready[1], "x", 1);
    std::this_thread::sleep_for(200ms);  // the test is waiting for the lock by now
    _exit(locked ? 0 : 1);               // without unlocking
  }
  char c;
  ASSERT_EQ(read(ready[0], &c, 1), 1);
  close(ready[0]);
  close(ready[1]);
  EXPECT_EQ(OwnerLock::lock(&s->word, 10s), LockResult::kOwnerDied);
  EXPECT_EQ(wait_exit(child), 0);
  OwnerLock::unlock(&s->word);
  EXPECT_EQ(OwnerLock::lock(&s->word, 1s), LockResult::kLocked);
  OwnerLock::unlock(&s->word);
}

// A word that names no thread, or the caller itself, is garbage (a scribbler's): taken over at once.
TEST(OwnerLockTest, AGarbageWordIsTakenOver) {
  SharedMapping s;
  for (const uint32_t garbage :
       {OwnerLock::kOwnerMask, OwnerLock::kWaitersBit | 12345678u, static_cast<uint32_t>(gettid()), ~0u}) {
    s->word.store(garbage);
    EXPECT_EQ(OwnerLock::lock(&s->word, 0s), LockResult::kOwnerDied) << std::hex << garbage;
    OwnerLock::unlock(&s->word);
    EXPECT_EQ(s->word.load(), 0u);
  }
}

// A live holder: others time out at their deadline, then get the lock once it is released.
TEST(OwnerLockTest, ALiveHolderMakesOthersTimeOutUntilItReleases) {
  SharedMapping s;
  int ready[2], go[2];
  ASSERT_EQ(pipe(ready), 0);
  ASSERT_EQ(pipe(go), 0);
  const pid_t child = fork();
  if (child == 0) {
    const bool locked = OwnerLock::lock(&s->word, 1s) == LockResult::kLocked;
    (void)!write(ready[1], "x", 1);
    char c;
    (void)!read(go[0], &c, 1);
    OwnerLock::unlock(&s->word);
    _exit(locked ? 0 : 1);
  }
  char c;
  ASSERT_EQ(read(ready[0], &c, 1), 1);
  EXPECT_EQ(OwnerLock::lock(&s->word, 0s), LockResult::kTimeout);
  EXPECT_EQ(OwnerLock::lock(&s->word, 50ms), LockResult::kTimeout);
  ASSERT_EQ(write(go[1], "x", 1), 1);
  EXPECT_EQ(OwnerLock::lock(&s->word, 10s), LockResult::kLocked);
  OwnerLock::unlock(&s->word);
  EXPECT_EQ(wait_exit(child), 0);
  for (int fd : {ready[0], ready[1], go[0], go[1]}) close(fd);
}

}  // namespace
}  // namespace shmbus::shm

// Access control with a real second Unix user (created and removed by the test; needs root).
#include <gtest/gtest.h>
#include <pwd.h>
#include <unistd.h>

#include <filesystem>

#include "support/test_daemon.h"

namespace shmbus::test {
namespace {

// A throw-away system user, removed on destruction whatever happened.
class TemporaryUser {
 public:
  TemporaryUser() : name_("sbt" + std::to_string(getpid() % 100000)) {
    run_process({"/usr/sbin/userdel", name_}, 10);
    created_ = run_process({"/usr/sbin/useradd", "--system", "--no-create-home", "--user-group", "--shell",
                            "/usr/sbin/nologin", name_},
                           30)
                   .status == 0;
  }
  ~TemporaryUser() {
    if (created_) run_process({"/usr/sbin/userdel", name_}, 30);
    run_process({"/usr/sbin/groupdel", name_}, 10);
  }
  bool created() const { return created_; }
  const std::string& name() const { return name_; }
  // argv prefixed to run a program as this user (its own group, no supplementary groups).
  std::vector<std::string> as_user(std::vector<std::string> argv) const {
    std::vector<std::string> full = {"/usr/bin/setpriv", "--reuid=" + name_, "--regid=" + name_,
                                     "--clear-groups"};
    full.insert(full.end(), argv.begin(), argv.end());
    return full;
  }

 private:
  std::string name_;
  bool created_ = false;
};

class AccessTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (geteuid() != 0) GTEST_SKIP() << "needs root to create a second user";
    user_ = std::make_unique<TemporaryUser>();
    if (!user_->created()) GTEST_SKIP() << "useradd failed: cannot create a second user here";
  }
  std::unique_ptr<TemporaryUser> user_;
};

TEST_F(AccessTest, OtherUsersAreDeniedUnlessTheConfigAllowsThem) {
  TestDaemon daemon("[[topic]]\npattern = \"open/**\"\nallow_publish = [\"user:" + user_->name() +
                    "\"]\nallow_subscribe = [\"user:" + user_->name() + "\"]\n");
  // The peer binary may sit in a directory the other user cannot enter: run a world-readable copy.
  const std::string peer = daemon.runtime_dir() + "/test_peer";
  std::filesystem::copy_file(TEST_PEER_PATH, peer);
  std::filesystem::permissions(peer, std::filesystem::perms(0755));

  // Default: deny other. Not through the library...
  EXPECT_EQ(run_process(user_->as_user({peer, "publish", "secret/data", "1", "16", "lossy"})).status, 2);
  EXPECT_EQ(run_process(user_->as_user({peer, "subscribe", "secret/data", "1", "1"})).status, 2);
  // ...and not by opening the shared memory directly.
  Bus bus = daemon.connect();
  auto pub = bus.publisher("secret/data");
  ASSERT_TRUE(pub.ok());
  ASSERT_EQ(daemon.segments().size(), 1u);
  const std::string segment = "/dev/shm" + daemon.segments()[0];
  EXPECT_EQ(std::filesystem::status(segment).permissions() & std::filesystem::perms::others_all,
            std::filesystem::perms::none)
      << "segments are never world-accessible";
  EXPECT_NE(run_process(user_->as_user({"/bin/sh", "-c", "cat " + segment + " > /dev/null"})).status, 0);
  EXPECT_NE(run_process(user_->as_user({"/bin/sh", "-c", "echo x >> " + segment})).status, 0);

  // Allowed by a rule: publishes and subscribes like anyone.
  const auto ok = run_process(user_->as_user({peer, "publish", "open/data", "10", "16", "lossy"}));
  EXPECT_EQ(ok.status, 0);
  EXPECT_NE(ok.out.find("published=10"), std::string::npos);
  // Root keeps its rights on the same topic (it is in the default list, but rule lists replace it).
  PublisherOptions o;
  EXPECT_EQ(bus.publisher("open/data", o).status().code(), Errc::kPermissionDenied);
  EXPECT_TRUE(bus.publisher("secret/other").ok());
}

}  // namespace
}  // namespace shmbus::test

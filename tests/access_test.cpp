// Access control with a real second Unix user (created and removed by the test; needs root).
#include <gtest/gtest.h>
#include <pwd.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <iterator>

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
  uid_t uid() const {
    const passwd* pw = getpwnam(name_.c_str());
    return pw ? pw->pw_uid : static_cast<uid_t>(-1);
  }
  const std::string& name() const { return name_; }
  // argv prefixed to run a program as this user: its own group as the primary one, and `groups` (a comma
  // separated list of group names) as the supplementary ones, none by default.
  std::vector<std::string> as_user(std::vector<std::string> argv, const std::string& groups = "") const {
    std::vector<std::string> full = {"/usr/bin/setpriv", "--reuid=" + name_, "--regid=" + name_,
                                     groups.empty() ? "--clear-groups" : "--groups=" + groups};
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
  // Runs `program args` as the user through a shell, stderr joined to stdout: a refused client's message is
  // part of the result.
  ProcessResult run_as_user(const std::string& command, const std::string& groups = "") {
    return run_process(user_->as_user({"/bin/sh", "-c", command + " 2>&1"}, groups));
  }
  // A world-executable copy of a test binary: the build tree may be closed to the other user.
  static std::string reachable_copy(const TestDaemon& daemon, const std::string& binary) {
    const std::string copy = daemon.runtime_dir() + "/" + std::filesystem::path(binary).filename().string();
    std::filesystem::copy_file(binary, copy, std::filesystem::copy_options::overwrite_existing);
    std::filesystem::permissions(copy, std::filesystem::perms(0755));
    return copy;
  }
  // shmbusd's stderr goes to this file (a launcher that execs it with stderr redirected).
  std::vector<std::string> logging_launcher() const {
    return {"/bin/sh", "-c", "exec \"$@\" 2>>" + log_path_, "sh"};
  }
  std::string daemon_log() const {
    std::ifstream in(log_path_);
    return std::string(std::istreambuf_iterator<char>(in), {});
  }
  void TearDown() override { std::filesystem::remove(log_path_); }

  std::unique_ptr<TemporaryUser> user_;
  std::string log_path_ = "/tmp/shmbus-access-test-" + std::to_string(getpid()) + ".log";
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

// A refused client learns why (kPermissionDenied naming its uid), and the daemon logs the refusal with the
// peer's kernel-given pid and uid, for topics and for queues alike.
TEST_F(AccessTest, RefusalsAreExplainedToTheClientAndLoggedWithUidAndPid) {
  TestDaemon daemon("", logging_launcher());
  const std::string peer = reachable_copy(daemon, TEST_PEER_PATH);
  const std::string cli = reachable_copy(daemon, SHMBUS_CLI_PATH);
  const std::string uid = std::to_string(user_->uid());

  const auto pub = run_as_user(peer + " publish secret/data 1 16 lossy");
  EXPECT_EQ(pub.status, 2);
  EXPECT_NE(pub.out.find("permission denied: uid " + uid + " may not publish to secret/data"),
            std::string::npos)
      << pub.out;
  const auto send = run_as_user(cli + " queue send jobs/secret hello");
  EXPECT_NE(send.status, 0);
  EXPECT_NE(send.out.find("uid " + uid + " may not send to queue jobs/secret"), std::string::npos)
      << send.out;

  const std::string log = daemon_log();
  EXPECT_NE(log.find("uid " + uid), std::string::npos) << log;
  EXPECT_NE(log.find("may not publish to secret/data"), std::string::npos) << log;
  EXPECT_NE(log.find("may not send to queue jobs/secret"), std::string::npos) << log;
  EXPECT_NE(log.find("denied: pid "), std::string::npos) << log;
}

// Group rules: by primary group name, by gid, and by a supplementary group (read by the daemon from /proc,
// not from anything the client says).
TEST_F(AccessTest, GroupRulesMatchPrimaryAndSupplementaryGroups) {
  const passwd* pw = getpwnam(user_->name().c_str());
  ASSERT_NE(pw, nullptr);
  const std::string gid = std::to_string(pw->pw_gid);
  TestDaemon daemon("[[topic]]\npattern = \"team/**\"\nallow_publish = [\"group:" + user_->name() +
                    "\"]\nallow_subscribe = [\"gid:" + gid +
                    "\"]\n[[topic]]\npattern = \"crew/**\"\nallow_publish = [\"group:adm\"]\n");
  const std::string peer = reachable_copy(daemon, TEST_PEER_PATH);

  EXPECT_EQ(run_as_user(peer + " publish team/data 5 16 lossy").status, 0) << "its primary group by name";
  const auto sub = run_as_user(peer + " subscribe team/data 1 0.2");
  EXPECT_EQ(sub.status, 0) << "its primary group by gid: " << sub.out;
  EXPECT_NE(sub.out.find("ready"), std::string::npos) << sub.out;

  const auto outsider = run_as_user(peer + " publish crew/data 5 16 lossy");
  EXPECT_EQ(outsider.status, 2) << "not in adm";
  EXPECT_NE(outsider.out.find("permission denied"), std::string::npos) << outsider.out;
  const auto member = run_as_user(peer + " publish crew/data 5 16 lossy", "adm");
  EXPECT_EQ(member.status, 0) << "adm as a supplementary group: " << member.out;
  EXPECT_NE(member.out.find("published=5"), std::string::npos) << member.out;
}

// Queues: another user can neither send to nor receive from a queue by default, and can once a [[queue]]
// rule lets it; what it sends arrives intact.
TEST_F(AccessTest, QueuesAreDeniedToOtherUsersUnlessARuleAllowsThem) {
  TestDaemon daemon("[[queue]]\npattern = \"jobs/shared/**\"\nallow_publish = [\"user:" + user_->name() +
                    "\"]\nallow_subscribe = [\"user:" + user_->name() + "\"]\n");
  const std::string cli = reachable_copy(daemon, SHMBUS_CLI_PATH);
  EXPECT_NE(run_as_user(cli + " queue send jobs/private hello").status, 0);
  const auto recv = run_as_user(cli + " queue recv jobs/private --timeout 1");
  EXPECT_NE(recv.status, 0);
  EXPECT_NE(recv.out.find("may not receive from queue jobs/private"), std::string::npos) << recv.out;

  const auto sent = run_as_user(cli + " queue send jobs/shared/work from-the-other-user --count 3");
  EXPECT_EQ(sent.status, 0) << sent.out;
  const auto got = run_as_user(cli + " queue recv jobs/shared/work --count 3 --timeout 5");
  EXPECT_EQ(got.status, 0) << got.out;
  std::size_t copies = 0;
  for (std::size_t at = got.out.find("from-the-other-user"); at != std::string::npos;
       at = got.out.find("from-the-other-user", at + 1))
    ++copies;
  EXPECT_EQ(copies, 3u) << got.out;
}

}  // namespace
}  // namespace shmbus::test

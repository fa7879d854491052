// The Slurm backend's pieces that need no cluster: what each Slurm state
// means, the sbatch command line and script, handles, and the command runner
// (the real cluster is in tests/integration/slurm_test.cpp).
#include <gtest/gtest.h>

#include <signal.h>

#include "common/error.hpp"
#include "server/command.hpp"
#include "server/slurm_dispatcher.hpp"

namespace qjobs::server {
namespace {

using Phase = AttemptUpdate::Phase;
using End = AttemptUpdate::End;

TEST(SlurmStates, MapOntoPhasesAndEnds) {
  EXPECT_EQ(slurm_state_update("PENDING", "Resources", "").phase, Phase::pending);
  EXPECT_EQ(slurm_state_update("PENDING", "Resources", "").stage, "pending in Slurm (Resources)");
  EXPECT_EQ(slurm_state_update("CONFIGURING", "None", "").stage, "pending in Slurm");
  EXPECT_EQ(slurm_state_update("RUNNING", "None", "").phase, Phase::running);
  EXPECT_EQ(slurm_state_update("COMPLETING", "None", "").phase, Phase::running);

  const auto done = slurm_state_update("COMPLETED", "", "0:0");
  EXPECT_EQ(done.phase, Phase::ended);
  EXPECT_EQ(done.end, End::exited);
  EXPECT_EQ(done.exit_code, 0);
  EXPECT_FALSE(done.signal);

  const auto killed = slurm_state_update("FAILED", "", "0:9");
  EXPECT_EQ(killed.end, End::exited);
  EXPECT_EQ(killed.signal, SIGKILL);
  EXPECT_FALSE(killed.exit_code);
  EXPECT_EQ(slurm_state_update("FAILED", "", "65:0").exit_code, 65);

  for (const char* s : {"NODE_FAIL", "BOOT_FAIL", "OUT_OF_MEMORY", "PREEMPTED", "DEADLINE"}) {
    const auto u = slurm_state_update(s, "", "0:0");
    EXPECT_EQ(u.phase, Phase::ended) << s;
    EXPECT_EQ(u.end, End::lost) << s;
    EXPECT_NE(u.detail.find(s), std::string::npos) << u.detail;
  }
  EXPECT_EQ(slurm_state_update("TIMEOUT", "", "0:15").end, End::timeout);

  const auto by_root = slurm_state_update("CANCELLED by 0", "", "0:15");
  EXPECT_EQ(by_root.end, End::cancelled);
  EXPECT_EQ(by_root.detail, "cancelled in Slurm by root (uid 0)");
  EXPECT_EQ(slurm_state_update("CANCELLED", "None", "").detail, "cancelled in Slurm");
}

TEST(SlurmHandles, RoundTripAndRejectJunk) {
  std::string job, cluster;
  ASSERT_TRUE(parse_slurm_handle(slurm_handle("1234", "c1"), &job, &cluster));
  EXPECT_EQ(job, "1234");
  EXPECT_EQ(cluster, "c1");
  ASSERT_TRUE(parse_slurm_handle("slurm:77", &job, &cluster));
  EXPECT_EQ(cluster, "");
  for (const char* bad : {"slurm:", "slurm:12;rm -rf /", "slurm:-1", "local:12:3", "slurm:12 13"})
    EXPECT_FALSE(parse_slurm_handle(bad, &job, &cluster)) << bad;
  int pid = 0;
  std::string token;
  ASSERT_TRUE(parse_local_handle(local_handle(4321, "99"), &pid, &token));
  EXPECT_EQ(pid, 4321);
  EXPECT_EQ(token, "99");
  EXPECT_FALSE(parse_local_handle("local:abc:1", &pid, &token));
  EXPECT_EQ(handle_backend("slurm:1@c"), "slurm");
}

TEST(SlurmSubmission, ArgumentsAndScript) {
  SlurmOptions o;
  o.worker = "/opt/q jobs/qjobs-worker";
  o.partition = "gpu";
  o.account = "ml";
  o.qos = "high";
  o.gres = "gpu";
  o.extra = "--constraint='h100|a100' --mem=64G";
  o.heartbeat_s = 5;
  SlurmDispatcher d(o);
  LaunchRequest r;
  r.job_id = "20261202-000000-00000000000000aa";
  r.job_dir = "/shared/ud/jobs/it's";
  r.spec_path = r.job_dir / "spec.yaml";
  r.devices_requested = 2;
  r.attempt = 3;
  r.timeout_s = 61;
  r.priority = 30;
  const auto a = d.sbatch_args(r);
  auto has = [&](const std::string& x) { return std::find(a.begin(), a.end(), x) != a.end(); };
  EXPECT_TRUE(has("--parsable"));
  EXPECT_TRUE(has("--job-name=20261202-000000-00000000000000aa"));
  EXPECT_TRUE(has("--comment=qjobs attempt 3"));
  EXPECT_TRUE(has("--output=/shared/ud/jobs/it's/logs/slurm-%j.out"));
  EXPECT_TRUE(has("--no-requeue"));
  EXPECT_TRUE(has("--time=2")) << "61 s rounds up to 2 minutes";
  EXPECT_TRUE(has("--nice=70")) << "PRIORITY 30";
  EXPECT_TRUE(has("--partition=gpu"));
  EXPECT_TRUE(has("--account=ml"));
  EXPECT_TRUE(has("--qos=high"));
  EXPECT_TRUE(has("--gres=gpu:2"));
  EXPECT_TRUE(has("--constraint=h100|a100")) << "--slurm-extra is split as a shell would";
  EXPECT_TRUE(has("--mem=64G"));
  const std::string s = d.batch_script(r);
  EXPECT_EQ(s.rfind("#!/bin/sh\n", 0), 0u);
  EXPECT_NE(s.find("QJOBS_ATTEMPT=3"), std::string::npos);
  EXPECT_NE(s.find("exec '/opt/q jobs/qjobs-worker' run '/shared/ud/jobs/it'\\''s/spec.yaml' --job-dir"),
            std::string::npos)
      << s;
  EXPECT_EQ(s.find("CUDA_VISIBLE_DEVICES="), std::string::npos) << "with --slurm-gres Slurm sets it";

  SlurmOptions plain;
  plain.worker = "/w";
  const std::string p = SlurmDispatcher(plain).batch_script(r);
  EXPECT_NE(p.find("export CUDA_VISIBLE_DEVICES=\n"), std::string::npos) << "no gres: no GPU";
  const auto pa = SlurmDispatcher(plain).sbatch_args(r);
  EXPECT_EQ(std::count_if(pa.begin(), pa.end(), [](const std::string& x) { return x.rfind("--gres", 0) == 0; }), 0);

  SlurmOptions bad;
  bad.extra = "--x='unclosed";
  EXPECT_THROW(SlurmDispatcher{bad}, Error);
  bad.extra = "$(touch /tmp/owned)";
  EXPECT_THROW(SlurmDispatcher{bad}, Error);
  bad.extra = "";
  bad.gres = "tpu";
  EXPECT_THROW(SlurmDispatcher{bad}, Error);
}

TEST(Command, CapturesFeedsAndTimesOut) {
  const auto echo = run_command({"cat"}, {"hello\n"});
  EXPECT_TRUE(echo.ok());
  EXPECT_EQ(echo.out, "hello\n");
  const auto fail = run_command({"sh", "-c", "echo oops >&2; exit 3"});
  EXPECT_EQ(fail.exit_code, 3);
  EXPECT_EQ(fail.summary(), "oops");
  CommandOptions quick;
  quick.timeout_s = 0.2;
  const auto slow = run_command({"sleep", "5"}, quick);
  EXPECT_TRUE(slow.timed_out);
  EXPECT_FALSE(slow.ok());
  const auto missing = run_command({"/nonexistent/sbatch"});
  EXPECT_TRUE(missing.not_started);
  CommandOptions env;
  env.env["QJOBS_X"] = "42";
  EXPECT_EQ(run_command({"sh", "-c", "printf %s \"$QJOBS_X\""}, env).out, "42");
}

}  // namespace
}  // namespace qjobs::server

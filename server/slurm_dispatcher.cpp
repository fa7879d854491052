#include "server/slurm_dispatcher.hpp"

#include <pwd.h>
#include <signal.h>
#include <wordexp.h>

#include <algorithm>
#include <cmath>
#include <set>

#include <spdlog/spdlog.h>

#include "common/error.hpp"
#include "common/job_dir.hpp"
#include "common/strings.hpp"

namespace qjobs::server {
namespace {

// Single-quotes `s` for /bin/sh.
std::string sh_quote(const std::string& s) {
  std::string out = "'";
  for (char c : s) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}

std::string join(const std::vector<std::string>& v, const std::string& sep) {
  std::string s;
  for (const auto& x : v) s += (s.empty() ? "" : sep) + x;
  return s;
}

const std::set<std::string>& pending_states() {
  static const std::set<std::string> s = {"PENDING",      "CONFIGURING", "SUSPENDED", "RESV_DEL_HOLD",
                                          "REQUEUE_HOLD", "REQUEUE_FED", "REQUEUED",  "RESIZING",
                                          "SIGNALING",    "STAGE_OUT",   "STOPPED"};
  return s;
}

bool running_state(const std::string& s) { return s == "RUNNING" || s == "COMPLETING"; }

bool live_state(const std::string& s) { return running_state(s) || pending_states().count(s); }

// sbatch's complaints that go away by themselves: the controller down or
// busy. Anything else (a bad partition, account, gres) is wrong for the job.
bool transient_failure(const CommandResult& r) {
  if (r.timed_out || r.not_started || r.signal) return true;
  const std::string e = to_lower(r.err + r.out);
  for (const char* k : {"unable to contact", "timed out", "temporarily", "connection", "connect failure",
                        "communication", "zero bytes", "slurmctld", "try again", "not responding"})
    if (e.find(k) != std::string::npos) return true;
  return false;
}

std::string user_name(const std::string& uid_text) {
  const auto uid = parse_int(uid_text);
  if (!uid) return uid_text;
  if (const passwd* pw = ::getpwuid(static_cast<uid_t>(*uid))) return pw->pw_name;
  return "uid " + uid_text;
}

}  // namespace

std::string slurm_handle(const std::string& job, const std::string& cluster) {
  return "slurm:" + job + (cluster.empty() ? "" : "@" + cluster);
}

bool parse_slurm_handle(const std::string& handle, std::string* job, std::string* cluster) {
  if (handle.rfind("slurm:", 0) != 0) return false;
  const std::string rest = handle.substr(6);
  const auto at = rest.find('@');
  *job = rest.substr(0, at);
  *cluster = at == std::string::npos ? "" : rest.substr(at + 1);
  return !job->empty() && job->size() <= 20 && job->find_first_not_of("0123456789") == std::string::npos;
}

AttemptUpdate slurm_state_update(const std::string& state_text, const std::string& reason,
                                 const std::string& exit_code) {
  AttemptUpdate u;
  const auto words = split(trim(state_text), ' ');
  const std::string state = words.empty() ? "" : words[0];
  if (pending_states().count(state)) {
    u.phase = AttemptUpdate::Phase::pending;
    u.stage = "pending in Slurm" + (reason.empty() || reason == "None" ? "" : " (" + reason + ")");
    return u;
  }
  if (running_state(state)) {
    u.phase = AttemptUpdate::Phase::running;
    return u;
  }
  u.phase = AttemptUpdate::Phase::ended;
  // ExitCode is "code:signal".
  const auto colon = exit_code.find(':');
  const auto code = parse_int(exit_code.substr(0, colon));
  const auto sig = colon == std::string::npos ? std::nullopt : parse_int(exit_code.substr(colon + 1));
  if (sig && *sig != 0) {
    u.signal = static_cast<int>(*sig);
  } else if (code) {
    u.exit_code = static_cast<int>(*code);
  }
  u.detail = "Slurm " + state;
  if (state == "COMPLETED" || state == "FAILED") {
    u.end = AttemptUpdate::End::exited;
  } else if (state == "TIMEOUT") {
    u.end = AttemptUpdate::End::timeout;
    u.detail = "Slurm's time limit (--time) ended the job";
  } else if (state == "CANCELLED") {
    u.end = AttemptUpdate::End::cancelled;
    // sacct: "CANCELLED by 1000"
    if (words.size() >= 3 && words[1] == "by")
      u.detail = "cancelled in Slurm by " + user_name(words[2]) + " (uid " + words[2] + ")";
    else u.detail = "cancelled in Slurm";
  } else {
    // NODE_FAIL, BOOT_FAIL, OUT_OF_MEMORY, PREEMPTED, DEADLINE, REVOKED, ...
    u.end = AttemptUpdate::End::lost;
  }
  return u;
}

SlurmDispatcher::SlurmDispatcher(SlurmOptions options) : options_(std::move(options)) {
  if (!trim(options_.extra).empty()) {
    wordexp_t w{};
    const int rc = ::wordexp(options_.extra.c_str(), &w, WRDE_NOCMD | WRDE_UNDEF);
    if (rc != 0) {
      if (rc == WRDE_NOSPACE) ::wordfree(&w);
      throw Error(ErrorKind::invalid_input, "--slurm-extra: cannot split '" + options_.extra +
                                                "' into arguments (quotes must match; no $(...) or `...`)");
    }
    for (std::size_t i = 0; i < w.we_wordc; ++i) extra_.emplace_back(w.we_wordv[i]);
    ::wordfree(&w);
  }
  if (!options_.gres.empty() && options_.gres != "gpu")
    throw Error(ErrorKind::invalid_input, "--slurm-gres: only 'gpu' is known, got '" + options_.gres + "'");
}

CommandResult SlurmDispatcher::run(const std::string& tool, const std::vector<std::string>& args,
                                   const std::string& input) {
  std::vector<std::string> argv = {tool};
  argv.insert(argv.end(), args.begin(), args.end());
  CommandOptions o;
  o.input = input;
  o.timeout_s = options_.command_timeout_s;
  if (tool == "sbatch") ++stats_.sbatch;
  else if (tool == "squeue") ++stats_.squeue;
  else if (tool == "sacct") ++stats_.sacct;
  else if (tool == "scancel") ++stats_.scancel;
  CommandResult r = run_command(argv, o);
  if (!r.ok()) {
    ++stats_.failures;
    uint64_t held = 0;
    if (log_.allow(&held))
      spdlog::warn("slurm: {} failed: {}{}", join(argv, " ").substr(0, 300), r.summary(),
                   held ? " (" + std::to_string(held) + " more failures since the last report)" : "");
  }
  return r;
}

std::string SlurmDispatcher::cluster() {
  if (cluster_known_) return cluster_;
  const auto r = run("scontrol", {"show", "config"});
  if (!r.ok()) return "";
  for (const auto& line : split(r.out, '\n')) {
    const auto eq = line.find('=');
    if (eq != std::string::npos && trim(line.substr(0, eq)) == "ClusterName") {
      cluster_ = trim(line.substr(eq + 1));
      cluster_known_ = true;
    }
  }
  return cluster_;
}

std::vector<std::string> SlurmDispatcher::sbatch_args(const LaunchRequest& req) const {
  const JobDir dir(req.job_dir);
  std::vector<std::string> a = {"--parsable", "--job-name=" + req.job_id,
                                "--comment=qjobs attempt " + std::to_string(req.attempt),
                                "--output=" + (dir.logs_dir() / "slurm-%j.out").string(), "--open-mode=append",
                                "--chdir=" + req.job_dir.string(), "--no-requeue",
                                // PRIORITY -100..100 -> nice 200..0: higher qjobs priority runs first; a
                                // nice >= 0 needs no privileges.
                                "--nice=" + std::to_string(100 - std::clamp(req.priority, -100, 100))};
  if (req.timeout_s > 0) a.push_back("--time=" + std::to_string(static_cast<int64_t>(std::ceil(req.timeout_s / 60.0))));
  if (!options_.partition.empty()) a.push_back("--partition=" + options_.partition);
  if (!options_.account.empty()) a.push_back("--account=" + options_.account);
  if (!options_.qos.empty()) a.push_back("--qos=" + options_.qos);
  if (options_.gres == "gpu" && req.devices_requested > 0)
    a.push_back("--gres=gpu:" + std::to_string(req.devices_requested));
  a.insert(a.end(), extra_.begin(), extra_.end());
  return a;
}

std::string SlurmDispatcher::batch_script(const LaunchRequest& req) const {
  std::string s = "#!/bin/sh\n# qjobs job " + req.job_id + ", attempt " + std::to_string(req.attempt) + "\n";
  s += "export QJOBS_ATTEMPT=" + std::to_string(req.attempt) + " QJOBS_JOB_ID=" + sh_quote(req.job_id) + "\n";
  if (options_.heartbeat_s > 0) s += "export QJOBS_HEARTBEAT_S=" + std::to_string(options_.heartbeat_s) + "\n";
  // With --slurm-gres, Slurm sets CUDA_VISIBLE_DEVICES to the GPUs it gave;
  // without, the job sees no GPU (not the server's own variable).
  if (options_.gres != "gpu") s += "export CUDA_VISIBLE_DEVICES=\n";
  s += "exec " + sh_quote(options_.worker.string()) + " run " + sh_quote(req.spec_path.string()) + " --job-dir " +
       sh_quote(req.job_dir.string()) + "\n";
  return s;
}

std::string SlurmDispatcher::launch(const LaunchRequest& req) {
  JobDir(req.job_dir).create_layout();
  last_transient_ = false;
  const auto r = run("sbatch", sbatch_args(req), batch_script(req));
  if (!r.ok()) {
    last_transient_ = transient_failure(r);
    throw Error(ErrorKind::io, "sbatch failed: " + r.summary());
  }
  // --parsable: "JOBID" or "JOBID;CLUSTER".
  const std::string line = trim(r.out.substr(0, r.out.find('\n')));
  const auto semi = line.find(';');
  const std::string job = line.substr(0, semi);
  std::string cl = semi == std::string::npos ? cluster() : line.substr(semi + 1);
  if (job.empty() || job.find_first_not_of("0123456789") != std::string::npos) {
    last_transient_ = true;
    throw Error(ErrorKind::io, "sbatch printed no job id: '" + line.substr(0, 200) + "'");
  }
  std::string handle = slurm_handle(job, cl);
  tracked_[handle].job = job;
  spdlog::info("slurm: job {} attempt {} submitted as Slurm job {}", req.job_id, req.attempt, job);
  return handle;
}

std::string SlurmDispatcher::check() {
  LaunchRequest probe;
  probe.job_id = "qjobs-check";
  probe.job_dir = "/tmp";
  probe.devices_requested = 1;
  std::vector<std::string> args = {"--test-only"};
  for (const auto& a : sbatch_args(probe))
    if (a.rfind("--output=", 0) != 0 && a.rfind("--chdir=", 0) != 0 && a != "--parsable") args.push_back(a);
  const auto r = run("sbatch", args, "#!/bin/sh\ntrue\n");
  if (r.ok() || transient_failure(r)) return "";
  return r.summary();
}

void SlurmDispatcher::signal(const std::string& handle, int sig) {
  std::string job, cl;
  if (!parse_slurm_handle(handle, &job, &cl)) return;
  if (sig == SIGKILL) {
    run("scancel", {"--signal=KILL", "--full", job});
    run("scancel", {job});
  } else {
    // The job becomes CANCELLED in Slurm; its steps get SIGTERM, then
    // SIGKILL after the cluster's KillWait.
    run("scancel", {job});
  }
}

void SlurmDispatcher::watch(const std::string& handle) {
  std::string job, cl;
  if (!parse_slurm_handle(handle, &job, &cl)) job = "";
  tracked_[handle] = Tracked{};
  tracked_[handle].job = job;
  next_poll_ = 0;  // look at once
}

std::vector<AttemptUpdate> SlurmDispatcher::poll() {
  std::vector<AttemptUpdate> out;
  if (tracked_.empty()) return out;
  const double now = unix_now();
  if (now < next_poll_) return out;
  next_poll_ = now + options_.poll_s;

  std::vector<std::string> ids;
  for (auto it = tracked_.begin(); it != tracked_.end();) {
    if (it->second.job.empty()) {  // a handle that does not parse: gone
      AttemptUpdate u;
      u.handle = it->first;
      u.end = AttemptUpdate::End::lost;
      u.detail = "not a Slurm handle";
      out.push_back(u);
      it = tracked_.erase(it);
      continue;
    }
    ids.push_back(it->second.job);
    ++it;
  }
  if (ids.empty()) return out;

  // One squeue for every watched job.
  const auto q = run("squeue", {"--noheader", "--states=all", "--jobs=" + join(ids, ","), "--format=%i|%T|%r"});
  if (!q.ok()) {
    stats_.reachable = false;
    return out;  // the controller is away: nothing is known, nothing changes
  }
  stats_.reachable = true;
  std::map<std::string, std::pair<std::string, std::string>> queue;  // job -> (state, reason)
  for (const auto& line : split(q.out, '\n')) {
    const auto f = split(trim(line), '|');
    if (f.size() >= 2) queue[f[0]] = {f[1], f.size() >= 3 ? f[2] : ""};
  }

  // One sacct for the jobs that left the queue or are not in it.
  std::vector<std::string> done;
  for (const auto& [h, t] : tracked_) {
    const auto it = queue.find(t.job);
    if (it == queue.end() || !live_state(it->second.first)) done.push_back(t.job);
  }
  std::map<std::string, std::pair<std::string, std::string>> acct;  // job -> (state, exit code)
  bool have_acct = false;
  if (!done.empty()) {
    const auto a = run("sacct", {"--noheader", "--parsable2", "--allocations", "--jobs=" + join(done, ","),
                                 "--format=JobIDRaw,State,ExitCode"});
    have_acct = a.ok();
    for (const auto& line : split(a.out, '\n')) {
      const auto f = split(trim(line), '|');
      if (f.size() >= 3) acct[f[0]] = {f[1], f[2]};
    }
  }

  for (auto it = tracked_.begin(); it != tracked_.end();) {
    Tracked& t = it->second;
    const auto qi = queue.find(t.job);
    const auto ai = acct.find(t.job);
    std::optional<AttemptUpdate> u;
    if (qi != queue.end() && live_state(qi->second.first)) {
      const std::string& state = qi->second.first;
      if (running_state(t.last_state) && pending_states().count(state)) {
        // Slurm put a started job back in its queue (scontrol requeue, a
        // node failure): qjobs owns retries, so this attempt is over.
        run("scancel", {t.job});
        u = AttemptUpdate{};
        u->end = AttemptUpdate::End::lost;
        u->detail = "Slurm requeued job " + t.job + " (" + state + ")";
      } else {
        auto live = slurm_state_update(state, qi->second.second, "");
        if (state != t.last_state || live.stage != t.last_stage) u = live;
        t.last_state = state;
        t.last_stage = live.stage;
        t.unknown_polls = 0;
      }
    } else if (ai != acct.end() && !live_state(split(ai->second.first, ' ')[0])) {
      u = slurm_state_update(ai->second.first, "", ai->second.second);
    } else if (qi != queue.end() && (!have_acct || ++t.unsettled_polls > 5)) {
      // Ended in squeue; accounting is off or has not caught up.
      u = slurm_state_update(qi->second.first, qi->second.second, "");
    } else if (qi == queue.end() && ai == acct.end() && ++t.unknown_polls >= 3) {
      u = AttemptUpdate{};
      u->end = AttemptUpdate::End::lost;
      u->detail = "Slurm no longer knows job " + t.job;
    }
    if (u) {
      u->handle = it->first;
      if (u->phase == AttemptUpdate::Phase::ended && u->detail.find(t.job) == std::string::npos)
        u->detail += " (Slurm job " + t.job + ")";
      out.push_back(*u);
      if (u->phase == AttemptUpdate::Phase::ended) {
        it = tracked_.erase(it);
        continue;
      }
    }
    ++it;
  }
  return out;
}

std::string SlurmDispatcher::metrics() const {
  std::string out =
      "# HELP qjobs_slurm_commands_total Slurm commands run, by command.\n"
      "# TYPE qjobs_slurm_commands_total counter\n";
  for (const auto& [name, n] : {std::pair<const char*, uint64_t>{"sbatch", stats_.sbatch.load()},
                                {"squeue", stats_.squeue.load()},
                                {"sacct", stats_.sacct.load()},
                                {"scancel", stats_.scancel.load()}})
    out += std::string("qjobs_slurm_commands_total{command=\"") + name + "\"} " + std::to_string(n) + "\n";
  out +=
      "# HELP qjobs_slurm_command_failures_total Slurm commands that failed or timed out.\n"
      "# TYPE qjobs_slurm_command_failures_total counter\n"
      "qjobs_slurm_command_failures_total " +
      std::to_string(stats_.failures.load()) + "\n";
  out +=
      "# HELP qjobs_slurm_reachable Whether the last squeue reached slurmctld.\n"
      "# TYPE qjobs_slurm_reachable gauge\n"
      "qjobs_slurm_reachable " +
      std::string(stats_.reachable.load() ? "1" : "0") + "\n";
  return out;
}

std::vector<UnrecordedAttempt> SlurmDispatcher::unrecorded() {
  std::vector<UnrecordedAttempt> out;
  const auto q = run("squeue", {"--noheader", "--states=all", "--me", "--format=%i|%j|%k"});
  if (!q.ok()) return out;
  const std::string cl = cluster();
  for (const auto& line : split(q.out, '\n')) {
    const auto f = split(trim(line), '|');
    if (f.size() < 3 || f[2].rfind("qjobs attempt ", 0) != 0) continue;
    const auto attempt = parse_int(f[2].substr(14));
    if (!attempt) continue;
    out.push_back({f[1], static_cast<int>(*attempt), slurm_handle(f[0], cl)});
  }
  return out;
}

}  // namespace qjobs::server

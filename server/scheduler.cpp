#include "server/scheduler.hpp"

#include <signal.h>
#include <sys/stat.h>

#include <algorithm>

#include <spdlog/spdlog.h>

#include "common/error.hpp"
#include "common/job_dir.hpp"
#include "common/strings.hpp"

namespace qjobs::server {
namespace {

std::string join(const std::vector<std::string>& v) {
  std::string s;
  for (const auto& x : v) s += (s.empty() ? "" : ",") + x;
  return s;
}

// Modification time of `p` in unix seconds; nullopt when it cannot be read.
std::optional<double> mtime(const std::filesystem::path& p) {
  struct stat st {};
  if (::stat(p.c_str(), &st) != 0) return std::nullopt;
  return static_cast<double>(st.st_mtim.tv_sec) + st.st_mtim.tv_nsec * 1e-9;
}

}  // namespace

Scheduler::Scheduler(Store& store, Dispatcher& dispatcher, SchedulerOptions options)
    : store_(store), dispatcher_(dispatcher), options_(std::move(options)) {
  if (options_.capacity.gpu_mode()) {
    for (const auto& g : options_.capacity.gpus) free_.insert(g);
  } else {
    for (int i = 0; i < options_.capacity.slots; ++i) free_.insert("slot" + std::to_string(i));
  }
}

std::filesystem::path Scheduler::job_dir(const std::string& id) const { return options_.jobs_root / id; }

int Scheduler::busy_devices() const { return busy_count_.load(); }

SchedulerHealth Scheduler::health() const {
  std::lock_guard lock(error_mu_);
  return {unsettled_count_.load(), last_error_};
}

void Scheduler::publish() {
  unsettled_count_ = unsettled_.size();
  busy_count_ = options_.capacity.size() - static_cast<int>(free_.size());
  if (unsettled_.empty() && store_.health().writable) {
    std::lock_guard lock(error_mu_);
    last_error_.clear();
  }
}

void Scheduler::server_event(const std::string& id, nlohmann::json e) {
  e["source"] = "server";
  try {
    store_.add_event(id, e.value("type", "state"), e);
  } catch (const std::exception& ex) {
    spdlog::warn("job {}: cannot store event: {}", id, ex.what());
  }
  try {
    JobDir(job_dir(id)).append_event(e);
  } catch (const std::exception& ex) {
    spdlog::warn("job {}: cannot append event: {}", id, ex.what());
  }
}

void Scheduler::report_bad_status(const std::string& id, int attempt, const std::string& problem) {
  {
    std::lock_guard lock(bad_status_mu_);
    if (!bad_status_reported_.insert(id + "#" + std::to_string(attempt)).second) return;
  }
  spdlog::warn("job {}: status.json of attempt {} is invalid: {}", id, attempt, problem);
  server_event(id, {{"type", "warning"}, {"attempt", attempt},
                    {"message", "status.json is invalid and is ignored: " + problem}});
}

void Scheduler::note_store_failure(const std::exception& e) {
  {
    std::lock_guard lock(error_mu_);
    last_error_ = e.what();
  }
  uint64_t held = 0;
  if (store_log_.allow(&held))
    spdlog::error("scheduler: store failure: {}{}", e.what(),
                  held ? " (" + std::to_string(held) + " more since the last report)" : "");
}

void Scheduler::recover() {
  std::lock_guard lock(mu_);
  const double now = unix_now();
  for (const auto state : {JobState::running, JobState::cancelling}) {
    for (const auto& job : store_.in_state(state)) {
      const bool alive = job.pid && dispatcher_.alive(*job.pid, job.pid_start);
      if (!alive) {
        spdlog::info("recover: job {} was {} but its worker is gone", job.id, job_state_name(state));
        settle_without_process(job);
        continue;
      }
      Running r;
      r.job_id = job.id;
      r.pid = *job.pid;
      r.start_token = job.pid_start;
      r.adopted = true;
      r.since = now;
      for (const auto& d : split(job.devices, ','))
        if (!d.empty() && free_.erase(d)) r.devices.push_back(d);
      spdlog::info("recover: adopted running worker pid {} of job {}", r.pid, job.id);
      if (state == JobState::cancelling) send_term(r, KillReason::cancel);
      running_.emplace(r.pid, std::move(r));
    }
  }
  publish();
}

void Scheduler::settle_without_process(const JobRecord& job) {
  Running r;
  r.job_id = job.id;
  r.pid = job.pid.value_or(0);
  if (job.state == JobState::cancelling) r.kill = KillReason::cancel;
  for (const auto& d : split(job.devices, ','))
    if (!d.empty() && free_.erase(d)) r.devices.push_back(d);
  settle({r, std::nullopt, std::nullopt});
}

void Scheduler::send_term(Running& r, KillReason why) {
  r.kill = why;
  r.term_sent_at = unix_now();
  dispatcher_.signal(r.pid, SIGTERM);
}

std::optional<JobState> Scheduler::cancel(const std::string& id) {
  std::lock_guard lock(mu_);
  const auto job = store_.get(id);
  if (!job) return std::nullopt;
  const double now = unix_now();
  if (job->state == JobState::queued) {
    if (store_.cancel_queued(id, now)) {
      server_event(id, {{"type", "state"}, {"state", "CANCELLED"}, {"reason", "cancelled while queued"}});
      return JobState::cancelled;
    }
    return store_.get(id)->state;
  }
  if (job->state == JobState::running) {
    if (store_.cancel_running(id, now)) {
      server_event(id, {{"type", "state"}, {"state", "CANCELLING"}});
      for (auto& [pid, r] : running_)
        if (r.job_id == id) send_term(r, KillReason::cancel);
      return JobState::cancelling;
    }
    return store_.get(id)->state;
  }
  return job->state;  // CANCELLING or terminal: nothing more to do
}

void Scheduler::tick() {
  std::lock_guard lock(mu_);
  try {
    tick_locked();
  } catch (const std::exception& e) {
    // A read that failed (I/O error, locked database): nothing was changed;
    // the next tick starts over.
    note_store_failure(e);
  }
  publish();
}

void Scheduler::settle(Ended e) {
  try {
    finalize(e.r, e.exit_code, e.signal);
  } catch (const std::exception& ex) {
    note_store_failure(ex);
    e.next_try = unix_now() + e.backoff;
    e.backoff = std::min(5.0, e.backoff * 2);
    unsettled_.push_back(std::move(e));
    return;
  }
  for (const auto& d : e.r.devices) free_.insert(d);
}

void Scheduler::check_stall(Running& r, double now) {
  if (options_.stall_timeout_s <= 0 || r.kill != KillReason::none) return;
  const double last = std::max(r.since, mtime(JobDir(job_dir(r.job_id)).status()).value_or(0));
  if (now - last <= options_.stall_timeout_s) return;
  spdlog::warn("job {}: worker {} silent for {:.0f} s (stall timeout {} s); killing it", r.job_id, r.pid, now - last,
               options_.stall_timeout_s);
  r.kill = KillReason::stall;
  r.killed = true;
  r.term_sent_at = now;
  dispatcher_.signal(r.pid, SIGKILL);
}

void Scheduler::tick_locked() {
  const double now = unix_now();

  // Our children that ended.
  for (const auto& e : dispatcher_.reap()) {
    const auto it = running_.find(e.pid);
    if (it == running_.end()) continue;
    Running r = it->second;
    running_.erase(it);
    settle({std::move(r), e.exit_code, e.signal});
  }

  // Adopted workers are not our children: poll them.
  for (auto it = running_.begin(); it != running_.end();) {
    if (it->second.adopted && !dispatcher_.alive(it->second.pid, it->second.start_token)) {
      Running r = it->second;
      it = running_.erase(it);
      settle({std::move(r), std::nullopt, std::nullopt});
    } else {
      ++it;
    }
  }

  // Transitions the store refused before, when their backoff is up.
  if (!unsettled_.empty()) {
    std::vector<Ended> due;
    for (auto it = unsettled_.begin(); it != unsettled_.end();) {
      if (it->next_try <= now) {
        due.push_back(std::move(*it));
        it = unsettled_.erase(it);
      } else {
        ++it;
      }
    }
    for (auto& e : due) settle(std::move(e));
  }

  // Timeouts, grace periods and stalls.
  for (auto& [pid, r] : running_) {
    if (r.kill == KillReason::none) {
      const auto job = store_.get(r.job_id);
      if (job && job->timeout_s > 0 && job->started_at && now - *job->started_at > job->timeout_s) {
        spdlog::warn("job {} exceeded its timeout of {} s", r.job_id, job->timeout_s);
        send_term(r, KillReason::timeout);
      } else {
        check_stall(r, now);
      }
    } else if (!r.killed && r.term_sent_at && now - *r.term_sent_at > options_.cancel_grace_s) {
      spdlog::warn("job {}: worker {} still running {} s after SIGTERM, sending SIGKILL", r.job_id, pid,
                   options_.cancel_grace_s);
      dispatcher_.signal(pid, SIGKILL);
      r.killed = true;
    }
  }

  // No job starts while the store cannot write: its RUNNING row could not be
  // stored. A cheap probe write tells when it can again.
  if (!store_.health().writable) {
    if (now < next_probe_) return;
    if (!store_.probe_write().writable) {
      next_probe_ = now + probe_backoff_;
      probe_backoff_ = std::min(5.0, probe_backoff_ * 2);
      return;
    }
    spdlog::info("store takes writes again");
  }
  probe_backoff_ = 0.1;
  start_queued();
}

void Scheduler::start_queued() {
  if (free_.empty()) return;  // nothing can start: skip reading the queue
  const double now = unix_now();
  for (const auto& job : store_.in_state(JobState::queued)) {
    if (job.not_before && *job.not_before > now) continue;  // pausing after a full disk
    const int need = options_.capacity.gpu_mode() ? job.devices_requested : 1;
    if (need > options_.capacity.size()) {
      // Submission rejects these; a job stored under a larger capacity can
      // never run here.
      FinishInfo info{JobState::failed, ErrorType::validation,
                      "job needs " + std::to_string(need) + " devices, this server has " +
                          std::to_string(options_.capacity.size())};
      if (store_.finish(job.id, JobState::queued, info, unix_now()))
        server_event(job.id, {{"type", "state"}, {"state", "FAILED"}, {"reason", info.error}});
      continue;
    }
    if (static_cast<int>(free_.size()) < need) return;  // strict order: no overtaking

    std::vector<std::string> devices(free_.begin(), std::next(free_.begin(), need));
    const int attempt = job.attempts + 1;
    LaunchRequest req{job.id, job_dir(job.id), job_dir(job.id) / "spec.yaml",
                      options_.capacity.gpu_mode() ? join(devices) : "", attempt};
    LaunchedProcess p;
    try {
      p = dispatcher_.launch(req);
    } catch (const Error& e) {
      spdlog::error("job {}: {}", job.id, e.what());
      FinishInfo info{JobState::failed, ErrorType::internal, e.what()};
      // Mark it running first so the guarded finish applies to this attempt.
      if (store_.start(job.id, 0, "", "", unix_now()) &&
          store_.finish(job.id, JobState::running, info, unix_now()))
        server_event(job.id, {{"type", "state"}, {"state", "FAILED"}, {"reason", e.what()}});
      continue;
    }
    bool started = false;
    try {
      started = store_.start(job.id, p.pid, p.start_token, join(devices), unix_now());
    } catch (...) {
      // The RUNNING row could not be stored: the worker must not run
      // unrecorded. The job stays QUEUED and starts again later.
      dispatcher_.signal(p.pid, SIGKILL);
      throw;
    }
    if (!started) {
      // Cancelled between the read and now: stop the worker we just started.
      dispatcher_.signal(p.pid, SIGKILL);
      continue;
    }
    for (const auto& d : devices) free_.erase(d);
    Running r;
    r.job_id = job.id;
    r.pid = p.pid;
    r.start_token = p.start_token;
    r.devices = devices;
    r.since = unix_now();
    running_.emplace(p.pid, r);
    spdlog::info("job {} started: attempt {}, pid {}, devices {}", job.id, attempt, p.pid, join(devices));
    server_event(job.id, {{"type", "state"}, {"state", "RUNNING"}, {"attempt", attempt},
                          {"pid", p.pid}, {"devices", join(devices)}});
  }
}

void Scheduler::finalize(const Running& r, std::optional<int> exit_code, std::optional<int> signal) {
  const auto job = store_.get(r.job_id);
  if (!job || is_terminal(job->state)) return;
  const JobState from = job->state;
  const JobDir dir(job_dir(r.job_id));
  std::string problem;
  auto status = dir.read_worker_status(&problem);
  if (!problem.empty()) report_bad_status(r.job_id, job->attempts, problem);
  const bool status_current = status && status->attempt == job->attempts;
  const std::string wstate = status_current ? status->state : "";

  FinishInfo info;
  if (status_current) {
    info.stage = status->stage;
    info.metrics = status->metrics;
  }
  const double now = unix_now();
  std::string how = exit_code ? "exit code " + std::to_string(*exit_code)
                              : signal ? "signal " + std::to_string(*signal) : "process gone";
  // The server wrote spec.yaml before the job's row: without it the folder
  // was removed (or replaced) under the worker, and its outputs are not the
  // job's.
  std::error_code ec;
  const bool dir_intact = std::filesystem::is_regular_file(dir.spec_yaml(), ec);
  const bool worker_no_space = (wstate == "FAILED" && status->error_type == "NO_SPACE") ||
                               (exit_code && error_type_for_exit(*exit_code) == ErrorType::no_space);

  if (from == JobState::cancelling || r.kill == KillReason::cancel) {
    info.to = JobState::cancelled;
  } else if (r.kill == KillReason::timeout) {
    info.to = JobState::failed;
    info.error_type = ErrorType::timeout;
    info.error = "exceeded TIMEOUT_S of " + std::to_string(job->timeout_s) + " s";
  } else if (!dir_intact) {
    info.to = JobState::failed;
    info.error_type = ErrorType::data;
    info.error = "the job directory " + dir.root().string() + " was removed while the job ran (" + how + ")";
  } else if (worker_no_space && job->attempts < job->max_attempts) {
    const double pause = options_.no_space_retry_s * job->attempts;
    const std::string why = "no space left on device during attempt " + std::to_string(job->attempts) +
                            "; retrying in " + std::to_string(static_cast<int>(pause)) + " s" +
                            (status_current && !status->error.empty() ? ": " + status->error : "");
    if (store_.requeue(r.job_id, from, why, now, now + pause)) {
      spdlog::warn("job {}: {}", r.job_id, why);
      server_event(r.job_id, {{"type", "state"}, {"state", "QUEUED"}, {"reason", why}});
    }
    return;
  } else if (wstate == "SUCCEEDED" && (!exit_code || *exit_code == 0)) {
    info.to = JobState::succeeded;
  } else if (wstate == "FAILED") {
    info.to = JobState::failed;
    info.error_type = parse_error_type(status->error_type).value_or(ErrorType::internal);
    if (info.error_type == ErrorType::none) info.error_type = ErrorType::internal;
    info.error = status->error.empty() ? "worker failed (" + how + ")" : status->error;
  } else if (exit_code && error_type_for_exit(*exit_code)) {
    info.to = JobState::failed;
    info.error_type = *error_type_for_exit(*exit_code);
    info.error = "worker failed with " + how + " (see logs/worker.log)";
  } else {
    // No verdict: the worker was lost.
    const std::string why =
        r.kill == KillReason::stall
            ? "worker stalled: status.json unchanged for more than " +
                  std::to_string(static_cast<int>(options_.stall_timeout_s)) + " s (--stall-timeout) during attempt " +
                  std::to_string(job->attempts)
            : "worker lost (" + how + ") during attempt " + std::to_string(job->attempts);
    if (job->attempts < job->max_attempts) {
      if (store_.requeue(r.job_id, from, why, now)) {
        spdlog::warn("job {}: {}; requeued", r.job_id, why);
        server_event(r.job_id, {{"type", "state"}, {"state", "QUEUED"}, {"reason", why}});
      }
      return;
    }
    info.to = JobState::failed;
    info.error_type = ErrorType::worker_lost;
    info.error = why + "; no attempts left (" + std::to_string(job->max_attempts) + ")";
  }
  if (store_.finish(r.job_id, from, info, now)) {
    spdlog::info("job {} {} ({})", r.job_id, job_state_name(info.to), how);
    nlohmann::json e = {{"type", "state"}, {"state", job_state_name(info.to)}};
    if (!info.error.empty()) e["reason"] = info.error;
    server_event(r.job_id, e);
  }
}

}  // namespace qjobs::server

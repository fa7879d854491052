#include "server/scheduler.hpp"

#include <signal.h>

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

int Scheduler::busy_devices() const { return options_.capacity.size() - static_cast<int>(free_.size()); }

void Scheduler::server_event(const std::string& id, nlohmann::json e) {
  e["source"] = "server";
  try {
    store_.add_event(id, e.value("type", "state"), e);
    JobDir(job_dir(id)).append_event(e);
  } catch (const std::exception& ex) {
    spdlog::warn("job {}: cannot record event: {}", id, ex.what());
  }
}

void Scheduler::recover() {
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
      for (const auto& d : split(job.devices, ','))
        if (!d.empty() && free_.erase(d)) r.devices.push_back(d);
      spdlog::info("recover: adopted running worker pid {} of job {}", r.pid, job.id);
      if (state == JobState::cancelling) send_term(r, KillReason::cancel);
      running_.emplace(r.pid, std::move(r));
    }
  }
}

void Scheduler::settle_without_process(const JobRecord& job) {
  Running r;
  r.job_id = job.id;
  r.pid = job.pid.value_or(0);
  if (job.state == JobState::cancelling) r.kill = KillReason::cancel;
  finalize(r, std::nullopt, std::nullopt);
}

void Scheduler::send_term(Running& r, KillReason why) {
  r.kill = why;
  r.term_sent_at = unix_now();
  dispatcher_.signal(r.pid, SIGTERM);
}

std::optional<JobState> Scheduler::cancel(const std::string& id) {
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
  const double now = unix_now();

  // Our children that ended.
  for (const auto& e : dispatcher_.reap()) {
    const auto it = running_.find(e.pid);
    if (it == running_.end()) continue;
    const Running r = it->second;
    running_.erase(it);
    finalize(r, e.exit_code, e.signal);
  }

  // Adopted workers are not our children: poll them.
  for (auto it = running_.begin(); it != running_.end();) {
    if (it->second.adopted && !dispatcher_.alive(it->second.pid, it->second.start_token)) {
      const Running r = it->second;
      it = running_.erase(it);
      finalize(r, std::nullopt, std::nullopt);
    } else {
      ++it;
    }
  }

  // Timeouts and grace periods.
  for (auto& [pid, r] : running_) {
    if (r.kill == KillReason::none) {
      const auto job = store_.get(r.job_id);
      if (job && job->timeout_s > 0 && job->started_at && now - *job->started_at > job->timeout_s) {
        spdlog::warn("job {} exceeded its timeout of {} s", r.job_id, job->timeout_s);
        send_term(r, KillReason::timeout);
      }
    } else if (!r.killed && r.term_sent_at && now - *r.term_sent_at > options_.cancel_grace_s) {
      spdlog::warn("job {}: worker {} still running {} s after SIGTERM, sending SIGKILL", r.job_id, pid,
                   options_.cancel_grace_s);
      dispatcher_.signal(pid, SIGKILL);
      r.killed = true;
    }
  }

  start_queued();
}

void Scheduler::start_queued() {
  if (free_.empty()) return;  // nothing can start: skip reading the queue
  for (const auto& job : store_.in_state(JobState::queued)) {
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
    if (!store_.start(job.id, p.pid, p.start_token, join(devices), unix_now())) {
      // Cancelled between the read and now: stop the worker we just started.
      dispatcher_.signal(p.pid, SIGKILL);
      continue;
    }
    for (const auto& d : devices) free_.erase(d);
    Running r{job.id, p.pid, p.start_token, devices};
    running_.emplace(p.pid, r);
    spdlog::info("job {} started: attempt {}, pid {}, devices {}", job.id, attempt, p.pid, join(devices));
    server_event(job.id, {{"type", "state"}, {"state", "RUNNING"}, {"attempt", attempt},
                          {"pid", p.pid}, {"devices", join(devices)}});
  }
}

void Scheduler::finalize(const Running& r, std::optional<int> exit_code, std::optional<int> signal) {
  for (const auto& d : r.devices) free_.insert(d);
  const auto job = store_.get(r.job_id);
  if (!job || is_terminal(job->state)) return;
  const JobState from = job->state;
  const auto status = JobDir(job_dir(r.job_id)).read_status();
  const bool status_current = status && status->value("attempt", 0) == job->attempts;
  const std::string wstate = status_current ? status->value("state", "") : "";

  FinishInfo info;
  if (status_current) {
    info.stage = status->value("stage", "");
    info.metrics = status->value("metrics", nlohmann::json::object());
  }
  const double now = unix_now();
  std::string how = exit_code ? "exit code " + std::to_string(*exit_code)
                              : signal ? "signal " + std::to_string(*signal) : "process gone";

  if (from == JobState::cancelling || r.kill == KillReason::cancel) {
    info.to = JobState::cancelled;
  } else if (r.kill == KillReason::timeout) {
    info.to = JobState::failed;
    info.error_type = ErrorType::timeout;
    info.error = "exceeded TIMEOUT_S of " + std::to_string(job->timeout_s) + " s";
  } else if (wstate == "SUCCEEDED" && (!exit_code || *exit_code == 0)) {
    info.to = JobState::succeeded;
  } else if (wstate == "FAILED") {
    info.to = JobState::failed;
    info.error_type = parse_error_type(status->value("error_type", "INTERNAL")).value_or(ErrorType::internal);
    info.error = status->value("error", "worker failed (" + how + ")");
  } else if (exit_code && error_type_for_exit(*exit_code)) {
    info.to = JobState::failed;
    info.error_type = *error_type_for_exit(*exit_code);
    info.error = "worker failed with " + how + " (see logs/worker.log)";
  } else {
    // No verdict: the worker was lost.
    const std::string why = "worker lost (" + how + ") during attempt " + std::to_string(job->attempts);
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

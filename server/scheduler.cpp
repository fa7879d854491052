#include "server/scheduler.hpp"

#include "server/job_folder.hpp"

#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <fstream>

#include <spdlog/spdlog.h>

#include "common/error.hpp"
#include "common/job_dir.hpp"
#include "common/strings.hpp"

namespace qjobs::server {
namespace {

// The last `max_lines` lines of the job's worker log, reading at most its
// last 64 KiB, through open_job_file (a planted link or FIFO gives "").
std::string log_tail(const JobDir& dir, std::size_t max_lines) {
  const int fd = open_job_file(dir.root(), "logs/worker.log");
  if (fd < 0) return "";
  const off_t size = ::lseek(fd, 0, SEEK_END);
  const off_t start = std::max<off_t>(0, size - (64 << 10));
  std::string text(static_cast<std::size_t>(std::max<off_t>(0, size - start)), '\0');
  const ssize_t n = size < 0 ? -1 : ::pread(fd, text.data(), text.size(), start);
  ::close(fd);
  text.resize(n > 0 ? static_cast<std::size_t>(n) : 0);
  if (start > 0)
    if (const auto nl = text.find('\n'); nl != std::string::npos) text.erase(0, nl + 1);
  std::size_t pos = text.size(), lines = 0;
  while (pos > 0 && lines <= max_lines) {
    pos = text.rfind('\n', pos - 1);
    if (pos == std::string::npos) {
      pos = 0;
      break;
    }
    ++lines;
  }
  return text.substr(pos == 0 ? 0 : pos + 1);
}

// A failed or cancelled job's report (report.md and report.json) when the
// worker left none: what ended it, in which stage, after how many attempts,
// and the end of the log, so such a job is read like any other.
void write_end_report(const JobDir& dir, const JobRecord& job, const FinishInfo& info) {
  std::error_code ec;
  if (std::filesystem::exists(dir.report_md(), ec)) return;
  const bool failed = info.to == JobState::failed;
  const std::string state(job_state_name(info.to));
  const std::string stage = info.stage.empty() ? job.stage : info.stage;
  const std::string type(error_type_name(info.error_type));
  std::string md = "# qjobs report: " + job.algorithm + " on " + job.model + " " + state + "\n\n";
  md += "| | |\n|---|---|\n";
  md += "| job | " + job.id + (job.name.empty() ? "" : " (" + job.name + ")") + " |\n";
  md += "| state | " + state + " |\n";
  if (failed) md += "| error type | " + type + " |\n";
  md += "| stage | " + (stage.empty() ? std::string("before the worker reported one") : stage) + " |\n";
  md += "| attempts | " + std::to_string(job.attempts) + " of " + std::to_string(job.max_attempts) + " |\n\n";
  const std::string why = info.error.empty() ? std::string("cancelled on request") : info.error;
  md += failed ? "## Error\n\n```\n" + info.error + "\n```\n\n" : "## Cancelled\n\n" + why + "\n\n";
  const std::string tail = log_tail(dir, 40);
  if (!tail.empty()) md += "## End of logs/worker.log\n\n```\n" + tail + (tail.back() == '\n' ? "" : "\n") + "```\n";
  nlohmann::json report = {{"state", state}, {"algorithm", job.algorithm}, {"model", {{"source", job.model}}},
                           {"stage", stage}, {"attempts", job.attempts},   {"max_attempts", job.max_attempts}};
  if (failed) report["error_type"] = type, report["error"] = info.error;
  else report["reason"] = why;
  try {
    write_file_atomic(dir.report_json(), report.dump(2));
    write_file_atomic(dir.report_md(), md);
  } catch (const Error& e) {
    spdlog::warn("job {}: cannot write its {} report: {}", job.id, state, e.what());
  }
}

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

Scheduler::Scheduler(Store& store, Dispatcher& launcher, SchedulerOptions options,
                     const std::vector<Dispatcher*>& others)
    : store_(store), launcher_(launcher), options_(std::move(options)) {
  backends_.push_back(&launcher_);
  for (auto* d : others)
    if (d && d != &launcher_) backends_.push_back(d);
  if (options_.capacity.gpu_mode()) {
    for (const auto& g : options_.capacity.gpus) free_.insert(g);
  } else {
    for (int i = 0; i < options_.capacity.slots; ++i) free_.insert("slot" + std::to_string(i));
  }
}

double Scheduler::now() const { return options_.clock ? options_.clock() : unix_now(); }

Dispatcher* Scheduler::backend_of(const std::string& handle) const {
  const std::string b = handle_backend(handle);
  for (auto* d : backends_)
    if (d->backend() == b) return d;
  return nullptr;
}

std::string Scheduler::dispatcher_metrics() const { return launcher_.metrics(); }

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

bool Scheduler::transition(const std::string& id, nlohmann::json e, const std::function<bool()>& commit) {
  if (!store_.health().writable) {
    // Retried against a failing store (settle runs again with backoff): the
    // event is written once, when the row changes, not once per try.
    if (!commit()) return false;
    server_event(id, std::move(e));
    return true;
  }
  e["source"] = "server";
  if (!e.contains("ts")) e["ts"] = unix_now();
  const JobDir dir = folder(id);
  bool appended = false;
  try {
    dir.append_event(e);
    appended = true;
  } catch (const std::exception& ex) {
    spdlog::warn("job {}: cannot append event: {}", id, ex.what());
  }
  const auto retract = [&](const std::string& why) {
    if (!appended) return;
    try {
      dir.append_event(
          {{"type", "retracted"},
           {"state", e.value("state", "")},
           {"source", "server"},
           {"message", "the change to " + e.value("state", std::string("?")) + " above was not stored: " + why}});
    } catch (const std::exception&) {
    }
  };
  bool applied = false;
  try {
    applied = commit();
  } catch (const std::exception& ex) {
    retract(ex.what());
    throw;
  }
  if (!applied) {
    retract("the job changed state first");
    return false;
  }
  try {
    store_.add_event(id, e.value("type", "state"), e);
  } catch (const std::exception& ex) {
    spdlog::warn("job {}: cannot store event: {}", id, ex.what());
  }
  return true;
}

void Scheduler::server_event(const std::string& id, nlohmann::json e) {
  e["source"] = "server";
  try {
    store_.add_event(id, e.value("type", "state"), e);
  } catch (const std::exception& ex) {
    spdlog::warn("job {}: cannot store event: {}", id, ex.what());
  }
  try {
    folder(id).append_event(e);
  } catch (const std::exception& ex) {
    spdlog::warn("job {}: cannot append event: {}", id, ex.what());
  }
}

JobDir Scheduler::folder(const std::string& id) {
  try {
    if (const auto job = store_.get(id)) return ensure_job_folder(store_, options_.jobs_root, *job);
  } catch (const std::exception& e) {
    spdlog::warn("job {}: cannot make its folder: {}", id, e.what());
  }
  return JobDir(job_dir(id));
}

void Scheduler::report_bad_status(const std::string& id, int attempt, const std::string& problem) {
  {
    std::lock_guard lock(bad_status_mu_);
    if (!bad_status_reported_.insert(id + "#" + std::to_string(attempt)).second) return;
  }
  spdlog::warn("job {}: status.json of attempt {} is invalid: {}", id, attempt, problem);
  server_event(
      id,
      {{"type", "warning"}, {"attempt", attempt}, {"message", "status.json is invalid and is ignored: " + problem}});
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

template <class F>
auto Scheduler::call_backend(F&& f) {
  mu_.unlock();
  struct Relock {
    std::mutex& m;
    ~Relock() { m.lock(); }
  } relock{mu_};
  std::lock_guard dispatch(dispatch_mu_);
  flush_signals();  // a cancel queued meanwhile goes before this call
  return f();
}

void Scheduler::queue_signal(Dispatcher* d, const std::string& handle, int sig) {
  std::lock_guard lock(signals_mu_);
  pending_signals_.emplace_back(d, handle, sig);
}

void Scheduler::flush_signals() {
  std::vector<std::tuple<Dispatcher*, std::string, int>> todo;
  {
    std::lock_guard lock(signals_mu_);
    todo.swap(pending_signals_);
  }
  for (const auto& [d, handle, sig] : todo) {
    try {
      d->signal(handle, sig);
    } catch (const std::exception& e) {
      spdlog::warn("signal {} to {}: {}", sig, handle, e.what());
    }
  }
}

void Scheduler::recover() {
  std::lock_guard lock(mu_);
  const double t = now();
  // Attempts the launching backend has that the store never recorded: the
  // server was killed between sbatch and storing its answer.
  if (launcher_.queues()) {
    const auto found = call_backend([&] { return launcher_.unrecorded(); });
    for (const auto& job : store_.in_state(JobState::queued)) {
      if (!job.handle.empty()) continue;
      for (const auto& u : found) {
        if (u.job_id != job.id || u.attempt != job.attempts + 1) continue;
        if (store_.dispatch(job.id, u.handle, "pending in " + launcher_.backend(), t)) {
          spdlog::info("recover: job {} attempt {} was submitted as {} but not recorded; adopting it", job.id,
                       u.attempt, u.handle);
          server_event(job.id, {{"type", "state"},
                                {"state", "QUEUED"},
                                {"handle", u.handle},
                                {"reason", "adopted " + u.handle + ", submitted before the server stopped"}});
        }
        break;
      }
    }
  }
  for (const auto state : {JobState::running, JobState::cancelling, JobState::queued}) {
    for (const auto& job : store_.in_state(state)) {
      if (job.handle.empty()) {
        if (state != JobState::queued) {
          spdlog::info("recover: job {} was {} with no attempt recorded", job.id, job_state_name(state));
          settle_without_process(job);
        }
        continue;
      }
      Dispatcher* d = backend_of(job.handle);
      if (!d) {
        spdlog::warn("recover: job {}: no backend for {} (started under another --dispatcher?)", job.id, job.handle);
        settle_without_process(job);
        continue;
      }
      call_backend([&] { d->watch(job.handle); });
      Running r;
      r.job_id = job.id;
      r.handle = job.handle;
      r.backend = d;
      r.pending = state == JobState::queued;
      r.since = t;
      for (const auto& dev : split(job.devices, ','))
        if (!dev.empty() && free_.erase(dev)) r.devices.push_back(dev);
      if (r.devices.empty() && !options_.capacity.gpu_mode() && !free_.empty()) {
        // A CPU slot (or a Slurm in-flight slot): any one.
        r.devices.push_back(*free_.begin());
        free_.erase(free_.begin());
      }
      spdlog::info("recover: watching {} of job {}", r.handle, job.id);
      if (state == JobState::cancelling) send_term(r, KillReason::cancel);
      running_.emplace(r.handle, std::move(r));
    }
  }
  // Settle the attempts that ended while no server watched, now.
  poll_backends();
  publish();
}

void Scheduler::settle_without_process(const JobRecord& job) {
  Running r;
  r.job_id = job.id;
  r.handle = job.handle;
  if (job.state == JobState::cancelling) r.kill = KillReason::cancel;
  for (const auto& d : split(job.devices, ','))
    if (!d.empty() && free_.erase(d)) r.devices.push_back(d);
  settle({r, AttemptUpdate{}});
}

void Scheduler::send_term(Running& r, KillReason why) {
  r.kill = why;
  r.term_sent_at = now();
  if (r.backend) queue_signal(r.backend, r.handle, SIGTERM);
}

std::optional<JobState> Scheduler::cancel(const std::string& id) {
  const auto state = cancel_locked(id);
  // The SIGTERM (scancel) now if no backend call is in progress; else the
  // call in progress sends it when it ends (flush_signals).
  if (std::unique_lock dispatch(dispatch_mu_, std::try_to_lock); dispatch.owns_lock()) flush_signals();
  return state;
}

std::optional<JobState> Scheduler::cancel_locked(const std::string& id) {
  std::lock_guard lock(mu_);
  const auto job = store_.get(id);
  if (!job) return std::nullopt;
  const double now = this->now();
  if (job->state == JobState::queued && job->handle.empty()) {
    if (transition(id, {{"type", "state"}, {"state", "CANCELLED"}, {"reason", "cancelled while queued"}},
                   [&] { return store_.cancel_queued(id, now); })) {
      write_end_report(folder(id), *job, FinishInfo{JobState::cancelled, ErrorType::none, "cancelled while queued"});
      return JobState::cancelled;
    }
    return store_.get(id)->state;
  }
  if (job->state == JobState::running || job->state == JobState::queued) {
    if (transition(id, {{"type", "state"}, {"state", "CANCELLING"}}, [&] { return store_.cancel_running(id, now); })) {
      for (auto& [h, r] : running_)
        if (r.job_id == id) send_term(r, KillReason::cancel);
      return JobState::cancelling;
    }
    return store_.get(id)->state;
  }
  return job->state;  // CANCELLING or terminal: nothing more to do
}

void Scheduler::tick() {
  std::lock_guard pass(tick_mu_);
  tick_pass();
}

bool Scheduler::try_tick() {
  std::unique_lock pass(tick_mu_, std::try_to_lock);
  if (!pass.owns_lock()) return false;
  tick_pass();
  return true;
}

void Scheduler::tick_pass() {
  {
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
  std::lock_guard dispatch(dispatch_mu_);
  flush_signals();
}

void Scheduler::settle(Ended e) {
  try {
    finalize(e.r, e.how);
  } catch (const std::exception& ex) {
    note_store_failure(ex);
    e.next_try = now() + e.backoff;
    e.backoff = std::min(5.0, e.backoff * 2);
    unsettled_.push_back(std::move(e));
    return;
  }
  for (const auto& d : e.r.devices) free_.insert(d);
}

void Scheduler::check_stall(Running& r, double now) {
  if (options_.stall_timeout_s <= 0 || r.kill != KillReason::none || r.pending) return;
  const double last = std::max(r.since, mtime(JobDir(job_dir(r.job_id)).status()).value_or(0));
  if (now - last <= options_.stall_timeout_s) return;
  spdlog::warn("job {}: worker {} silent for {:.0f} s (stall timeout {} s); killing it", r.job_id, r.handle, now - last,
               options_.stall_timeout_s);
  r.kill = KillReason::stall;
  r.killed = true;
  r.term_sent_at = now;
  if (r.backend) queue_signal(r.backend, r.handle, SIGKILL);
}

void Scheduler::apply(Running& r, const AttemptUpdate& u) {
  if (u.phase == AttemptUpdate::Phase::pending) {
    if (!r.pending || u.stage.empty()) return;
    const auto job = store_.get(r.job_id);
    if (job && job->stage != u.stage) store_.set_stage(r.job_id, u.stage, job->metrics);
    return;
  }
  if (u.phase == AttemptUpdate::Phase::running) r.started = true;
}

void Scheduler::poll_backends() {
  for (auto* d : backends_) {
    for (const auto& u : call_backend([&] { return d->poll(); })) {
      const auto it = running_.find(u.handle);
      if (it == running_.end()) continue;
      if (u.phase != AttemptUpdate::Phase::ended) {
        apply(it->second, u);
        continue;
      }
      Running r = it->second;
      running_.erase(it);
      settle({std::move(r), u});
    }
  }
}

void Scheduler::tick_locked() {
  const double now = this->now();

  // What the backends saw: attempts that started, wait, or ended.
  poll_backends();

  // Dispatched attempts the backend started: RUNNING from now (kept and
  // retried when the store refuses).
  for (auto& [h, r] : running_) {
    if (!r.pending || !r.started) continue;
    if (store_.mark_running(r.job_id, r.handle, now)) {
      spdlog::info("job {} started in {} ({})", r.job_id, r.backend ? r.backend->backend() : "?", r.handle);
      server_event(r.job_id, {{"type", "state"}, {"state", "RUNNING"}, {"handle", r.handle}});
    }
    // Cancelled meanwhile (CANCELLING), or RUNNING now: either way not pending.
    r.pending = false;
    r.since = now;
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
  for (auto& [h, r] : running_) {
    if (r.kill == KillReason::none) {
      if (r.pending) continue;
      const auto job = store_.get(r.job_id);
      if (job && job->timeout_s > 0 && job->started_at && now - *job->started_at > job->timeout_s) {
        spdlog::warn("job {} exceeded its timeout of {} s", r.job_id, job->timeout_s);
        send_term(r, KillReason::timeout);
      } else {
        check_stall(r, now);
      }
    } else if (!r.killed && r.term_sent_at && now - *r.term_sent_at > options_.cancel_grace_s) {
      spdlog::warn("job {}: worker {} still running {} s after SIGTERM, sending SIGKILL", r.job_id, h,
                   options_.cancel_grace_s);
      if (r.backend) queue_signal(r.backend, h, SIGKILL);
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
  const double now = this->now();
  if (now < next_launch_) return;  // the backend refused for a while: wait
  for (const auto& job : store_.in_state(JobState::queued)) {
    if (!job.handle.empty()) continue;                      // in the backend's queue already
    if (job.not_before && *job.not_before > now) continue;  // pausing after a full disk
    const int need = options_.capacity.gpu_mode() ? job.devices_requested : 1;
    if (need > options_.capacity.size()) {
      // Submission rejects these; a job stored under a larger capacity can
      // never run here.
      FinishInfo info{JobState::failed, ErrorType::validation,
                      "job needs " + std::to_string(need) + " devices, this server has " +
                          std::to_string(options_.capacity.size())};
      write_end_report(folder(job.id), job, info);
      transition(job.id, {{"type", "state"}, {"state", "FAILED"}, {"reason", info.error}},
                 [&] { return store_.finish(job.id, JobState::queued, info, this->now()); });
      continue;
    }
    if (static_cast<int>(free_.size()) < need) return;  // strict order: no overtaking

    try {
      ensure_job_folder(store_, options_.jobs_root, job);  // made now if the job has none yet
    } catch (const std::exception& e) {
      // Its folder cannot be written (a full disk): it stays QUEUED and is
      // tried again at the next pass.
      uint64_t held = 0;
      if (store_log_.allow(&held)) spdlog::warn("job {}: cannot make its folder; not started: {}", job.id, e.what());
      return;
    }
    std::vector<std::string> devices(free_.begin(), std::next(free_.begin(), need));
    const int attempt = job.attempts + 1;
    LaunchRequest req;
    req.job_id = job.id;
    req.job_dir = job_dir(job.id);
    req.spec_path = job_dir(job.id) / "spec.yaml";
    req.cuda_visible_devices = options_.capacity.gpu_mode() ? join(devices) : "";
    req.devices_requested = job.devices_requested;
    req.attempt = attempt;
    req.timeout_s = job.timeout_s;
    req.priority = job.priority;
    std::string handle;
    try {
      handle = call_backend([&] { return launcher_.launch(req); });
    } catch (const Error& e) {
      if (call_backend([&] { return launcher_.transient(); })) {
        // The backend is away (controller down): the job stays QUEUED, is
        // told once, and every submission waits with backoff.
        next_launch_ = now + launch_backoff_;
        spdlog::warn("job {}: cannot submit yet ({}); retrying in {:.0f} s", job.id, e.what(), launch_backoff_);
        launch_backoff_ = std::min(30.0, launch_backoff_ * 2);
        const auto now_job = store_.get(job.id);  // a cancel may have come while sbatch ran
        if (now_job && now_job->state == JobState::queued && launch_failure_told_.insert(job.id).second)
          server_event(job.id, {{"type", "warning"},
                                {"state", "QUEUED"},
                                {"message", std::string("cannot submit to ") + launcher_.backend() + " yet: " +
                                                e.what() + "; the job stays QUEUED and is submitted when it answers"}});
        return;
      }
      spdlog::error("job {}: {}", job.id, e.what());
      FinishInfo info{JobState::failed, ErrorType::internal, e.what()};
      info.stage = "start (" + launcher_.backend() + ")";
      write_end_report(folder(job.id), job, info);
      // Mark it running first so the guarded finish applies to this attempt.
      if (store_.start(job.id, "", "", this->now()) && store_.finish(job.id, JobState::running, info, this->now()))
        server_event(job.id, {{"type", "state"}, {"state", "FAILED"}, {"reason", e.what()}});
      continue;
    }
    launch_backoff_ = 1;
    if (launch_failure_told_.erase(job.id))
      server_event(job.id, {{"type", "info"}, {"message", "submitted to " + launcher_.backend() + " as " + handle}});
    const bool queues = launcher_.queues();
    bool recorded = false;
    try {
      recorded = queues ? store_.dispatch(job.id, handle, "pending in " + launcher_.backend(), this->now())
                        : store_.start(job.id, handle, join(devices), this->now());
    } catch (...) {
      // The row could not be stored: the worker must not run unrecorded.
      // The job stays QUEUED and starts again later.
      call_backend([&] {
        launcher_.signal(handle, SIGKILL);
        launcher_.poll();
      });
      throw;
    }
    Running r;
    r.job_id = job.id;
    r.handle = handle;
    r.backend = &launcher_;
    r.devices = devices;
    r.pending = queues;
    r.since = this->now();
    if (!recorded) {
      // Cancelled between the read and now: stop the worker we just started;
      // its end is reaped and ignored.
      queue_signal(&launcher_, handle, SIGKILL);
      continue;
    }
    for (const auto& d : devices) free_.erase(d);
    running_.emplace(handle, r);
    spdlog::info("job {} {}: attempt {}, {}, devices {}", job.id, queues ? "submitted" : "started", attempt, handle,
                 join(devices));
    nlohmann::json e = {{"type", "state"},
                        {"state", queues ? "QUEUED" : "RUNNING"},
                        {"attempt", attempt},
                        {"handle", handle},
                        {"devices", join(devices)}};
    int pid = 0;
    std::string token;
    if (parse_local_handle(handle, &pid, &token)) e["pid"] = pid;
    if (queues) e["reason"] = "submitted to " + launcher_.backend() + " (" + handle + ")";
    server_event(job.id, e);
  }
}

void Scheduler::finalize(const Running& r, const AttemptUpdate& ended) {
  const std::optional<int>& exit_code = ended.exit_code;
  const std::optional<int>& signal = ended.signal;
  const auto job = store_.get(r.job_id);
  if (!job || is_terminal(job->state)) return;
  const JobState from = job->state;
  const JobDir dir(job_dir(r.job_id));
  std::string problem;
  auto status = dir.read_worker_status(&problem);
  if (!problem.empty()) report_bad_status(r.job_id, job->attempts, problem);
  const bool status_current = status && status->attempt == job->attempts;
  // The backend lost the attempt (node failure, out of memory): whatever
  // status.json says, there is no verdict.
  const bool lost = ended.end == AttemptUpdate::End::lost;
  const std::string wstate = status_current && !lost ? status->state : "";

  FinishInfo info;
  if (status_current) {
    info.stage = status->stage;
    info.metrics = status->metrics;
  }
  const double now = this->now();
  std::string how = exit_code ? "exit code " + std::to_string(*exit_code)
                    : signal  ? "signal " + std::to_string(*signal)
                              : "process gone";
  if (!ended.detail.empty()) how = ended.detail + ", " + how;
  // The server wrote spec.yaml before the job's row: without it the folder
  // was removed (or replaced) under the worker, and its outputs are not the
  // job's.
  std::error_code ec;
  const bool dir_intact = std::filesystem::is_regular_file(dir.spec_yaml(), ec);
  const bool worker_no_space = (wstate == "FAILED" && status->error_type == "NO_SPACE") ||
                               (exit_code && error_type_for_exit(*exit_code) == ErrorType::no_space);

  if (from == JobState::cancelling || r.kill == KillReason::cancel) {
    info.to = JobState::cancelled;
  } else if (ended.end == AttemptUpdate::End::cancelled) {
    // Someone else cancelled it in the backend (scancel): say who.
    info.to = JobState::cancelled;
    info.error = ended.detail;
  } else if (r.kill == KillReason::timeout || ended.end == AttemptUpdate::End::timeout) {
    info.to = JobState::failed;
    info.error_type = ErrorType::timeout;
    info.error = "exceeded TIMEOUT_S of " + std::to_string(job->timeout_s) + " s" +
                 (ended.end == AttemptUpdate::End::timeout ? " (" + ended.detail + ")" : "");
  } else if (!dir_intact) {
    info.to = JobState::failed;
    info.error_type = ErrorType::data;
    info.error = "the job directory " + dir.root().string() + " was removed while the job ran (" + how + ")";
  } else if (worker_no_space && job->attempts < job->max_attempts) {
    const double pause = options_.no_space_retry_s * job->attempts;
    const std::string why = "no space left on device during attempt " + std::to_string(job->attempts) +
                            "; retrying in " + std::to_string(static_cast<int>(pause)) + " s" +
                            (status_current && !status->error.empty() ? ": " + status->error : "");
    if (transition(r.job_id, {{"type", "state"}, {"state", "QUEUED"}, {"reason", why}},
                   [&] { return store_.requeue(r.job_id, from, why, now, now + pause); }))
      spdlog::warn("job {}: {}", r.job_id, why);
    return;
  } else if (wstate == "SUCCEEDED" && (!exit_code || *exit_code == 0)) {
    info.to = JobState::succeeded;
  } else if (wstate == "FAILED") {
    info.to = JobState::failed;
    info.error_type = parse_error_type(status->error_type).value_or(ErrorType::internal);
    if (info.error_type == ErrorType::none) info.error_type = ErrorType::internal;
    info.error = status->error.empty() ? "worker failed (" + how + ")" : status->error;
  } else if (!lost && exit_code && error_type_for_exit(*exit_code)) {
    info.to = JobState::failed;
    info.error_type = *error_type_for_exit(*exit_code);
    info.error = "worker failed with " + how + " (see logs/worker.log)";
  } else {
    // No verdict: the worker was lost.
    const std::string why = r.kill == KillReason::stall
                                ? "worker stalled: status.json unchanged for more than " +
                                      std::to_string(static_cast<int>(options_.stall_timeout_s)) +
                                      " s (--stall-timeout) during attempt " + std::to_string(job->attempts)
                                : "worker lost (" + how + ") during attempt " + std::to_string(job->attempts);
    if (job->attempts < job->max_attempts) {
      if (transition(r.job_id, {{"type", "state"}, {"state", "QUEUED"}, {"reason", why}},
                     [&] { return store_.requeue(r.job_id, from, why, now); }))
        spdlog::warn("job {}: {}; requeued", r.job_id, why);
      return;
    }
    info.to = JobState::failed;
    info.error_type = ErrorType::worker_lost;
    info.error = why + "; no attempts left (" + std::to_string(job->max_attempts) + ")";
  }
  if ((info.to == JobState::failed || info.to == JobState::cancelled) && dir_intact) write_end_report(dir, *job, info);
  nlohmann::json e = {{"type", "state"}, {"state", job_state_name(info.to)}};
  if (!info.error.empty()) e["reason"] = info.error;
  if (transition(r.job_id, e, [&] { return store_.finish(r.job_id, from, info, now); }))
    spdlog::info("job {} {} ({})", r.job_id, job_state_name(info.to), how);
}

}  // namespace qjobs::server

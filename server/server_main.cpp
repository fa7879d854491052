// qjobs-server: the HTTP API, the SQLite store and the scheduler in one
// process.
//   qjobs-server --listen HOST:PORT --user-data DIR (--gpus LIST | --slots N)
//                [--tokens-file F] [--worker PATH] [--cancel-grace S]
//                [--max-connections N] [--stall-timeout S]
//
// Threads: one I/O thread (sockets only), one control thread (scheduler
// ticks, child exits), and a small pool for request handlers and file reads.
#include <fcntl.h>
#include <stdlib.h>
#include <sys/file.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <csignal>
#include <cstring>
#include <set>
#include <memory>
#include <thread>
#include <filesystem>
#include <fstream>
#include <iostream>

#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <CLI/CLI.hpp>
#include <spdlog/spdlog.h>

#include "common/environment.hpp"
#include "common/error.hpp"
#include "common/job_dir.hpp"
#include "common/logging.hpp"
#include "common/strings.hpp"
#include "server/api.hpp"
#include "server/device_rates.hpp"
#include "server/dispatcher.hpp"
#include "server/slurm_dispatcher.hpp"
#include "server/http_server.hpp"
#include "server/job_folder.hpp"
#include "server/scheduler.hpp"
#include "server/store.hpp"
#include "server/store_faults.hpp"

namespace fs = std::filesystem;
namespace asio = boost::asio;
using namespace qjobs;
using namespace qjobs::server;

namespace {

fs::path self_dir() {
  std::error_code ec;
  const auto exe = fs::read_symlink("/proc/self/exe", ec);
  return ec ? fs::current_path() : exe.parent_path();
}

std::set<std::string> read_tokens(const fs::path& p) {
  std::ifstream in(p);
  if (!in) throw Error(ErrorKind::io, "cannot read tokens file " + p.string());
  std::set<std::string> tokens;
  std::string line;
  while (std::getline(in, line)) {
    const auto t = trim(line);
    if (!t.empty() && t[0] != '#') tokens.insert(t);
  }
  if (tokens.empty()) throw Error(ErrorKind::invalid_input, "tokens file " + p.string() + " holds no token");
  return tokens;
}

void schedule_ticks(asio::steady_timer& timer, Scheduler& scheduler) {
  timer.expires_after(std::chrono::milliseconds(100));
  timer.async_wait([&timer, &scheduler](const boost::system::error_code& ec) {
    if (ec) return;
    scheduler.tick();  // never throws: store failures are kept and retried
    schedule_ticks(timer, scheduler);
  });
}

// Marks every descriptor this process inherited (beyond stdin, stdout and
// stderr) close-on-exec, so that nothing a parent left open reaches a worker
// or survives into one; what the server opens itself is close-on-exec already.
void close_inherited_on_exec() {
  std::error_code ec;
  std::vector<int> fds;
  for (const auto& e : fs::directory_iterator("/proc/self/fd", ec)) {
    const auto fd = parse_int(e.path().filename().string());
    if (fd && *fd > 2) fds.push_back(static_cast<int>(*fd));
  }
  for (const int fd : fds) {
    const int flags = ::fcntl(fd, F_GETFD);
    if (flags >= 0) ::fcntl(fd, F_SETFD, flags | FD_CLOEXEC);
  }
}

// Raises the soft descriptor limit to the hard one; returns the new soft limit.
rlim_t raise_fd_limit() {
  struct rlimit rl {};
  if (::getrlimit(RLIMIT_NOFILE, &rl) != 0) return 1024;
  if (rl.rlim_cur < rl.rlim_max) {
    rlimit want = rl;
    want.rlim_cur = rl.rlim_max;
    if (::setrlimit(RLIMIT_NOFILE, &want) == 0) rl = want;
  }
  return rl.rlim_cur;
}

// Folders without a row are staging folders (".new-<id>-...") a crash left
// while a job's folder was being made (job_folder.hpp), or folders of an
// older server that made them before the row. Those that never ran (no
// status.json) are removed; any other unknown folder is reported and kept.
void sweep_orphans(Store& store, const fs::path& jobs_root) {
  const auto ids = store.all_ids();
  const std::set<std::string> known(ids.begin(), ids.end());
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(jobs_root, ec)) {
    const std::string name = e.path().filename().string();
    if (known.count(name) || !e.is_directory(ec) || e.is_symlink(ec)) continue;
    if (fs::exists(e.path() / "status.json", ec)) {
      spdlog::warn("sweep: {} has no job row but holds worker output; left alone", e.path().string());
      continue;
    }
    std::error_code rec;
    fs::remove_all(e.path(), rec);
    spdlog::info("sweep: removed orphan job folder {} (created, never stored){}", name,
                 rec ? ": " + rec.message() : "");
  }
}

// The row is the record of a job; its folder's spec.yaml and spec.json are
// copies of it. After a crash of the machine (a folder entry not yet on
// disk, a file torn), the folder of a job a backend has may lack them: they
// are written again from the row, synced, before anything starts. A queued
// job not yet handed to a backend is mended (or its folder made) when it
// starts (job_folder.hpp); a folder someone removed is not made again here.
void restore_specs(Store& store, const fs::path& jobs_root) {
  for (const auto state : {JobState::queued, JobState::running, JobState::cancelling})
    for (const auto& job : store.in_state(state)) {
      if (state == JobState::queued && job.handle.empty()) continue;
      const JobDir dir(jobs_root / job.id);
      std::error_code ec;
      if (!fs::is_directory(dir.root(), ec)) continue;
      if (!mend_spec_files(dir, job)) continue;
      spdlog::warn("job {}: spec.yaml and spec.json restored from the database (lost in a crash)", job.id);
    }
}

// One server per user_data: a second one would start the same jobs. The
// lock is the kernel's (flock), so it goes with the process, kill -9 included.
void lock_user_data(const fs::path& root) {
  const fs::path path = root / "server.lock";
  const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0) throw Error(error_kind_for_errno(errno), "open " + path.string() + ": " + std::strerror(errno));
  if (::flock(fd, LOCK_EX | LOCK_NB) != 0)
    throw Error(ErrorKind::conflict, "another qjobs-server is using " + root.string() + " (" + path.string() +
                                         " is locked); stop it first or give another --user-data");
  // fd stays open (and locked) for the life of the process.
}

// Every command-line option, with its default.
struct ServerArgs {
  std::string listen = "127.0.0.1:8080";
  std::string user_data = "user_data";
  std::string gpus;
  int slots = 1;
  std::string tokens_file;
  std::string worker;
  double cancel_grace = 10;
  std::size_t body_limit = 1 << 20;
  std::string log_level = "info";
  int64_t max_connections = 0;
  double stall_timeout = 600;
  double no_space_retry = 30;
  std::string dispatcher_name = "local";
  SlurmOptions slurm;
  int max_inflight = 16;
};

void add_options(CLI::App& app, ServerArgs& a) {
  app.add_option("--listen", a.listen, "HOST:PORT to serve on (port 0 picks a free one)")->capture_default_str();
  app.add_option("--user-data", a.user_data, "folder for the database and job directories")->capture_default_str();
  auto* gpus_opt = app.add_option("--gpus", a.gpus, "CUDA device ids to schedule on, e.g. 0,1");
  app.add_option("--slots", a.slots, "CPU jobs at once when no GPUs are given")
      ->capture_default_str()
      ->check(CLI::Range(1, 1024))
      ->excludes(gpus_opt);
  app.add_option("--tokens-file", a.tokens_file, "bearer tokens, one per line; none: no authentication");
  app.add_option("--worker", a.worker, "qjobs-worker binary (default: next to this one)");
  app.add_option("--cancel-grace", a.cancel_grace, "seconds between SIGTERM and SIGKILL")->capture_default_str();
  app.add_option("--body-limit", a.body_limit, "largest request body in bytes")->capture_default_str();
  app.add_option("--log-level", a.log_level, "trace, debug, info, warn, error")->capture_default_str();
  app.add_option("--max-connections", a.max_connections,
                 "connections served at once; more get 503 (default: a quarter of the descriptor limit, at most 4096)")
      ->check(CLI::Range(int64_t{1}, int64_t{1} << 20));
  app.add_option("--stall-timeout", a.stall_timeout,
                 "seconds a running worker may leave status.json untouched before it counts as lost; 0 = never")
      ->capture_default_str()
      ->check(CLI::Range(0.0, 1e9));
  app.add_option("--no-space-retry", a.no_space_retry,
                 "seconds (times the attempt number) before a job that hit a full disk is retried")
      ->capture_default_str()
      ->check(CLI::Range(0.0, 1e6));
  app.add_option("--dispatcher", a.dispatcher_name, "where workers run: local (this machine) or slurm (sbatch)")
      ->capture_default_str()
      ->check(CLI::IsMember({"local", "slurm"}));
  app.add_option("--slurm-partition", a.slurm.partition, "Slurm partition to submit to (default: Slurm's)");
  app.add_option("--slurm-account", a.slurm.account, "Slurm account to charge");
  app.add_option("--slurm-qos", a.slurm.qos, "Slurm QOS to submit with");
  app.add_option("--slurm-extra", a.slurm.extra, "more sbatch arguments, e.g. '--constraint=h100 --mem=64G'");
  app.add_option("--slurm-gres", a.slurm.gres, "'gpu': a job's device count (CUDA_ID) becomes --gres=gpu:N")
      ->check(CLI::IsMember({"", "gpu"}));
  app.add_option("--slurm-poll", a.slurm.poll_s, "seconds between squeue calls (one call watches every job)")
      ->capture_default_str()
      ->check(CLI::Range(0.1, 600.0));
  app.add_option("--max-inflight", a.max_inflight, "with slurm: jobs handed to Slurm at once; Slurm queues them")
      ->capture_default_str()
      ->check(CLI::Range(1, 100000));
}

Capacity capacity_from(const ServerArgs& a) {
  Capacity capacity;
  if (a.dispatcher_name == "slurm") {
    // Slurm counts GPUs; qjobs only bounds how many jobs it has there.
    if (!a.gpus.empty()) spdlog::warn("--gpus is ignored with --dispatcher slurm (Slurm allocates devices)");
    capacity.slots = a.max_inflight;
    capacity.slurm = true;
    capacity.slurm_gres = a.slurm.gres == "gpu";
  } else if (!a.gpus.empty()) {
    for (const auto& g : split(a.gpus, ','))
      if (auto t = trim(g); !t.empty()) capacity.gpus.push_back(t);
  } else {
    capacity.slots = a.slots;
  }
  return capacity;
}

// Runs the I/O loop (HTTP) on this thread and the control loop (scheduler
// ticks, SIGCHLD) on another until SIGTERM or SIGINT: then the HTTP side
// drains for a second and both stop. A handler that throws is logged and its
// loop goes on.
void run_loops(asio::io_context& io, asio::io_context& control, HttpServer& http, Scheduler& scheduler) {
  asio::steady_timer ticker(control);
  schedule_ticks(ticker, scheduler);

  asio::signal_set children(control, SIGCHLD);
  std::function<void()> wait_children = [&] {
    children.async_wait([&](const boost::system::error_code& ec, int) {
      if (ec) return;
      scheduler.tick();
      wait_children();
    });
  };
  wait_children();

  asio::signal_set stop_signals(io, SIGTERM, SIGINT);
  asio::steady_timer drain(io);
  stop_signals.async_wait([&](const boost::system::error_code& ec, int sig) {
    if (ec) return;
    spdlog::info("signal {}: draining; running workers keep going and are adopted at the next start", sig);
    http.stop();
    asio::post(control, [&] {
      ticker.cancel();
      children.cancel();
    });
    drain.expires_after(std::chrono::seconds(1));
    drain.async_wait([&](const boost::system::error_code&) {
      io.stop();
      control.stop();
    });
  });
  std::thread control_thread([&] {
    while (!control.stopped()) {
      try {
        control.run();
      } catch (const std::exception& e) {
        spdlog::error("control loop: {}", e.what());
      }
    }
  });
  while (!io.stopped()) {
    try {
      io.run();
    } catch (const std::exception& e) {
      spdlog::error("I/O loop: {}", e.what());
    }
  }
  control.stop();
  control_thread.join();
}

// Opens the store, recovers the jobs it holds, and serves until a signal.
void serve(ServerArgs a) {
  close_inherited_on_exec();
  // Before anything writes to a pipe or a socket: the start-up check
  // (sbatch --test-only) feeds sbatch a script on stdin, and an sbatch
  // that exits without reading it must be an EPIPE, not the server's end.
  std::signal(SIGPIPE, SIG_IGN);
  const rlim_t fd_limit = raise_fd_limit();
  if (a.max_connections == 0) a.max_connections = std::clamp<int64_t>(static_cast<int64_t>(fd_limit / 4), 16, 4096);
  if (static_cast<rlim_t>(a.max_connections) + 64 > fd_limit)
    spdlog::warn("--max-connections {} is close to the descriptor limit {}; accept will back off when it runs out",
                 a.max_connections, fd_limit);
  const auto colon = a.listen.rfind(':');
  if (colon == std::string::npos) throw Error(ErrorKind::invalid_input, "--listen must be HOST:PORT");
  const auto port = parse_int(a.listen.substr(colon + 1));
  if (!port || *port < 0 || *port > 65535) throw Error(ErrorKind::invalid_input, "--listen: bad port");

  const fs::path root = fs::absolute(a.user_data);
  fs::create_directories(root / "jobs");
  // Workers inherit these: downloads land in the server's cache, and
  // dataset names resolve under user_data/datasets (unless set already).
  ::setenv("QJOBS_CACHE_DIR", (root / ".cache").c_str(), 0);
  ::setenv("QJOBS_DATA_DIR", (root / "datasets").c_str(), 0);
  // The server's own view of the environment, read once (submission checks
  // read datasets and hub caches from it).
  const Environment env = Environment::from_process();

  const bool use_slurm = a.dispatcher_name == "slurm";
  const Capacity capacity = capacity_from(a);
  const fs::path worker_bin = fs::absolute(a.worker.empty() ? self_dir() / "qjobs-worker" : fs::path(a.worker));
  if (!fs::exists(worker_bin)) throw Error(ErrorKind::not_found, "worker binary " + worker_bin.string() + " not found");

  // Tests point QJOBS_TEST_STORE_FAULTS at a control file to make the
  // database's writes fail or hang (store_faults.hpp).
  const char* vfs = nullptr;
  if (!env.test.store_faults.empty()) {
    vfs = install_store_faults(env.test.store_faults);
    spdlog::warn("store: fault injection from {}", env.test.store_faults);
  }
  lock_user_data(root);
  Store store(root / "qjobs.db", vfs);
  sweep_orphans(store, root / "jobs");
  restore_specs(store, root / "jobs");
  // The worker rewrites status.json at least this often, well inside the
  // stall timeout.
  const double heartbeat = a.stall_timeout > 0 ? std::clamp(a.stall_timeout / 5, 0.2, 30.0) : 30.0;
  LocalDispatcher local(worker_bin, heartbeat);
  // Always there: with --dispatcher local it only watches Slurm jobs an
  // earlier run submitted (it runs no command unless it has some), so
  // that a switch back never loses or duplicates them.
  a.slurm.worker = worker_bin;
  a.slurm.heartbeat_s = heartbeat;
  auto slurm_dispatcher = std::make_unique<SlurmDispatcher>(a.slurm);
  if (use_slurm) {
    // A partition, account, QOS or gres Slurm refuses would fail every
    // job: say so now. A controller that does not answer is only a warning.
    if (const std::string refused = slurm_dispatcher->check(); !refused.empty())
      throw Error(ErrorKind::invalid_input, "Slurm refuses jobs with these --slurm-* options: " + refused);
  }
  SchedulerOptions sched_options;
  sched_options.jobs_root = root / "jobs";
  sched_options.capacity = capacity;
  sched_options.cancel_grace_s = a.cancel_grace;
  sched_options.stall_timeout_s = a.stall_timeout;
  sched_options.no_space_retry_s = a.no_space_retry;
  // Local workers of an earlier run are still followed after a switch to
  // Slurm (and Slurm jobs after a switch back, while this build has both).
  Dispatcher& launcher = use_slurm ? static_cast<Dispatcher&>(*slurm_dispatcher) : local;
  Scheduler scheduler(store, launcher, sched_options, {&local, slurm_dispatcher.get()});
  scheduler.recover();

  ConnectionStats connections;
  ApiOptions api_options{root, {}, a.body_limit, &connections, env};
  if (!a.tokens_file.empty()) api_options.tokens = read_tokens(a.tokens_file);
  DeviceRateProbe rate_probe(worker_bin, root / "device_rates.json", capacity.gpu_mode());
  if (!use_slurm)
    api_options.rates = [&rate_probe](bool measure, std::string* why) { return rate_probe.get(measure, why); };
  Api api(store, scheduler, api_options);

  asio::io_context io(1);
  asio::io_context control(1);
  HttpOptions http_options;
  http_options.host = a.listen.substr(0, colon);
  http_options.port = static_cast<unsigned short>(*port);
  http_options.body_limit = a.body_limit;
  http_options.max_connections = a.max_connections;
  http_options.stats = &connections;
  HttpServer http(io, api, http_options);
  const auto bound = http.start();
  // The one line scripts wait for: the port actually bound.
  std::cout << "qjobs-server listening on " << http_options.host << ":" << bound << std::endl;
  spdlog::info("listening on {}:{}, user data {}, capacity {} {}, at most {} connections (descriptor limit {})",
               http_options.host, bound, root.string(), capacity.size(),
               use_slurm             ? "jobs in flight on Slurm"
               : capacity.gpu_mode() ? "GPUs"
                                     : "CPU slots",
               a.max_connections, fd_limit);
  run_loops(io, control, http, scheduler);
  spdlog::info("stopped");
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"qjobs-server: a job server for compressing language models"};
  ServerArgs args;
  add_options(app, args);
  CLI11_PARSE(app, argc, argv);

  setup_logging("server", std::nullopt, args.log_level);
  try {
    serve(args);
    return 0;
  } catch (const Error& e) {
    spdlog::critical("{}", e.what());
    return 1;
  } catch (const std::exception& e) {
    spdlog::critical("{}", e.what());
    return 1;
  }
}

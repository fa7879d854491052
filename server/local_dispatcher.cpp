#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

#include "common/error.hpp"
#include "common/job_dir.hpp"
#include "server/dispatcher.hpp"

extern char** environ;

namespace qjobs::server {

std::string process_start_token(int pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  if (!in) return "";
  std::string line;
  std::getline(in, line);
  // Field 2 (comm) may hold spaces; fields are counted after its ')'.
  const auto close = line.rfind(')');
  if (close == std::string::npos) return "";
  std::istringstream rest(line.substr(close + 2));
  std::string field;
  std::string state;
  rest >> state;
  if (state == "Z" || state == "X") return "";  // a zombie is gone for our purposes
  for (int i = 4; i <= 22; ++i) rest >> field;  // field 22: starttime
  return field;
}

std::string handle_backend(const std::string& handle) {
  const auto colon = handle.find(':');
  return colon == std::string::npos ? "" : handle.substr(0, colon);
}

std::string local_handle(int pid, const std::string& start_token) {
  return "local:" + std::to_string(pid) + ":" + start_token;
}

bool parse_local_handle(const std::string& handle, int* pid, std::string* start_token) {
  if (handle.rfind("local:", 0) != 0) return false;
  const auto colon = handle.find(':', 6);
  const std::string digits = handle.substr(6, colon == std::string::npos ? std::string::npos : colon - 6);
  if (digits.empty() || digits.size() > 9 || digits.find_first_not_of("0123456789") != std::string::npos) return false;
  *pid = std::stoi(digits);
  *start_token = colon == std::string::npos ? "" : handle.substr(colon + 1);
  return *pid > 0;
}

LocalDispatcher::LocalDispatcher(std::filesystem::path worker, double heartbeat_s)
    : worker_(std::move(worker)), heartbeat_s_(heartbeat_s) {}

std::string LocalDispatcher::launch(const LaunchRequest& req) {
  const JobDir dir(req.job_dir);
  dir.create_layout();

  std::vector<std::string> env_strings;
  for (char** e = environ; *e != nullptr; ++e) {
    const std::string s(*e);
    if (s.rfind("CUDA_VISIBLE_DEVICES=", 0) == 0 || s.rfind("QJOBS_ATTEMPT=", 0) == 0 ||
        s.rfind("QJOBS_JOB_ID=", 0) == 0 || s.rfind("QJOBS_HEARTBEAT_S=", 0) == 0)
      continue;
    env_strings.push_back(s);
  }
  env_strings.push_back("CUDA_VISIBLE_DEVICES=" + req.cuda_visible_devices);
  env_strings.push_back("QJOBS_ATTEMPT=" + std::to_string(req.attempt));
  env_strings.push_back("QJOBS_JOB_ID=" + req.job_id);
  if (heartbeat_s_ > 0) env_strings.push_back("QJOBS_HEARTBEAT_S=" + std::to_string(heartbeat_s_));
  std::vector<char*> envp;
  for (auto& s : env_strings) envp.push_back(s.data());
  envp.push_back(nullptr);

  std::vector<std::string> args = {worker_.string(), "run", req.spec_path.string(), "--job-dir", req.job_dir.string()};
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);

  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  const std::string out = dir.worker_stdio().string();
  posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&actions, 1, out.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
  posix_spawn_file_actions_adddup2(&actions, 1, 2);
  // The worker gets stdin, stdout and stderr and nothing else: no listening
  // socket, no client connection, no database handle of the server, so that
  // a restarted server can bind its port while this worker still runs.
  posix_spawn_file_actions_addclosefrom_np(&actions, 3);
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  posix_spawnattr_setpgroup(&attr, 0);
  sigset_t none;
  sigemptyset(&none);
  posix_spawnattr_setsigmask(&attr, &none);
  sigset_t dflt;
  sigemptyset(&dflt);
  sigaddset(&dflt, SIGTERM);
  sigaddset(&dflt, SIGINT);
  sigaddset(&dflt, SIGCHLD);
  sigaddset(&dflt, SIGPIPE);
  posix_spawnattr_setsigdefault(&attr, &dflt);
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);

  pid_t pid = 0;
  const int rc = posix_spawn(&pid, worker_.c_str(), &actions, &attr, argv.data(), envp.data());
  posix_spawn_file_actions_destroy(&actions);
  posix_spawnattr_destroy(&attr);
  if (rc != 0) throw Error(ErrorKind::io, "cannot start " + worker_.string() + ": " + std::strerror(rc));
  const std::string token = process_start_token(pid);
  std::string handle = local_handle(pid, token);
  children_.push_back({handle, pid, token, true});
  return handle;
}

void LocalDispatcher::signal(const std::string& handle, int sig) {
  int pid = 0;
  std::string token;
  if (!parse_local_handle(handle, &pid, &token)) return;
  // Never signal a process that merely reuses the pid.
  const std::string now = process_start_token(pid);
  if (now.empty() || (!token.empty() && now != token)) return;
  if (::kill(-pid, sig) != 0) ::kill(pid, sig);
}

void LocalDispatcher::watch(const std::string& handle) {
  int pid = 0;
  std::string token;
  if (!parse_local_handle(handle, &pid, &token)) pid = 0;  // reported ended at the next poll
  children_.push_back({handle, pid, token, false});
}

std::vector<AttemptUpdate> LocalDispatcher::poll() {
  std::vector<AttemptUpdate> out;
  for (auto it = children_.begin(); it != children_.end();) {
    AttemptUpdate u;
    u.handle = it->handle;
    bool ended = false;
    if (it->ours) {
      int status = 0;
      if (::waitpid(it->pid, &status, WNOHANG) == it->pid) {
        ended = true;
        if (WIFEXITED(status)) u.exit_code = WEXITSTATUS(status);
        if (WIFSIGNALED(status)) u.signal = WTERMSIG(status);
      }
    } else {
      // Adopted after a restart: not our child, so only /proc tells.
      const std::string now = it->pid > 0 ? process_start_token(it->pid) : "";
      ended = now.empty() || (!it->start_token.empty() && now != it->start_token);
    }
    if (ended) {
      out.push_back(std::move(u));
      it = children_.erase(it);
    } else {
      ++it;
    }
  }
  return out;
}

}  // namespace qjobs::server

// Test harness: the real qjobs-server, jobctl and qjobs-worker as processes.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "server/http_client.hpp"

namespace qjobs::testing {

std::filesystem::path bin_dir();
// The project's virtual environment's python (CMake's QJOBS_PYTHON: pip's
// gguf, onnx, onnxruntime and torch), for the checks by reference libraries.
std::string python();
std::filesystem::path make_temp_dir(const std::string& tag);
// Bytes of every regular file under `dir`, recursively.
uint64_t dir_size(const std::filesystem::path& dir);
// Kills every process whose command line names a path under `dir` (workers a
// stopped server left running by design), waits for them, then removes `dir`.
// A worker still writing status.json while the folder is removed made
// remove_all throw in TearDown.
void remove_test_dir(const std::filesystem::path& dir);

struct CmdResult {
  int rc = -1;
  std::string out;
  std::string err;
};

// Runs argv to completion with `env` added to this process's environment.
CmdResult run_cmd(const std::vector<std::string>& argv, const std::map<std::string, std::string>& env = {});

// A qjobs-server on a free loopback port over `user_data`.
class ServerProcess {
 public:
  // `listen`: HOST:PORT (port 0 picks a free one). `prefix`: a command the
  // server runs under, e.g. {"/usr/bin/prlimit", "--nofile=64:64", "--"}.
  ServerProcess(std::filesystem::path user_data, std::vector<std::string> args = {},
                std::map<std::string, std::string> env = {}, std::string listen = "127.0.0.1:0",
                std::vector<std::string> prefix = {});
  ~ServerProcess();
  ServerProcess(const ServerProcess&) = delete;
  ServerProcess& operator=(const ServerProcess&) = delete;

  const std::string& url() const { return url_; }
  pid_t pid() const { return pid_; }
  server::HttpClient client(const std::string& token = "") const { return server::HttpClient(url_, token); }
  // GET /jobs/{id} as JSON.
  nlohmann::json job(const std::string& id, const std::string& token = "") const;

  void kill9();
  void terminate();  // SIGTERM and wait
  const std::filesystem::path& stderr_path() const { return stderr_; }
  // Seconds from spawn to the "listening" line.
  double startup_s() const { return startup_s_; }

 private:
  std::filesystem::path user_data_;
  std::filesystem::path stderr_;
  double startup_s_ = 0;
  pid_t pid_ = -1;
  std::string url_;
};

// Polls `pred` every 50 ms until it holds or `timeout` passes.
bool wait_until(const std::function<bool()>& pred, std::chrono::milliseconds timeout);

bool process_alive(pid_t pid);

bool terminal_state(const std::string& state);  // SUCCEEDED, FAILED or CANCELLED

// The pid of job `id`'s worker once its status.json reports the quantize
// stage with at least `min_done` steps done; 0 when that does not happen
// within `limit`.
int wait_for_worker(const std::filesystem::path& user_data, const std::string& id, int min_done,
                    std::chrono::seconds limit = std::chrono::seconds(60));

// A loopback port that was free a moment ago.
int free_port();

// Sends `bytes` to the server at `url` on a fresh connection and returns all
// it answers until it closes (or `timeout` passes).
std::string raw_exchange(const std::string& url, const std::string& bytes,
                         std::chrono::milliseconds timeout = std::chrono::seconds(10));

// An open TCP connection that sends nothing (an idle client); -1 if refused.
int open_idle_connection(const std::string& url);

// The targets of /proc/PID/fd/* ("socket:[123]", "/path", ...).
std::vector<std::string> open_descriptors(pid_t pid);

}  // namespace qjobs::testing

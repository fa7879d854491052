// Test harness: the real qjobs-server, jobctl and qjobs-worker as processes.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <filesystem>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "server/http_client.hpp"

namespace qjobs::testing {

std::filesystem::path bin_dir();
std::filesystem::path make_temp_dir(const std::string& tag);

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
  ServerProcess(std::filesystem::path user_data, std::vector<std::string> args = {},
                std::map<std::string, std::string> env = {});
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

 private:
  std::filesystem::path user_data_;
  pid_t pid_ = -1;
  std::string url_;
};

// Polls `pred` every 50 ms until it holds or `timeout` passes.
bool wait_until(const std::function<bool()>& pred, std::chrono::milliseconds timeout);

bool process_alive(pid_t pid);

}  // namespace qjobs::testing

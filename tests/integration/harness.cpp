#include "integration/harness.hpp"

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fstream>
#include <random>
#include <regex>
#include <sstream>
#include <stdexcept>
#include <thread>

extern char** environ;

namespace qjobs::testing {
namespace fs = std::filesystem;

fs::path bin_dir() { return QJOBS_BIN_DIR; }

fs::path make_temp_dir(const std::string& tag) {
  static std::mt19937 rng{std::random_device{}()};
  const fs::path p = fs::temp_directory_path() / ("qjobs_it_" + tag + "_" + std::to_string(::getpid()) + "_" +
                                                  std::to_string(rng() % 100000));
  fs::remove_all(p);
  fs::create_directories(p);
  return p;
}

namespace {

std::vector<std::string> merged_env(const std::map<std::string, std::string>& extra) {
  std::vector<std::string> env;
  for (char** e = environ; *e != nullptr; ++e) {
    const std::string s(*e);
    const auto eq = s.find('=');
    if (eq != std::string::npos && extra.count(s.substr(0, eq))) continue;
    env.push_back(s);
  }
  for (const auto& [k, v] : extra) env.push_back(k + "=" + v);
  return env;
}

pid_t spawn(const std::vector<std::string>& argv_in, const std::map<std::string, std::string>& env_in,
            const fs::path& out, const fs::path& err) {
  auto env = merged_env(env_in);
  std::vector<char*> envp;
  for (auto& s : env) envp.push_back(s.data());
  envp.push_back(nullptr);
  auto args = argv_in;
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&fa, 1, out.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  posix_spawn_file_actions_addopen(&fa, 2, err.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  pid_t pid = -1;
  const int rc = posix_spawn(&pid, argv[0], &fa, nullptr, argv.data(), envp.data());
  posix_spawn_file_actions_destroy(&fa);
  if (rc != 0) throw std::runtime_error("cannot spawn " + argv_in[0]);
  return pid;
}

std::string slurp(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

}  // namespace

CmdResult run_cmd(const std::vector<std::string>& argv, const std::map<std::string, std::string>& env) {
  const fs::path dir = make_temp_dir("cmd");
  const pid_t pid = spawn(argv, env, dir / "out", dir / "err");
  int status = 0;
  ::waitpid(pid, &status, 0);
  CmdResult r;
  r.rc = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  r.out = slurp(dir / "out");
  r.err = slurp(dir / "err");
  fs::remove_all(dir);
  return r;
}

bool wait_until(const std::function<bool()>& pred, std::chrono::milliseconds timeout) {
  const auto end = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < end) {
    if (pred()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return pred();
}

bool process_alive(pid_t pid) {
  if (pid <= 0) return false;
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  if (!in) return false;
  std::string line;
  std::getline(in, line);
  const auto close = line.rfind(')');
  return close != std::string::npos && line.size() > close + 2 && line[close + 2] != 'Z';
}

ServerProcess::ServerProcess(fs::path user_data, std::vector<std::string> args, std::map<std::string, std::string> env)
    : user_data_(std::move(user_data)) {
  fs::create_directories(user_data_);
  std::vector<std::string> argv = {(bin_dir() / "qjobs-server").string(), "--listen", "127.0.0.1:0",
                                   "--user-data", user_data_.string()};
  argv.insert(argv.end(), args.begin(), args.end());
  const fs::path out = user_data_ / "server.stdout";
  pid_ = spawn(argv, env, out, user_data_ / ("server.stderr." + std::to_string(std::rand())));
  const std::regex re(R"(listening on ([0-9.]+):(\d+))");
  std::smatch m;
  const bool up = wait_until(
      [&] {
        const std::string s = slurp(out);
        if (std::regex_search(s, m, re)) {
          url_ = "http://" + m[1].str() + ":" + m[2].str();
          return true;
        }
        return !process_alive(pid_);
      },
      std::chrono::seconds(20));
  if (!up || url_.empty()) throw std::runtime_error("qjobs-server did not start");
}

ServerProcess::~ServerProcess() {
  if (pid_ > 0) terminate();
}

nlohmann::json ServerProcess::job(const std::string& id, const std::string& token) const {
  const auto r = client(token).request("GET", "/jobs/" + id);
  return nlohmann::json::parse(r.body);
}

void ServerProcess::kill9() {
  if (pid_ <= 0) return;
  ::kill(pid_, SIGKILL);
  ::waitpid(pid_, nullptr, 0);
  pid_ = -1;
}

void ServerProcess::terminate() {
  if (pid_ <= 0) return;
  ::kill(pid_, SIGTERM);
  if (!wait_until([&] { return ::waitpid(pid_, nullptr, WNOHANG) == pid_; }, std::chrono::seconds(10))) {
    ::kill(pid_, SIGKILL);
    ::waitpid(pid_, nullptr, 0);
  }
  pid_ = -1;
}

}  // namespace qjobs::testing

#include "integration/harness.hpp"

#include "common/job_dir.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <fstream>
#include <iterator>
#include <random>
#include <regex>
#include <sstream>
#include <stdexcept>
#include <thread>

extern char** environ;

namespace qjobs::testing {
namespace fs = std::filesystem;

fs::path bin_dir() { return QJOBS_BIN_DIR; }
std::string python() { return QJOBS_PYTHON; }

uint64_t dir_size(const std::filesystem::path& dir) {
  uint64_t n = 0;
  for (const auto& e : std::filesystem::recursive_directory_iterator(dir))
    if (e.is_regular_file()) n += e.file_size();
  return n;
}

fs::path make_temp_dir(const std::string& tag) {
  static std::mt19937 rng{std::random_device{}()};
  const fs::path p = fs::temp_directory_path() /
                     ("qjobs_it_" + tag + "_" + std::to_string(::getpid()) + "_" + std::to_string(rng() % 100000));
  fs::remove_all(p);
  fs::create_directories(p);
  return p;
}

void remove_test_dir(const fs::path& dir) {
  const std::string needle = dir.string();
  std::vector<pid_t> killed;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator("/proc", ec)) {
    const std::string name = e.path().filename().string();
    if (name.empty() || name.find_first_not_of("0123456789") != std::string::npos) continue;
    const pid_t pid = std::stoi(name);
    if (pid == ::getpid()) continue;
    std::ifstream in(e.path() / "cmdline", std::ios::binary);
    const std::string cmdline((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    if (cmdline.find(needle) == std::string::npos) continue;
    ::kill(pid, SIGKILL);
    killed.push_back(pid);
  }
  wait_until([&] { return std::none_of(killed.begin(), killed.end(), process_alive); }, std::chrono::seconds(5));
  for (int i = 0; i < 20; ++i) {
    fs::remove_all(dir, ec);
    if (!ec) return;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  throw std::runtime_error("cannot remove " + needle + ": " + ec.message());
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

ServerProcess::ServerProcess(fs::path user_data, std::vector<std::string> args, std::map<std::string, std::string> env,
                             std::string listen, std::vector<std::string> prefix)
    : user_data_(std::move(user_data)) {
  fs::create_directories(user_data_);
  std::vector<std::string> argv = prefix;
  for (const auto& a : {(bin_dir() / "qjobs-server").string(), std::string("--listen"), listen,
                        std::string("--user-data"), user_data_.string()})
    argv.push_back(a);
  argv.insert(argv.end(), args.begin(), args.end());
  const fs::path out = user_data_ / ("server.stdout." + std::to_string(std::rand()));
  stderr_ = user_data_ / ("server.stderr." + std::to_string(std::rand()));
  const auto t0 = std::chrono::steady_clock::now();
  pid_ = spawn(argv, env, out, stderr_);
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
  if (!up || url_.empty()) throw std::runtime_error("qjobs-server did not start: " + slurp(stderr_).substr(0, 2000));
  startup_s_ = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
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

bool terminal_state(const std::string& s) { return s == "SUCCEEDED" || s == "FAILED" || s == "CANCELLED"; }

int wait_for_worker(const fs::path& user_data, const std::string& id, int min_done, std::chrono::seconds limit) {
  int pid = 0;
  wait_until(
      [&] {
        const auto st = JobDir(user_data / "jobs" / id).read_status();
        if (!st || st->value("stage", "") != "quantize" || st->value("done", 0) < min_done) return false;
        pid = st->value("pid", 0);
        return pid > 0;
      },
      limit);
  return pid;
}

namespace {
sockaddr_in loopback(int port) {
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  return a;
}
int url_port(const std::string& url) { return std::stoi(url.substr(url.rfind(':') + 1)); }
}  // namespace

int free_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a = loopback(0);
  ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
  socklen_t len = sizeof a;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  ::close(fd);
  return ntohs(a.sin_port);
}

int open_idle_connection(const std::string& url) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  sockaddr_in a = loopback(url_port(url));
  if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    ::close(fd);
    return -1;
  }
  return fd;
}

std::string raw_exchange(const std::string& url, const std::string& bytes, std::chrono::milliseconds timeout) {
  const int fd = open_idle_connection(url);
  if (fd < 0) return "";
  timeval tv{static_cast<time_t>(timeout.count() / 1000), static_cast<suseconds_t>((timeout.count() % 1000) * 1000)};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  std::size_t off = 0;
  while (off < bytes.size()) {
    const ssize_t n = ::send(fd, bytes.data() + off, bytes.size() - off, MSG_NOSIGNAL);
    if (n <= 0) break;
    off += static_cast<std::size_t>(n);
  }
  std::string out;
  char buf[4096];
  while (true) {
    const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n <= 0) break;
    out.append(buf, static_cast<std::size_t>(n));
  }
  ::close(fd);
  return out;
}

std::vector<std::string> open_descriptors(pid_t pid) {
  std::vector<std::string> out;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator("/proc/" + std::to_string(pid) + "/fd", ec)) {
    std::error_code lec;
    out.push_back(fs::read_symlink(e.path(), lec).string());
  }
  return out;
}

}  // namespace qjobs::testing

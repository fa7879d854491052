#include "common/job_dir.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <fstream>
#include <random>
#include <sstream>

#include "common/error.hpp"

namespace qjobs {
namespace fs = std::filesystem;

namespace {

void write_all(int fd, const std::string& data, const fs::path& path) {
  std::size_t off = 0;
  while (off < data.size()) {
    const ssize_t n = ::write(fd, data.data() + off, data.size() - off);
    if (n < 0) {
      if (errno == EINTR) continue;
      throw Error(ErrorKind::io, "write " + path.string() + ": " + std::strerror(errno));
    }
    off += static_cast<std::size_t>(n);
  }
}

}  // namespace

double unix_now() {
  using namespace std::chrono;
  return duration<double>(system_clock::now().time_since_epoch()).count();
}

void write_file_atomic(const fs::path& path, const std::string& content) {
  thread_local std::mt19937_64 rng{std::random_device{}()};
  const fs::path tmp = path.string() + ".tmp." + std::to_string(::getpid()) + "." +
                       std::to_string(rng() % 1000000);
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) throw Error(ErrorKind::io, "open " + tmp.string() + ": " + std::strerror(errno));
  try {
    write_all(fd, content, tmp);
    if (::fsync(fd) != 0)
      throw Error(ErrorKind::io, "fsync " + tmp.string() + ": " + std::strerror(errno));
  } catch (...) {
    ::close(fd);
    ::unlink(tmp.c_str());
    throw;
  }
  ::close(fd);
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    const int err = errno;
    ::unlink(tmp.c_str());
    throw Error(ErrorKind::io, "rename to " + path.string() + ": " + std::strerror(err));
  }
}

std::string read_file(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error(ErrorKind::io, "cannot open " + path.string());
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

void JobDir::create_layout() const {
  std::error_code ec;
  for (const auto& d : {root_, logs_dir(), model_dir(), eval_dir()}) {
    fs::create_directories(d, ec);
    if (ec) throw Error(ErrorKind::io, "create " + d.string() + ": " + ec.message());
  }
}

std::optional<nlohmann::json> JobDir::read_status() const {
  std::ifstream in(status());
  if (!in) return std::nullopt;
  auto j = nlohmann::json::parse(in, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) return std::nullopt;
  return j;
}

void JobDir::write_status(const nlohmann::json& s) const { write_file_atomic(status(), s.dump(1)); }

void JobDir::append_event(nlohmann::json event) const {
  if (!event.contains("ts")) event["ts"] = unix_now();
  const std::string line = event.dump() + "\n";
  const int fd = ::open(events().c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (fd < 0) throw Error(ErrorKind::io, "open " + events().string() + ": " + std::strerror(errno));
  try {
    write_all(fd, line, events());
  } catch (...) {
    ::close(fd);
    throw;
  }
  ::close(fd);
}

}  // namespace qjobs

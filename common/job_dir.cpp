#include "common/job_dir.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <algorithm>
#include <climits>
#include <type_traits>
#include <fstream>
#include <random>
#include <sstream>

#include "common/error.hpp"
#include "common/strings.hpp"

namespace qjobs {
namespace fs = std::filesystem;

namespace {

void write_all(int fd, const std::string& data, const fs::path& path) {
  std::size_t off = 0;
  while (off < data.size()) {
    const ssize_t n = ::write(fd, data.data() + off, data.size() - off);
    if (n < 0) {
      if (errno == EINTR) continue;
      throw Error(error_kind_for_errno(errno), "write " + path.string() + ": " + std::strerror(errno));
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
  const fs::path tmp = path.string() + ".tmp." + std::to_string(::getpid()) + "." + std::to_string(rng() % 1000000);
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) throw Error(error_kind_for_errno(errno), "open " + tmp.string() + ": " + std::strerror(errno));
  try {
    write_all(fd, content, tmp);
    if (::fsync(fd) != 0)
      throw Error(error_kind_for_errno(errno), "fsync " + tmp.string() + ": " + std::strerror(errno));
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

namespace {

const char* json_type_name(const nlohmann::json& j) {
  return j.is_string()    ? "a string"
         : j.is_boolean() ? "a boolean"
         : j.is_number()  ? "a number"
         : j.is_array()   ? "a list"
         : j.is_object()  ? "an object"
                          : "null";
}

}  // namespace

int open_job_file(const fs::path& root, std::string_view rel) {
  std::vector<std::string> parts;
  for (std::size_t start = 0;;) {
    const auto slash = rel.find('/', start);
    parts.emplace_back(rel.substr(start, slash == std::string_view::npos ? rel.npos : slash - start));
    if (slash == std::string_view::npos) break;
    start = slash + 1;
  }
  for (const auto& p : parts)
    if (p.empty() || p == "." || p == ".." || p.find('\0') != std::string::npos) {
      errno = EINVAL;
      return -1;
    }
  // The job folder's parent is the server's own; the job folder and
  // everything below it are not, so none of them may be a link.
  const fs::path parent = root.has_parent_path() ? root.parent_path() : fs::path(".");
  int dir = ::open(parent.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dir < 0) return -1;
  parts.insert(parts.begin(), root.filename().string());
  for (std::size_t i = 0; i + 1 < parts.size(); ++i) {
    const int next = ::openat(dir, parts[i].c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    const int err = errno;
    ::close(dir);
    if (next < 0) {
      errno = err;
      return -1;
    }
    dir = next;
  }
  const int fd = ::openat(dir, parts.back().c_str(), O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
  const int err = errno;
  ::close(dir);
  if (fd < 0) {
    errno = err;
    return -1;
  }
  struct stat st {};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    errno = EINVAL;
    return -1;
  }
  return fd;
}

std::optional<std::string> read_job_file(const fs::path& root, std::string_view rel, std::size_t max_bytes,
                                         std::string* problem) {
  if (problem) problem->clear();
  const auto fail = [&](std::string m) -> std::optional<std::string> {
    if (problem) *problem = std::string(rel) + ": " + std::move(m);
    return std::nullopt;
  };
  const int fd = open_job_file(root, rel);
  if (fd < 0) {
    if (errno == ENOENT) return std::nullopt;
    if (errno == EINVAL) return fail("not a regular file");
    if (errno == ELOOP || errno == ENOTDIR) return fail("a symbolic link, not read");
    return fail(std::string("cannot open: ") + std::strerror(errno));
  }
  struct stat st {};
  if (::fstat(fd, &st) == 0 && static_cast<uint64_t>(st.st_size) > max_bytes) {
    ::close(fd);
    return fail(std::to_string(st.st_size) + " bytes; at most " + std::to_string(max_bytes) + " are read");
  }
  std::string text;
  char buf[65536];
  while (text.size() <= max_bytes) {
    const ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      const int err = errno;
      ::close(fd);
      return fail(std::string("cannot read: ") + std::strerror(err));
    }
    if (n == 0) break;
    text.append(buf, static_cast<std::size_t>(n));
  }
  ::close(fd);
  if (text.size() > max_bytes)
    return fail("more than " + std::to_string(max_bytes) + " bytes; at most that many are read");
  return text;
}

int json_text_depth(std::string_view text, int limit) {
  int depth = 0, deepest = 0;
  bool in_string = false;
  for (std::size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (in_string) {
      if (c == '\\') ++i;
      else if (c == '"') in_string = false;
      continue;
    }
    if (c == '"') {
      in_string = true;
    } else if (c == '[' || c == '{') {
      deepest = std::max(deepest, ++depth);
      if (deepest > limit) return deepest;
    } else if (c == ']' || c == '}') {
      --depth;
    }
  }
  return deepest;
}

std::optional<nlohmann::json> parse_job_json(std::string_view text, int max_depth, std::string* problem) {
  if (problem) problem->clear();
  if (json_text_depth(text, max_depth) > max_depth) {
    if (problem) *problem = "nested deeper than " + std::to_string(max_depth) + " levels";
    return std::nullopt;
  }
  auto j = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) {
    if (problem) *problem = "not valid JSON";
    return std::nullopt;
  }
  return j;
}

std::optional<WorkerStatus> parse_worker_status(std::string_view text, std::string* problem) {
  const auto fail = [&](std::string m) -> std::optional<WorkerStatus> {
    if (problem) *problem = std::move(m);
    return std::nullopt;
  };
  if (text.size() > kMaxStatusBytes)
    return fail("status.json is " + std::to_string(text.size()) + " bytes; at most " + std::to_string(kMaxStatusBytes) +
                " are read");
  if (json_text_depth(text, 6) > 6) return fail("status.json is nested too deeply");
  const auto j = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return fail("status.json is not valid JSON");
  if (!j.is_object()) return fail(std::string("status.json must be an object, got ") + json_type_name(j));

  WorkerStatus s;
  const auto shown = [](const nlohmann::json& v) {
    return excerpt(v.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace), 40);
  };
  const auto wrong = [&](const char* key, const char* want, const nlohmann::json& v) {
    return fail(std::string("'") + key + "' must be " + want + ", got " + json_type_name(v) + " " + shown(v));
  };
  const auto str = [&](const char* key, std::string& out, std::size_t max) -> bool {
    const auto it = j.find(key);
    if (it == j.end() || it->is_null()) return true;
    if (!it->is_string()) return wrong(key, "a string", *it), false;
    out = it->get<std::string>();
    if (out.size() > max) out = excerpt(out, max);
    return true;
  };
  const auto integer = [&](const char* key, auto& out, int64_t lo, int64_t hi) -> bool {
    const auto it = j.find(key);
    if (it == j.end() || it->is_null()) return true;
    if (!it->is_number_integer()) return wrong(key, "an integer", *it), false;
    const auto v = it->is_number_unsigned() ? static_cast<int64_t>(std::min<uint64_t>(it->get<uint64_t>(), INT64_MAX))
                                            : it->get<int64_t>();
    if (v < lo || v > hi) return fail(std::string("'") + key + "' is out of range: " + std::to_string(v)), false;
    out = static_cast<std::remove_reference_t<decltype(out)>>(v);
    return true;
  };
  const auto number = [&](const char* key, double& out) -> bool {
    const auto it = j.find(key);
    if (it == j.end() || it->is_null()) return true;
    if (!it->is_number()) return wrong(key, "a number", *it), false;
    out = it->get<double>();
    return true;
  };
  constexpr int64_t big = int64_t{1} << 53;
  if (!str("state", s.state, 32) || !str("stage", s.stage, 256) ||
      !integer("stage_index", s.stage_index, -1, 1 << 20) || !integer("done", s.done, 0, big) ||
      !integer("total", s.total, 0, big) || !number("eta_s", s.eta_s) || !str("error_type", s.error_type, 32) ||
      !str("error", s.error, 4096) || !integer("attempt", s.attempt, 0, 1 << 20) ||
      !integer("pid", s.pid, 0, 1 << 30) || !number("updated_at", s.updated_at))
    return std::nullopt;
  if (!s.state.empty() && s.state != "RUNNING" && s.state != "SUCCEEDED" && s.state != "FAILED")
    return fail("'state' must be RUNNING, SUCCEEDED or FAILED, got " + excerpt(s.state, 32));
  if (const auto it = j.find("stages"); it != j.end() && !it->is_null()) {
    if (!it->is_array() || it->size() > 64) return wrong("stages", "a list of at most 64 names", *it);
    for (const auto& n : *it) {
      if (!n.is_string()) return wrong("stages", "a list of names", n);
      s.stages.push_back(excerpt(n.get<std::string>(), 256));
    }
  }
  if (const auto it = j.find("metrics"); it != j.end() && !it->is_null()) {
    if (!it->is_object()) return wrong("metrics", "an object", *it);
    s.metrics = *it;
  }
  return s;
}

std::optional<WorkerStatus> JobDir::read_worker_status(std::string* problem) const {
  std::string why;
  const auto text = read_job_file(root_, "status.json", kMaxStatusBytes, &why);
  if (problem) *problem = why;
  if (!text) return std::nullopt;
  return parse_worker_status(*text, problem);
}

void JobDir::write_status(const nlohmann::json& s) const { write_file_atomic(status(), s.dump(1)); }

void JobDir::append_event(nlohmann::json event) const {
  if (!event.contains("ts")) event["ts"] = unix_now();
  const std::string line = event.dump() + "\n";
  const int fd = ::open(events().c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (fd < 0) throw Error(error_kind_for_errno(errno), "open " + events().string() + ": " + std::strerror(errno));
  try {
    write_all(fd, line, events());
  } catch (...) {
    ::close(fd);
    throw;
  }
  ::close(fd);
}

}  // namespace qjobs

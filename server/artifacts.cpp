#include "server/artifacts.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>

#include "common/digest.hpp"
#include "common/error.hpp"
#include "common/job_dir.hpp"

namespace qjobs::server {
namespace fs = std::filesystem;

std::string sha256_file(const fs::path& p) { return Digest().update_file(p).hex(); }

ChecksumCache::ChecksumCache() : ChecksumCache(Options{}) {}

ChecksumCache::ChecksumCache(Options options) : options_(options), thread_([this] { run(); }) {}

ChecksumCache::~ChecksumCache() {
  {
    std::lock_guard lock(mu_);
    stop_ = true;
  }
  wake_.notify_all();
  thread_.join();
}

ChecksumCache::Key ChecksumCache::key_of(const fs::path& root, const std::string& rel, const struct stat& st) {
  return Key{(root / rel).string(), static_cast<uint64_t>(st.st_dev), static_cast<uint64_t>(st.st_ino),
             static_cast<uint64_t>(st.st_size),
             static_cast<int64_t>(st.st_mtim.tv_sec) * 1000000000 + st.st_mtim.tv_nsec};
}

// Reads the file through open_job_file (no links, regular files only) and
// keeps the result only if the file is still the version `key` describes.
std::optional<std::string> ChecksumCache::hash(const fs::path& root, const std::string& rel, const Key& key,
                                               const std::atomic<bool>* stop) {
  const int fd = open_job_file(root, rel);
  if (fd < 0) return std::nullopt;
  Digest d;
  std::vector<char> buf(1 << 20);
  bool ok = true;
  while (true) {
    if (stop && stop->load()) {
      ok = false;
      break;
    }
    const ssize_t n = ::read(fd, buf.data(), buf.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) ok = false;
    if (n <= 0) break;
    d.update(buf.data(), static_cast<std::size_t>(n));
  }
  struct stat st {};
  ok = ok && ::fstat(fd, &st) == 0;
  ::close(fd);
  if (!ok || key_of(root, rel, st) != key) return std::nullopt;  // changed while read: next listing asks again
  return d.hex();
}

void ChecksumCache::store(const Key& key, std::string sha) {
  // Called with mu_ held.
  if (done_.size() >= options_.max_entries) {
    std::vector<uint64_t> ticks;
    for (const auto& [k, v] : done_) ticks.push_back(v.second);
    std::nth_element(ticks.begin(), ticks.begin() + static_cast<std::ptrdiff_t>(ticks.size() / 2), ticks.end());
    const uint64_t median = ticks[ticks.size() / 2];
    std::erase_if(done_, [&](const auto& e) { return e.second.second < median; });
  }
  done_[key] = {std::move(sha), ++tick_};
}

std::optional<std::string> ChecksumCache::lookup(const fs::path& root, const std::string& rel, const struct stat& st,
                                                 uint64_t* inline_left) {
  const Key key = key_of(root, rel, st);
  {
    std::lock_guard lock(mu_);
    if (const auto it = done_.find(key); it != done_.end()) return it->second.first;
    if (queued_.count(key)) return std::nullopt;
    const uint64_t size = static_cast<uint64_t>(st.st_size);
    if (size > options_.inline_bytes || size > *inline_left) {
      queue_.push_back({root, rel, key});
      queued_[key] = true;
      wake_.notify_one();
      return std::nullopt;
    }
    *inline_left -= size;
  }
  auto sha = hash(root, rel, key, nullptr);
  if (!sha) return std::nullopt;
  std::lock_guard lock(mu_);
  store(key, *sha);
  return sha;
}

void ChecksumCache::drain() {
  std::unique_lock lock(mu_);
  idle_.wait(lock, [&] { return queue_.empty() && !busy_; });
}

void ChecksumCache::run() {
  std::unique_lock lock(mu_);
  while (true) {
    wake_.wait(lock, [&] { return stop_ || !queue_.empty(); });
    if (stop_) return;
    Job job = std::move(queue_.front());
    queue_.pop_front();
    busy_ = true;
    lock.unlock();
    auto sha = hash(job.root, job.rel, job.key, &stop_);
    lock.lock();
    busy_ = false;
    queued_.erase(job.key);
    if (sha) store(job.key, std::move(*sha));
    if (queue_.empty()) idle_.notify_all();
  }
}

std::vector<ArtifactInfo> list_artifacts(const fs::path& root, ChecksumCache& cache) {
  std::vector<ArtifactInfo> out;
  std::error_code ec;
  if (!fs::is_directory(fs::symlink_status(root, ec))) return out;
  uint64_t inline_left = cache.inline_budget();
  for (auto it = fs::recursive_directory_iterator(root, fs::directory_options::skip_permission_denied, ec);
       it != fs::recursive_directory_iterator(); it.increment(ec)) {
    if (ec) break;
    struct stat st {};
    if (::lstat(it->path().c_str(), &st) != 0) continue;  // vanished while listing
    if (S_ISLNK(st.st_mode)) {
      it.disable_recursion_pending();
      continue;
    }
    // The worker's resume state (per-block weights and inputs) is scratch,
    // removed when the job ends: not an output, and not worth hashing.
    if (S_ISDIR(st.st_mode) && it.depth() == 0 && it->path().filename() == "calib_state") {
      it.disable_recursion_pending();
      continue;
    }
    if (!S_ISREG(st.st_mode)) continue;  // folders are walked; FIFOs, sockets and devices are not artifacts
    const auto rel = fs::relative(it->path(), root, ec).generic_string();
    // Temporary files of an atomic write in progress are not artifacts.
    if (ec || rel.find(".tmp.") != std::string::npos) continue;
    out.push_back({rel, static_cast<uint64_t>(st.st_size), cache.lookup(root, rel, st, &inline_left).value_or("")});
  }
  std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) { return a.path < b.path; });
  return out;
}

nlohmann::json to_json(const ArtifactInfo& a) {
  nlohmann::json j = {{"path", a.path}, {"size", a.size}, {"sha256", nullptr}};
  if (a.sha256.empty()) j["sha256_pending"] = true;
  else j["sha256"] = a.sha256;
  return j;
}

std::optional<fs::path> resolve_artifact(const fs::path& root, const std::vector<std::string>& segments) {
  if (segments.empty()) return std::nullopt;
  std::string rel;
  for (const auto& s : segments) {
    if (s.empty() || s == "." || s == ".." || s.find('/') != std::string::npos || s.find('\\') != std::string::npos ||
        s.find('\0') != std::string::npos)
      return std::nullopt;
    rel += (rel.empty() ? "" : "/") + s;
  }
  const int fd = open_job_file(root, rel);
  if (fd < 0) return std::nullopt;
  ::close(fd);
  return root / rel;
}

}  // namespace qjobs::server

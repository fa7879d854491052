// The files of a job directory as the API exposes them. No path handed out or
// accepted here may leave the job directory: names are decoded segment by
// segment, "..", ".", empty and NUL-bearing segments are refused, and no
// symlink is listed, followed or served.
#pragma once

#include <sys/stat.h>

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <filesystem>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

namespace qjobs::server {

struct ArtifactInfo {
  std::string path;  // relative to the job directory, '/'-separated
  uint64_t size = 0;
  std::string sha256;  // lowercase hex; "" while the checksum is being computed
};

// sha256 of job files, computed once per version of a file (its device,
// inode, size and modification time) and kept. A file over `inline_bytes`
// is never hashed on the caller's thread: it is queued for one background
// thread, and lookup() says "not yet" until it is done, so listing a job of
// many GB costs a directory walk, not a read of every byte.
// Thread safety: every member may be called from any thread.
class ChecksumCache {
 public:
  struct Options {
    uint64_t inline_bytes = 1u << 20;    // files up to this size are hashed on request
    uint64_t inline_budget = 16u << 20;  // bytes one listing hashes inline at most
    std::size_t max_entries = 200000;    // checksums kept; the oldest half goes when full
  };
  ChecksumCache();
  explicit ChecksumCache(Options options);
  ~ChecksumCache();  // stops the background thread (a file being hashed is abandoned)
  ChecksumCache(const ChecksumCache&) = delete;
  ChecksumCache& operator=(const ChecksumCache&) = delete;

  // The sha256 of `rel` under `root` whose lstat is `st`: from the cache,
  // or computed now when the file is small and *inline_left allows (it is
  // reduced by the bytes read), or nullopt after queueing it. A file that
  // cannot be read as a regular file also gives nullopt (and is not queued).
  std::optional<std::string> lookup(const std::filesystem::path& root, const std::string& rel, const struct stat& st,
                                    uint64_t* inline_left);

  uint64_t inline_budget() const { return options_.inline_budget; }

  // Waits until the queue is empty (tests and benchmarks).
  void drain();

 private:
  struct Key {
    std::string path;
    uint64_t dev, ino, size;
    int64_t mtime_ns;
    auto operator<=>(const Key&) const =
        default;  // NOLINT(modernize-use-nullptr): clang-tidy 14 misreads the defaulted <=>
  };
  struct Job {
    std::filesystem::path root;
    std::string rel;
    Key key;
  };
  static Key key_of(const std::filesystem::path& root, const std::string& rel, const struct stat& st);
  // nullopt when the file changed, cannot be read, or *stop turned true.
  static std::optional<std::string> hash(const std::filesystem::path& root, const std::string& rel, const Key& key,
                                         const std::atomic<bool>* stop);
  void store(const Key& key, std::string sha);
  void run();

  Options options_;
  std::mutex mu_;
  std::condition_variable wake_, idle_;
  std::map<Key, std::pair<std::string, uint64_t>> done_;  // checksum, insertion tick
  std::deque<Job> queue_;
  std::map<Key, bool> queued_;
  bool busy_ = false;
  std::atomic<bool> stop_{false};
  uint64_t tick_ = 0;
  std::thread thread_;
};

// Regular files under `root` (symlinks, FIFOs and devices are skipped), sorted
// by path, with sizes and, where `cache` has it or can make it inline, the
// sha256.
std::vector<ArtifactInfo> list_artifacts(const std::filesystem::path& root, ChecksumCache& cache);

// {"path", "size", "sha256"}; a checksum not computed yet is null with
// "sha256_pending": true.
nlohmann::json to_json(const ArtifactInfo& a);

// The file that the decoded `segments` name inside `root`, or nullopt when
// they are unsafe, leave `root`, pass through or name a symlink, or do not
// name a regular file.
std::optional<std::filesystem::path> resolve_artifact(const std::filesystem::path& root,
                                                      const std::vector<std::string>& segments);

std::string sha256_file(const std::filesystem::path& p);  // throws Error(io)

}  // namespace qjobs::server

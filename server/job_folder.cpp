#include "server/job_folder.hpp"

#include <unistd.h>

#include <random>
#include <system_error>

#include <spdlog/spdlog.h>

#include "common/error.hpp"

namespace qjobs::server {
namespace fs = std::filesystem;
using nlohmann::json;

namespace {

// spec.json as the submission would have written it: the row's normalized
// spec, indented.
std::string spec_json_text(const JobRecord& job) {
  const json spec = json::parse(job.spec_json, nullptr, false);
  return spec.is_discarded() ? job.spec_json : spec.dump(2);
}

bool holds(const fs::path& p, const std::string& text) {
  std::error_code ec;
  if (fs::file_size(p, ec) != text.size() || ec) return false;
  try {
    return read_file(p) == text;
  } catch (const Error&) {
    return false;
  }
}

void write_folder(const JobDir& dir, Store& store, const JobRecord& job) {
  dir.create_layout();
  write_file_atomic(dir.spec_yaml(), job.spec_yaml);
  write_file_atomic(dir.spec_json(), spec_json_text(job));
  std::string events;
  for (const auto& e : store.events(job.id)) events += e.dump() + "\n";
  write_file_atomic(dir.events(), events);
}

}  // namespace

bool mend_spec_files(const JobDir& dir, const JobRecord& job) {
  const std::string spec_json = spec_json_text(job);
  if (holds(dir.spec_yaml(), job.spec_yaml) && holds(dir.spec_json(), spec_json)) return false;
  write_file_atomic(dir.spec_yaml(), job.spec_yaml);
  write_file_atomic(dir.spec_json(), spec_json);
  return true;
}

JobDir ensure_job_folder(Store& store, const fs::path& jobs_root, const JobRecord& job) {
  JobDir dir(jobs_root / job.id);
  if (job.state != JobState::queued || !job.handle.empty()) return dir;
  std::error_code ec;
  if (fs::is_directory(dir.root(), ec)) {
    if (mend_spec_files(dir, job))
      spdlog::warn("job {}: spec.yaml and spec.json rewritten from the database (lost or torn in a crash)", job.id);
    return dir;
  }
  thread_local std::mt19937_64 rng{std::random_device{}()};
  // A leading dot and no row of that name: the start-up sweep removes one a
  // crash left behind.
  const JobDir staging(jobs_root / (".new-" + job.id + "-" + std::to_string(::getpid()) + "-" + std::to_string(rng())));
  try {
    write_folder(staging, store, job);
  } catch (...) {
    fs::remove_all(staging.root(), ec);
    throw;
  }
  if (::rename(staging.root().c_str(), dir.root().c_str()) != 0) {
    const int err = errno;
    fs::remove_all(staging.root(), ec);
    // Another caller made it first (the target is a folder with files).
    if (err != EEXIST && err != ENOTEMPTY)
      throw Error(error_kind_for_errno(err),
                  "rename " + staging.root().string() + " to " + dir.root().string() + ": " + std::strerror(err));
  }
  return dir;
}

}  // namespace qjobs::server

#include "jobs/eval/baseline_cache.hpp"

#include <cstdlib>
#include <filesystem>

#include "common/digest.hpp"
#include "common/job_dir.hpp"
#include "jobs/data/dataset.hpp"
#include "jobs/model/checkpoint.hpp"
#include "spec/eval_task.hpp"

namespace qjobs::eval {
namespace fs = std::filesystem;
using nlohmann::json;

namespace {

std::string identity(const fs::path& p) {
  std::error_code ec;
  const auto size = fs::file_size(p, ec);
  const auto mtime = fs::last_write_time(p, ec).time_since_epoch().count();
  return fs::absolute(p).string() + ":" + std::to_string(size) + ":" + std::to_string(mtime);
}

}  // namespace

std::string eval_fingerprint(const model::Checkpoint& ckpt, const json& task, const std::string& dtype,
                             const fs::path& data_root) {
  Digest d;
  const auto feed = [&](const std::string& s) { d.update(s).update("\n"); };
  feed("qjobs-eval-v1");
  feed(ckpt.config().dump());
  for (const auto& f : ckpt.files()) feed(identity(f->path()));
  feed(task.dump());
  feed(dtype);
  // The data the task reads, when it reads a file: its data_path, else the
  // named datasets its row says it reads (jobs/eval/tasks.cpp's choice).
  const EvalTaskInfo* row = find_eval_task(task.value("type", ""));
  const std::vector<EvalDataset> named = row != nullptr ? row->datasets(task) : std::vector<EvalDataset>{};
  if (!named.empty()) {
    data::DatasetSpec ds;
    ds.root = data_root;
    ds.path = task.value("data_path", "");
    ds.name = named[0].name;
    ds.subname = named[0].subset;
    ds.split = named[0].split;
    try {
      feed(identity(data::resolve_file(ds)));
    } catch (const std::exception&) {
      feed("no-data");  // the task itself will fail and say why
    }
  }
  return d.hex(20);
}

std::optional<json> load_baseline(const fs::path& cache_dir, const std::string& fingerprint) {
  if (cache_dir.empty()) return std::nullopt;
  const auto p = cache_dir / "baselines" / (fingerprint + ".json");
  if (!fs::exists(p)) return std::nullopt;
  try {
    auto j = json::parse(read_file(p), nullptr, false);
    if (j.is_discarded() || !j.is_object()) return std::nullopt;
    return j;
  } catch (const std::exception&) {
    return std::nullopt;
  }
}

bool store_baseline(const fs::path& cache_dir, const std::string& fingerprint, const json& result) {
  if (cache_dir.empty()) return false;
  try {
    fs::create_directories(cache_dir / "baselines");
    write_file_atomic(cache_dir / "baselines" / (fingerprint + ".json"), result.dump(2));
    return true;
  } catch (const std::exception&) {
    return false;
  }
}

}  // namespace qjobs::eval

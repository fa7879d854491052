// Results of evaluation tasks on an unquantized model, cached by a
// fingerprint so that ten jobs on one model compute its baseline once.
// The fingerprint covers the model (config.json and every weight file's
// name, size and modification time), the task as the spec states it, the
// compute dtype, and the task's data file (path, size, modification time).
// Entries live in $QJOBS_CACHE_DIR/baselines/<fingerprint>.json, written
// atomically; without QJOBS_CACHE_DIR nothing is cached.
#pragma once

#include <filesystem>
#include <optional>
#include <string>

#include <nlohmann/json.hpp>

namespace qjobs::model {
class Checkpoint;
}

namespace qjobs::eval {

// `data_root`: where the task's named dataset is read from (Environment::data_dir).
std::string eval_fingerprint(const model::Checkpoint& ckpt, const nlohmann::json& task, const std::string& dtype,
                             const std::filesystem::path& data_root);

// The cached result under `cache_dir`/baselines (Environment::cache_dir), or
// nullopt (no cache directory, no entry, or an unreadable entry, which is
// then ignored).
std::optional<nlohmann::json> load_baseline(const std::filesystem::path& cache_dir, const std::string& fingerprint);

// Stores `result`; a failure to write is logged by the caller's choice and
// never fails a job, so this returns false instead of throwing.
bool store_baseline(const std::filesystem::path& cache_dir, const std::string& fingerprint,
                    const nlohmann::json& result);

}  // namespace qjobs::eval

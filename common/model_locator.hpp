// Where a job's MODEL is on this machine without downloading it: a local
// directory, or a snapshot in one of the Hugging Face caches `hub_caches`
// (Environment::hub_caches: the server's $QJOBS_CACHE_DIR/hub, then the
// user's; layout models--ORG--NAME/snapshots/REV/). The
// server reads config.json from there at submission; the worker resolves
// MODEL the same way before it downloads (jobs/model/model_source.hpp).
#pragma once

#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace qjobs {

// The directory of `model`, or nullopt.
std::optional<std::string> find_local_model_dir(const std::string& model,
                                                const std::vector<std::filesystem::path>& hub_caches);
// Its config.json, or nullopt when it is not found or not a JSON object of
// at most 1 MiB.
std::optional<nlohmann::json> find_model_config(const std::string& model,
                                                const std::vector<std::filesystem::path>& hub_caches);
// The file of `split` in a dataset folder: <split>.jsonl|json|txt, or the
// first <split>-* file.
std::optional<std::filesystem::path> find_split_file(const std::filesystem::path& dir, const std::string& split);

}  // namespace qjobs

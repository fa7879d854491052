// Where a job's MODEL is on this machine without downloading it: a local
// directory, or a snapshot in the server's hub cache ($QJOBS_CACHE_DIR/hub)
// or the user's Hugging Face cache ($HF_HUB_CACHE, $HF_HOME/hub or
// ~/.cache/huggingface/hub, layout models--ORG--NAME/snapshots/REV/). The
// server reads config.json from there at submission; the worker resolves
// MODEL the same way before it downloads (jobs/model/model_source.hpp).
#pragma once

#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace qjobs {

std::vector<std::string> hub_cache_dirs();  // in the order they are searched
// The directory of `model`, or nullopt.
std::optional<std::string> find_local_model_dir(const std::string& model);
// Its config.json, or nullopt when it is not found or not a JSON object of
// at most 1 MiB.
std::optional<nlohmann::json> find_model_config(const std::string& model);

// Where DATASET_NAME is read from: $QJOBS_DATA_DIR (the server sets
// user_data/datasets), else ./datasets.
std::filesystem::path dataset_root();
// The file of `split` in a dataset folder: <split>.jsonl|json|txt, or the
// first <split>-* file.
std::optional<std::filesystem::path> find_split_file(const std::filesystem::path& dir, const std::string& split);

}  // namespace qjobs

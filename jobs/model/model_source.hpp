// Where a job's MODEL comes from: a local directory; a hub id found in the
// server's cache ($QJOBS_CACHE_DIR/hub) or the user's Hugging Face cache
// ($HF_HUB_CACHE, $HF_HOME/hub or ~/.cache/huggingface/hub, layout
// models--ORG--NAME/snapshots/REV/); else a hub id downloaded into the first
// of those (hub_download.hpp) unless HF_HUB_OFFLINE is set.
#pragma once

#include <filesystem>
#include <cstdint>
#include <functional>
#include <string>

#include "common/environment.hpp"

namespace qjobs::model {

// Returns the directory holding the model named by `model`, looking in
// `env`'s hub caches and downloading with its hub settings. Relative paths
// are taken from the current directory. progress(bytes done, total) reports
// a download. Throws Error(not_found) saying where it looked, or the
// download's errors.
std::filesystem::path resolve_model_dir(const std::string& model, const Environment& env,
                                        const std::function<void(uint64_t, uint64_t)>& progress = {});

}  // namespace qjobs::model

// Where a job's MODEL comes from: a local directory, or a hub id found in the
// local Hugging Face cache ($HF_HOME/hub or ~/.cache/huggingface/hub, layout
// models--ORG--NAME/snapshots/REV/).
#pragma once

#include <filesystem>
#include <string>

namespace qjobs::model {

// Returns the directory holding the model named by `model`. Relative paths
// are taken from the current directory. Throws Error(not_found) saying where
// it looked.
std::filesystem::path resolve_model_dir(const std::string& model);

}  // namespace qjobs::model

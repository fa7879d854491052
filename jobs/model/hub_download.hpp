// Downloads a model from the Hugging Face hub into a cache with the hub's
// own layout (models--ORG--NAME/{blobs,snapshots/REV,refs/main}), with
// libcurl: HF_TOKEN as a bearer token, resumable (.incomplete files continue
// with a Range request), every file checked against the hub's hash (sha256
// for LFS files, the git blob sha1 otherwise). Only the files a checkpoint
// needs are fetched: config, weights (safetensors, else pytorch_model*.bin),
// tokenizer and generation files.
#pragma once

#include <filesystem>
#include <functional>
#include <string>

#include "common/environment.hpp"

namespace qjobs::model {

struct HubOptions {
  std::string endpoint = "https://huggingface.co";  // $HF_ENDPOINT
  std::string token;                                // $HF_TOKEN
  std::string revision = "main";
  std::filesystem::path cache;  // the hub cache folder (…/hub)
};

// Options from the environment: HF_ENDPOINT, HF_TOKEN, and the first of its
// hub caches ($QJOBS_CACHE_DIR/hub, else $HF_HUB_CACHE, $HF_HOME/hub,
// ~/.cache/huggingface/hub).
HubOptions hub_options(const Environment& env);

// Downloads `repo` ("ORG/NAME") and returns its snapshot folder. progress
// gets (bytes done, bytes total) across all files. Throws Error(not_found)
// for a missing repo or file, Error(invalid_input) for a gated/private repo
// without access, Error(data_corruption) when a file fails its hash, and
// Error(io) for network failures; every message names the file.
std::filesystem::path download_model(const std::string& repo, const HubOptions& o,
                                     const std::function<void(uint64_t, uint64_t)>& progress = {});

}  // namespace qjobs::model

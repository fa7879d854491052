// Turns a validated spec into stages (load -> quantize -> package -> report)
// and runs them, reporting through the job directory.
#pragma once

#include <filesystem>

#include "common/environment.hpp"

namespace qjobs::worker {

// Runs the job described by the YAML at `spec_path`, writing into `job_dir`.
// `env` is the worker's environment, read once by its main. Returns the
// worker exit code (common/job_state.hpp, worker_exit).
int run_job(const std::filesystem::path& spec_path, const std::filesystem::path& job_dir, const Environment& env);

// Writes the calibration token windows the job at `spec_path` would use
// (the same text, tokenizer, count, length and seed) to `out` as a
// safetensors file with one int64 tensor `input_ids` [n, seqlen], and prints
// their count, length and source as JSON: what a side-by-side benchmark feeds
// other tools so that they calibrate on the same tokens. Returns the worker
// exit code of the failure type (validation, model_load, data).
int write_calibration(const std::filesystem::path& spec_path, const std::filesystem::path& out, const Environment& env);

}  // namespace qjobs::worker

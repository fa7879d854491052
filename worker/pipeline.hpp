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

}  // namespace qjobs::worker

// The verify stage: a job reads its own packed output back with the format's
// reference loader and fails (error type VERIFY) when that is not the model
// the job computed. It answers "the checkpoint loads and produces garbage"
// before a user serves it.
//
// Two independent comparisons, for compressed-tensors (the format whose
// reference loader, compressed-tensors' own decompressors, installs from pip):
//   1. The weights. While the export writes each quantized Linear it records
//      checksums of the weight the algorithm computed, taken from the
//      algorithm's own quantized form before any packing: [sum |w|, then
//      sum w * sign_k(i), k = 0..3], float64, where element i (row-major) has
//      sign_k(i) = 1 - 2 * (((i * 2654435761 + k * 40503) mod 2^32) >> 16 & 1).
//      The reference decompresses every Linear from the file and computes the
//      same; |reference - job| must stay within tol * sum |w| (1e-9: float64
//      sums in another order; 2^-7 for NVFP4, which compressed-tensors
//      decompresses in bfloat16). A wrong scale, zero point, bit order or
//      Linear name shows here: the written file is not what was computed.
//   2. The function. Where the model has at most 2e9 parameters (and no MoE
//      experts, which transformers 5 fuses into one parameter), transformers
//      runs the decompressed model on fixed token windows and its logits are
//      compared with qjobs' own forward pass of the same file (weights only:
//      the libraries simulate activations with other conventions than the
//      serving kernels): 1e-4 relative (1e-2 for NVFP4). A reader that
//      disagrees with the reference shows here.
// The reference runs in a Python with compressed-tensors and transformers:
// QJOBS_REFERENCE_PYTHON, else the project's virtual environment the worker
// was built with; without one the stage is skipped with a warning.
// VERIFY: false turns it off.
#pragma once

#include <filesystem>
#include <string>
#include <vector>

#include <ATen/core/Tensor.h>
#include <nlohmann/json.hpp>

#include "common/environment.hpp"

namespace qjobs::worker {

// The checksums of one weight (any shape, any float dtype) described above.
std::vector<double> weight_checksums(const at::Tensor& w);

// What the export recorded for the verify stage: {"loader":
// "compressed-tensors", "linears": {name: {"checksums": [...], "tolerance": t}}}.
struct VerifyManifest {
  std::string loader;
  nlohmann::json linears = nlohmann::json::object();
  void add(const std::string& name, const at::Tensor& weight, double tolerance);
  bool empty() const { return linears.empty(); }
};

struct VerifyResult {
  bool ran = false;  // false: skipped (`skipped` says why)
  std::string skipped;
  std::string failure;    // empty when the reference agrees
  nlohmann::json record;  // versions, figures: the report's "verify"
};

// Reads `model_dir` with the reference loader and compares it with
// `manifest` and with qjobs' own forward pass of the same folder. `work`: a
// folder for the token windows, the reference's output and its log. The
// reference Python and ct_verify.py come from `env` (QJOBS_REFERENCE_PYTHON,
// QJOBS_VERIFY_SCRIPT), else the build's defaults.
VerifyResult verify_packed(const std::filesystem::path& model_dir, const VerifyManifest& manifest,
                           const std::filesystem::path& work, const Environment& env);

}  // namespace qjobs::worker

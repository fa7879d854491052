// SequentialMSE's parameters: AIMET's SeqMseParams under their spec
// spelling (num_candidates -> NUM_CANDIDATES, ...), over the weight-only keys.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "spec/algorithm_catalog.hpp"
#include "jobs/quant/weight_only_params.hpp"

namespace qjobs::quant {

struct SeqMseParams : WeightOnlyParams {
  int64_t num_candidates = 20;         // NUM_CANDIDATES: range candidates per channel (group), 1..1000
  std::optional<int64_t> num_batches;  // NUM_BATCHES: calibration windows used; absent = all
  std::string inp_symmetry = "symqt";  // INP_SYMMETRY: symqt (quantized model's inputs) or symfp (float model's)
  std::string loss_fn = "mse";         // LOSS_FN: mse, l1 or sqnr
  int64_t a_bit = 0;                   // A_BIT: simulated static input bits; 0 = weight-only, else 2..16
  bool lpbq = false;                   // LPBQ: AIMET's low-power blockwise quantization
};

const ParamTable<SeqMseParams>& seq_mse_params();
AlgorithmInfo seq_mse_info();

}  // namespace qjobs::quant

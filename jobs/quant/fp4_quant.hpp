// NVFP4 and MXFP4 (ALGORITHM: NVFP4, MXFP4): every decoder Linear's weight
// in FP4 E2M1 blocks along its input (jobs/numeric/fp4.hpp: NVFP4 blocks of 16
// with E4M3 scales under a per-tensor float32 global scale, MXFP4 blocks of
// 32 with E8M0 power-of-two scales), rounded to nearest as llm-compressor's
// NVFP4 / MXFP4 presets do; NVFP4's global scale is shared by the Linears
// a serving engine fuses (q/k/v, gate/up), from their largest magnitude. ACT: none is W4A16; dynamic is W4A4: inputs
// are quantized in the same blocks at run time, and NVFP4's input global scale (448 * 6 / max|x|) is calibrated on the
// calibration data. Exported as compressed-tensors nvfp4-pack-quantized / mxfp4-pack-quantized.
#pragma once

#include "jobs/quant/algorithm.hpp"
#include "jobs/numeric/fp4.hpp"

namespace qjobs::quant {

class Fp4Algorithm final : public QuantAlgorithm {
 public:
  explicit Fp4Algorithm(numeric::Fp4Kind kind) : kind_(kind) {}
  QuantOutput run(const QuantInputs& in) override;

 private:
  numeric::Fp4Kind kind_;
};

}  // namespace qjobs::quant

// FP8 W8A8 (E4M3): weights with one scale per output channel (WEIGHT_SCALE:
// channel) or per tensor (tensor), scale = max|w| / 448, rounded with the
// codec in fp8.hpp; activations E4M3 per token (ACT: dynamic) or per tensor
// with a scale calibrated as max|x| / 448 (static); with kv_cache: true, the
// KV cache in E4M3 with per-layer k_scale / v_scale = max / 448 over the
// calibration tokens (for keys, the largest norm of a rotary pair, which
// bounds every post-RoPE value, so nothing is clipped). Packaged as fake
// quant with the activation and KV settings in config.json
// ("qjobs_quantization"), which the runtime simulates when it loads it.
#pragma once

#include "jobs/quant/algorithm.hpp"

namespace qjobs::quant {

class Fp8Algorithm final : public QuantAlgorithm {
 public:
  QuantOutput run(const QuantInputs& in) override;
};

}  // namespace qjobs::quant

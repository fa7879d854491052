// Simulated quantization of activations and of the KV cache inside the
// forward pass: each value is replaced by what the integer or FP8 kernel
// would compute with, dequantized, in the compute dtype.
//
// Config (JSON, as recorded in a checkpoint's config.json under
// "qjobs_quantization", and as algorithms produce it):
//   activations: {"<linear name>": {"kind": K, "bits": 8, "scale": s}, ...}
//     K = int_token   symmetric integer, one scale per token (dynamic)
//         int_tensor  symmetric integer, one calibrated scale `scale`
//         fp8_token   FP8 E4M3, one scale per token (amax / 448)
//         fp8_tensor  FP8 E4M3, one calibrated scale `scale`
//         nvfp4       E2M1 in blocks of 16 with E4M3 block scales (dynamic)
//                     under the calibrated global scale `scale` (448 * 6 / amax)
//         mxfp4       E2M1 in blocks of 32 with E8M0 block scales (dynamic)
//   kv_cache: {"kind": "int", "bits": 4|8, "group": 0 (= head_dim)} asymmetric
//             per token per head (per group of channels), or
//             {"kind": "fp8", "k_scale": [per layer], "v_scale": [per layer]}
#pragma once

#include <string>
#include <vector>

#include <ATen/ATen.h>
#include <nlohmann/json.hpp>

namespace qjobs::model {

struct ActQuant {
  enum class Kind { none, int_token, int_tensor, fp8_token, fp8_tensor, nvfp4, mxfp4 };
  Kind kind = Kind::none;
  int bits = 8;      // integer kinds: 2..16
  double scale = 0;  // *_tensor kinds: the calibrated scale (> 0); nvfp4: the global scale

  // x ([..., in]) as the quantized kernel sees it; identity for none.
  at::Tensor apply(const at::Tensor& x) const;
  nlohmann::json to_json() const;
  // Throws Error(invalid_input) naming the bad field.
  static ActQuant from_json(const nlohmann::json& j);
};

struct KvQuant {
  enum class Kind { none, integer, fp8 };
  Kind kind = Kind::none;
  int bits = 8;                          // integer: 2..8
  int64_t group = 0;                     // integer: channels per group, 0 = the whole head
  std::vector<double> k_scale, v_scale;  // fp8: per layer

  // k or v ([B, H, T, head_dim]) of layer `layer` as the cache stores it.
  at::Tensor apply(const at::Tensor& t, int64_t layer, bool is_key) const;
  nlohmann::json to_json() const;
  static KvQuant from_json(const nlohmann::json& j);
};

}  // namespace qjobs::model

// GPTQ (Frantar et al., 2023): per Linear, the Hessian H = 2/n X^T X of its
// calibration inputs, damping `DAMP_PERCENT` (0.01) of the mean diagonal,
// the Cholesky factor of H^-1, columns quantized left to right with the
// error spread over the columns not yet quantized, in lazy blocks of
// `BLOCK_SIZE` (128) columns; groups along the input (Q_GROUP_SIZE), act-order
// (DESC_ACT: columns by decreasing H diagonal), static groups (STATIC_GROUPS:
// group parameters from the unpermuted weight), true-sequential order inside a
// block (q,k,v -> o -> gate,up -> down), and the next block's inputs taken
// from the quantized block. Ranges go through zero (GPTQ's convention).
// W_FORMAT nvfp4 / mxfp4: the same loop on the FP4 grid (blocks of 16 with
// E4M3 scales under a global scale from the original weight, or blocks of 32
// with E8M0 scales), each block's scale from its columns as GPTQ has updated
// them, as llm-compressor's GPTQ with the NVFP4 / MXFP4 schemes does.
#pragma once

#include <optional>

#include "jobs/quant/algorithm.hpp"
#include "jobs/quant/gptq_params.hpp"
#include "jobs/quant/quantizer.hpp"

namespace qjobs::quant {

struct GptqResult {
  at::Tensor weight;        // dequantized, float32 [out, in]
  at::Tensor g_idx;         // int32 [in]: the group of every input column
  numeric::IntWeight ints;  // the same weight as codes, scales and zeros
};

// A group's quantization grid for its rows: value = (code - zero) * scale
// with codes in [lo, hi] (each [rows, 1]; lo/hi undefined = [0, 2^b - 1]).
// With fp4, the grid is E2M1 times `scale` (value = e2m1(w / scale) * scale,
// codes are E2M1 codes; zero, lo and hi unused): NVFP4 / MXFP4 weights.
struct GroupGrid {
  at::Tensor scale, zero, lo, hi;
  bool fp4 = false;
};
// The grid of group `group` (columns of the weight as GPTQ has updated it so
// far, [rows, cols]); replaces the through-zero min/max grid, e.g. for
// QoQ's progressive grid with clipping.
using GroupGridFn = std::function<GroupGrid(const at::Tensor& cols, int64_t group)>;

// GPTQ's Hessian of a Linear's calibration inputs x [tokens, in]:
// H = 2/n X^T X, float32 [in, in].
at::Tensor gptq_hessian(const at::Tensor& x);

// Quantizes one Linear weight with Hessian H (float32 [in, in]). With
// `grid`, act_order and static_groups must be false.
GptqResult gptq_quantize(const at::Tensor& w, at::Tensor H, const WeightQuantConfig& cfg, double damp,
                         int64_t block_size, bool act_order, bool static_groups, const GroupGridFn* grid = nullptr);

class GptqAlgorithm final : public QuantAlgorithm {
 public:
  // `given`: typed parameters that replace the section's (LMQuant's presets
  // hand their own); none: the section in QuantInputs::params.
  explicit GptqAlgorithm(std::optional<GptqParams> given = std::nullopt) : given_(std::move(given)) {}
  QuantOutput run(const QuantInputs& in) override;

 private:
  std::optional<GptqParams> given_;
};

}  // namespace qjobs::quant

#include "jobs/quant/lmquant_params.hpp"

#include <string>
#include <vector>

#include "jobs/quant/weight_only_params.hpp"

namespace qjobs::quant {
namespace {

ParamSpec smooth_branch(std::string name, std::string desc) {
  return param::section(std::move(name), std::move(desc),
                 {
                     param::number("alpha", "smoothing exponent on activations", nullptr, 0, 1),
                     param::number("beta", "smoothing exponent on weights (negative: 1 - alpha)", nullptr),
                     param::string("strategy", "search strategy", nullptr, {"Manual", "GridSearch"}),
                     param::integer("num_grids", "grid points of the search", nullptr, 1, 1000),
                     param::string("outputs_device", "where calibration outputs are kept", nullptr,
                            {"cpu", "cuda", "auto"}),
                 });
}

}  // namespace

const ParamTable<LmQuantParams>& lmquant_params() {
  static const auto t = [] {
  const std::vector<std::string> dtypes = {"float16", "bfloat16", "float32", "torch.float16",
                                           "torch.bfloat16", "torch.float32"};
    return ParamTable<LmQuantParams>()
      .add(&LmQuantParams::save_model, param::boolean("save_model", "package the quantized checkpoint", nullptr))
      .add(&LmQuantParams::keep_scales, param::boolean("keep_scales", "keep the scales in the checkpoint", nullptr))
      .add(&LmQuantParams::loads_with_qserve, param::boolean("loads_with_qserve", "pack for the QServe runtime", nullptr))
      .add(&LmQuantParams::dtype, param::string("dtype", "compute dtype of calibration", nullptr, dtypes))
      .add(&LmQuantParams::quant_type, param::string("quant_type", "QoQ preset", nullptr,
             {"g128", "gchn", "sq_dynamic", "sq_static", "awq", "gptq"}))
      .add(&LmQuantParams::quant, param::section("quant", "QoQ quantization settings (deepcompressor's quant.* keys); unset keys keep the preset",
              {
                  param::string("develop_dtype", "dtype of statistics", nullptr, dtypes),
                  param::boolean("enable_rotation", "Hadamard rotation of the residual stream and of values per head", nullptr),
                  param::section("rotation", "rotation",
                          {param::boolean("random", "random signs on the Hadamard matrix", nullptr)}),
                  param::boolean("enable_smooth", "all smoothing (xw and yx)", nullptr),
                  param::section("smooth", "smoothing",
                          {param::boolean("enable_xw", "smooth v -> o_proj and up -> down_proj", nullptr),
                           param::boolean("enable_yx", "SmoothAttention on keys after RoPE", nullptr),
                           smooth_branch("xw", "activation -> weight smoothing (v -> o, up -> down)"),
                           smooth_branch("yx", "SmoothAttention on keys (beta: exponent on queries)")}),
                  param::boolean("enable_reorder", "reorder down_proj's input channels by magnitude", nullptr),
                  param::section("wgts", "weight quantization",
                          {param::string("dtype", "weight type", nullptr, {"uint4", "uint8"}),
                           param::integer("group_size", "columns per group; -1 = per output channel", nullptr, -1, 1 << 20),
                           param::boolean("progressive", "int8 per channel in [-119, 119], then integer group scales", nullptr),
                           param::boolean("enable_calib_range", "activation-aware clipping", nullptr),
                           param::section("calib_range", "activation-aware clipping",
                                   {param::number("max_shrink", "largest shrink of a group's range", nullptr, 0, 0.99),
                                    param::integer("num_grids", "grid points of the shrink search", nullptr, 1, 1000),
                                    param::string("outputs_device", "where outputs are kept", nullptr,
                                           {"cpu", "cuda", "auto"})}),
                           param::boolean("enable_kernel_gptq", "GPTQ on the QoQ grid", nullptr),
                           param::section("kernel_gptq", "GPTQ",
                                   {param::number("damp_percentage", "damping as a share of the mean Hessian diagonal", nullptr, 0, 1),
                                    param::integer("block_size", "columns per lazy update block", nullptr, 1, 1 << 16)})}),
                  param::section("ipts", "input activations of the Linears",
                          {param::string("dtype", "activation type", nullptr, {"sint8", "sint16", "none", "null"}),
                           param::boolean("static", "one calibrated scale per tensor instead of one per token", nullptr)}),
                  param::section("opts", "KV cache (asymmetric, per token per head)",
                          {param::string("dtype", "KV type", nullptr, {"uint4", "uint8", "none", "null"}),
                           param::integer("group_size", "channels per group; 0 = the whole head", nullptr, 0, 1 << 16)}),
                  param::section("reorder", "channel reordering",
                          {param::string("outputs_device", "where outputs are kept", nullptr,
                                  {"cpu", "cuda", "auto"})}),
              }))
      .add(&LmQuantParams::layer_overrides, layer_overrides_spec(true))
      .add(&LmQuantParams::eval, param::section("eval", "evaluation after quantization",
              {
                  param::string_list("tasks", "tasks such as wikitext or arc_challenge:25"),
                  param::integer("max_seq_length", "longest sequence evaluated", nullptr, 1, 1 << 20),
                  param::string("evaluator", "evaluation harness", nullptr, {"lm_eval", "gptq"}),
              }));
  }();
  return t;
}

AlgorithmInfo lmquant_info() {
  return {"LMQuant",
          "QoQ W4A8KV4 (g128, gchn) with rotation, smoothing and GPTQ; sq_*, awq, gptq presets by delegation; "
          "compressed-tensors W4A8",
          true, lmquant_params().specs(), 128, 512};
}

}  // namespace qjobs::quant

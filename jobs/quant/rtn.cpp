#include "jobs/quant/rtn.hpp"
#include "jobs/quant/rtn_params.hpp"

#include "jobs/model/checkpoint.hpp"
#include "jobs/model/llama_model.hpp"
#include "jobs/model/mapped_file.hpp"
#include "jobs/quant/calibration.hpp"
#include "jobs/quant/layer_plan.hpp"
#include "jobs/quant/quantizer.hpp"

namespace qjobs::quant {

QuantOutput RtnAlgorithm::run(const QuantInputs& in) {
  const auto& ckpt = *in.ckpt;
  const auto& params = in.params;
  const RtnParams p = rtn_params().parse(params);
  const auto& progress = in.progress;

  const std::vector<std::string> targets =
      model::quantized_linear_weights(model::ModelConfig::from_json(ckpt.config()));

  QuantOutput out;
  LayerSpill spill(in.state_dir, out, in.keep_int_codes);
  const auto total = static_cast<int64_t>(targets.size());
  progress(0, total, "");
  for (int64_t i = 0; i < total; ++i) {
    const auto& name = targets[static_cast<std::size_t>(i)];
    const auto plan = quant_for(in.plan, name.substr(0, name.size() - 7), RangeMode::min_max);
    if (plan.skip) {
      spill.after(name, i + 1 == total ? "" : targets[static_cast<std::size_t>(i + 1)]);
      progress(i + 1, total, name);
      continue;
    }
    const auto& cfg = plan.cfg;
    const at::Tensor w = ckpt.tensor(name);
    const at::Tensor w32 = w.to(in.compute.device, at::kFloat);
    model::release_mapped(w);
    const auto qw = quantize_weight(w32, cfg);
    const at::Tensor deq = qw.dequantize();
    out.int_weights[name.substr(0, name.size() - 7)] = to_int_weight(qw, cfg.bits);
    const double norm = w32.norm().item<double>();
    out.layer_errors.push_back(
        {name, (deq - w32).norm().item<double>() / std::max(norm, 1e-30), (deq - w32).abs().max().item<double>(), -1});
    if (in.keep_float_weights) out.replaced[name] = deq.to(w.scalar_type());
    spill.after(name, i + 1 == total ? "" : targets[static_cast<std::size_t>(i + 1)]);
    progress(i + 1, total, name);
  }
  out.quantization_config = {
      {"quant_method", "rtn"},
      {"format", "fake_quant"},
      {"bits", p.w_bit},
      {"group_size", p.group_size},
      {"zero_point", p.zero_point},
      {"overrides", p.layer_overrides},
      {"modules", "the decoder blocks' Linears (routers excluded)"},
  };
  return out;
}

std::unique_ptr<QuantAlgorithm> make_rtn() { return std::make_unique<RtnAlgorithm>(); }

}  // namespace qjobs::quant

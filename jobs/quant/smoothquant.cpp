#include "jobs/quant/smoothquant.hpp"
#include "jobs/quant/smoothquant_params.hpp"

#include <cmath>
#include <ATen/core/grad_mode.h>

#include "common/error.hpp"
#include "jobs/model/checkpoint.hpp"
#include "jobs/quant/calibration.hpp"
#include "jobs/quant/layer_plan.hpp"
#include "jobs/quant/quantizer.hpp"

namespace qjobs::quant {

at::Tensor smooth_linears(at::Tensor& norm_weight, const std::vector<model::Linear*>& linears,
                          const at::Tensor& act_max, double alpha, const std::vector<model::Linear*>& followers,
                          double norm_offset) {
  std::vector<at::Tensor> ws;
  for (auto* l : linears) ws.push_back(l->weight.to(at::kFloat).abs().amax(0));
  const auto w_max = at::stack(ws).amax(0).clamp_min(1e-5);
  const auto s = (act_max.to(at::kFloat).clamp_min(1e-5).pow(alpha) / w_max.pow(1 - alpha)).clamp_min(1e-5);
  norm_weight = ((norm_weight.to(at::kFloat) + norm_offset) / s - norm_offset).to(norm_weight.scalar_type());
  for (auto* l : linears) l->weight = (l->weight.to(at::kFloat) * s).to(l->weight.scalar_type());
  for (auto* l : followers) l->weight = (l->weight.to(at::kFloat) * s).to(l->weight.scalar_type());
  return s;
}

QuantOutput SmoothQuantAlgorithm::run(const QuantInputs& in) {
  at::NoGradGuard no_grad;
  const SmoothQuantParams p = given_ ? *given_ : smoothquant_params().parse(in.params);
  const double alpha = p.alpha;
  const std::string act = p.act;
  const bool smoothing = p.smoothing;
  const std::string wscale = p.weight_scale;
  if (wscale != "channel" && wscale != "tensor")
    throw Error(ErrorKind::invalid_input, "WEIGHT_SCALE must be channel or tensor");
  if (act != "dynamic" && act != "static") throw Error(ErrorKind::invalid_input, "ACT must be dynamic or static");
  const auto ids = in.calibration();
  auto model = model::LlamaModel::load(*in.ckpt, in.compute);
  QuantOutput out;
  out.w8a8_float = false;
  nlohmann::json activations = nlohmann::json::object();
  // Static activation scales live in `activations`, not in the saved blocks: no resume.
  BlockLoopOptions loop;
  loop.resumable = false;
  run_blocks(in, model, ids, out, loop, [&](BlockStep& step) {
    const int64_t l = step.index;
    auto& layer = step.layer;
    auto& engine = step.engine;
    const std::string& prefix = step.prefix;
    const auto inputs = layer.input_names();
    const auto input_of = layer.input_sources();
    auto xs = engine.capture_inputs(l, inputs);
    if (smoothing)
      for (auto& g : layer.norm_groups()) {
        // Every reader of the norm is scaled; routers stay in full precision.
        std::vector<model::Linear*> quantized, followers;
        for (auto& r : g.readers) (r.quantized ? quantized : followers).push_back(r.linear);
        smooth_linears(*g.norm, quantized, xs.at(g.input).abs().amax(0), alpha, followers, model.config().norm_offset);
      }
    step.next = engine.forward(l);
    if (smoothing) xs = engine.capture_inputs(l, inputs);  // smoothed inputs: static scales, errors
    std::vector<LayerError> errs;
    for (auto& [name, lin] : layer.linears()) {
      const auto plan = quant_for(in.plan, prefix + name, RangeMode::through_zero);
      if (plan.skip) {
        out.ignored.push_back(prefix + name);
        continue;
      }
      WeightQuantConfig cfg;
      cfg.bits = 8;
      cfg.group_size = -1;
      cfg.zero_point = false;
      cfg.range = RangeMode::through_zero;
      const auto w = lin->weight.to(at::kFloat);
      // Per tensor (Quark's int8 W8A8 recipe): one scale, max|W| / 127.
      const auto qw = quantize_weight(wscale == "tensor" ? w.reshape({1, -1}) : w, cfg);
      const auto wq = qw.dequantize().reshape(w.sizes());
      out.w8a8_weights[prefix + name] = {qw.codes.reshape(w.sizes()).to(at::kChar),
                                         wscale == "tensor" ? qw.scales.reshape({1}) : qw.scales.reshape({-1, 1}),
                                         at::Tensor()};
      const auto& x = xs.at(input_of.at(name));
      model::ActQuant aq;
      if (plan.a_bits > 0) {
        aq.kind = act == "dynamic" ? model::ActQuant::Kind::int_token : model::ActQuant::Kind::int_tensor;
        aq.bits = plan.a_bits;
        if (act == "static") {
          aq.scale = std::max(x.abs().max().item<double>() / (std::ldexp(1.0, aq.bits - 1) - 1), 1e-8);
          out.w8a8_weights[prefix + name].input_scale = at::full({1}, aq.scale, w.options());
        }
        activations[prefix + name] = aq.to_json();
      }
      lin->weight = wq.to(lin->weight.scalar_type());
      lin->act = aq;
      // Output error of the W8A8 Linear against the smoothed float one.
      const auto y = at::linear(x, w), yq = at::linear(aq.apply(x), wq);
      errs.push_back({prefix + name, (wq - w).norm().item<double>() / std::max(w.norm().item<double>(), 1e-30),
                      (wq - w).abs().max().item<double>(),
                      (yq - y).norm().item<double>() / std::max(y.norm().item<double>(), 1e-30)});
    }
    step.errors = std::move(errs);
  });
  out.quantization_config = {{"quant_method", "smoothquant"},
                             {"format", "fake_quant"},
                             {"alpha", alpha},
                             {"smoothing", smoothing},
                             {"weights", {{"bits", 8}, {"strategy", wscale}, {"symmetric", true}}},
                             {"act", act},
                             {"act_bits", p.a_bit},
                             {"activations", activations},
                             {"overrides", p.layer_overrides}};
  return out;
}

std::unique_ptr<QuantAlgorithm> make_smoothquant() { return std::make_unique<SmoothQuantAlgorithm>(); }

}  // namespace qjobs::quant

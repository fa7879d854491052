#include "jobs/quant/fp8_w8a8.hpp"
#include "jobs/quant/fp8_params.hpp"

#include <ATen/core/grad_mode.h>

#include "common/error.hpp"
#include "jobs/model/checkpoint.hpp"
#include "jobs/quant/calibration.hpp"
#include "jobs/numeric/fp8.hpp"
#include "jobs/quant/layer_plan.hpp"

namespace qjobs::quant {

QuantOutput Fp8Algorithm::run(const QuantInputs& in) {
  at::NoGradGuard no_grad;
  const Fp8Params p = fp8_params().parse(in.params);
  const std::string act = p.act;
  const std::string wscale = p.weight_scale;
  const bool kv = p.kv_cache;
  if (act != "dynamic" && act != "static") throw Error(ErrorKind::invalid_input, "ACT must be dynamic or static");
  if (wscale != "channel" && wscale != "tensor")
    throw Error(ErrorKind::invalid_input, "WEIGHT_SCALE must be channel or tensor");
  const bool calibrate = act == "static" || kv;
  auto model = model::LlamaModel::load(*in.ckpt, in.compute);
  QuantOutput out;
  nlohmann::json activations = nlohmann::json::object();
  std::vector<double> k_scale, v_scale;
  const int64_t hd = model.config().head_dim;
  const auto& names = model.config().fam().names;
  // The KV scales are measured on the k and v projections' outputs: a fused
  // qkv or a norm between k_proj and the cache would need the cache's own values.
  if (kv && (!names.qkv.empty() || !names.k_norm.empty()))
    throw Error(ErrorKind::invalid_input, "an FP8 KV cache is calibrated from k_proj / v_proj outputs, which " +
                                              model.config().fam().hf_class +
                                              " does not cache as they are (fused qkv or k_norm)");
  BlockLoopOptions loop;
  loop.resumable = false;  // static scales are not in the saved blocks
  run_blocks(in, model, calibrate ? in.calibration() : at::Tensor(), out, loop, [&](BlockStep& step) {
    const std::string& prefix = step.prefix;
    auto& layer = step.layer;
    std::map<std::string, at::Tensor> xs;
    if (!calibrate) {
      step.next = std::vector<at::Tensor>{};
    } else {
      auto& engine = step.engine;
      const int64_t l = step.index;
      xs = engine.capture_inputs(l, layer.input_names());
      if (kv) {
        // The k and v projections' outputs, from a hook on the same inputs:
        // running maxima of |v| and of each rotary pair's (i, i + hd/2) norm,
        // which bounds the key after RoPE. Kept on the device until the block ends.
        at::Tensor k_max, v_max;
        const model::LinearHook hook = [&](const std::string& name, const at::Tensor&, const at::Tensor& y) {
          const auto f = y.to(at::kFloat);
          if (name == prefix + names.k) {
            const auto m = f.reshape({-1, 2, hd / 2}).pow(2).sum(1).sqrt().max();
            k_max = k_max.defined() ? at::maximum(k_max, m) : m;
          }
          if (name == prefix + names.v) {
            const auto m = f.abs().max();
            v_max = v_max.defined() ? at::maximum(v_max, m) : m;
          }
          return y;
        };
        step.next = engine.forward(l, &hook);
        k_scale.push_back(std::max(k_max.item<double>() / numeric::kFp8E4m3Max, 1e-12));
        v_scale.push_back(std::max(v_max.item<double>() / numeric::kFp8E4m3Max, 1e-12));
      } else {
        step.next = engine.forward(l);
      }
    }
    const auto input_of = layer.input_sources();
    std::vector<LayerError> errs;
    for (auto& [name, lin] : layer.linears()) {
      if (quant_for(in.plan, prefix + name, RangeMode::through_zero).skip) {
        out.ignored.push_back(prefix + name);
        continue;
      }
      const auto w = lin->weight.to(at::kFloat);
      const auto amax = wscale == "channel" ? w.abs().amax(1, true) : w.abs().max().reshape({1, 1});
      const auto s = (amax / numeric::kFp8E4m3Max).clamp_min(1e-12);
      const auto codes = numeric::fp8_e4m3_encode(w / s);
      const auto wq = numeric::fp8_e4m3_decode(codes) * s;
      model::ActQuant aq;
      aq.kind = act == "dynamic" ? model::ActQuant::Kind::fp8_token : model::ActQuant::Kind::fp8_tensor;
      if (act == "static")
        aq.scale = std::max(xs.at(input_of.at(name)).abs().max().item<double>() / numeric::kFp8E4m3Max, 1e-12);
      lin->weight = wq.to(lin->weight.scalar_type());
      lin->act = aq;
      numeric::W8A8Weight fw{codes, wscale == "channel" ? s : s.reshape({1}), at::Tensor()};
      if (act == "static") fw.input_scale = at::full({1}, aq.scale, w.options());
      out.w8a8_weights[prefix + name] = fw;
      activations[prefix + name] = aq.to_json();
      errs.push_back(linear_error(prefix + name, w, wq,
                                  xs.count(input_of.at(name)) ? xs.at(input_of.at(name)) : at::Tensor(), aq));
    }
    step.errors = std::move(errs);
  });
  model::KvQuant kvq;
  if (kv) {
    out.k_scales = k_scale;
    out.v_scales = v_scale;
    kvq.kind = model::KvQuant::Kind::fp8;
    kvq.k_scale = k_scale;
    kvq.v_scale = v_scale;
  }
  out.quantization_config = {{"quant_method", "fp8"},
                             {"format", "fake_quant"},
                             {"weights", {{"type", "float"}, {"num_bits", 8}, {"strategy", wscale}}},
                             {"act", act},
                             {"activations", activations},
                             {"kv_cache", kvq.to_json()}};
  return out;
}

std::unique_ptr<QuantAlgorithm> make_fp8() { return std::make_unique<Fp8Algorithm>(); }

}  // namespace qjobs::quant

#include "jobs/quant/fp4_quant.hpp"
#include "jobs/quant/fp4_params.hpp"

#include <ATen/core/grad_mode.h>

#include "common/error.hpp"
#include "jobs/model/checkpoint.hpp"
#include "jobs/quant/calibration.hpp"
#include "jobs/quant/layer_plan.hpp"

namespace qjobs::quant {

QuantOutput Fp4Algorithm::run(const QuantInputs& in) {
  at::NoGradGuard no_grad;
  const Fp4Params p = fp4_params(kind_ == numeric::Fp4Kind::nvfp4 ? "16" : "32").parse(in.params);
  const std::string act = p.act;
  if (act != "none" && act != "dynamic") throw Error(ErrorKind::invalid_input, "ACT must be none or dynamic");
  const bool w4a4 = act == "dynamic";
  // Only NVFP4's W4A4 has a static part: the inputs' global scale.
  const bool calibrate = w4a4 && kind_ == numeric::Fp4Kind::nvfp4;
  const char* name_of = kind_ == numeric::Fp4Kind::nvfp4 ? "nvfp4" : "mxfp4";
  auto model = model::LlamaModel::load(*in.ckpt, in.compute);
  QuantOutput out;
  nlohmann::json activations = nlohmann::json::object();
  BlockLoopOptions loop;
  loop.resumable = false;  // the input scales are not in the saved blocks
  run_blocks(in, model, calibrate ? in.calibration() : at::Tensor(), out, loop, [&](BlockStep& step) {
    const std::string& prefix = step.prefix;
    std::map<std::string, at::Tensor> xs;
    if (calibrate) {
      xs = step.engine.capture_inputs(step.index, step.layer.input_names());
      step.next = step.engine.forward(step.index);
    } else {
      step.next = std::vector<at::Tensor>{};
    }
    const auto input_of = step.layer.input_sources();
    // NVFP4: one global scale per projection a runtime fuses (the Linears
    // reading one input: q/k/v, gate/up, an expert's gate/up), from the
    // largest magnitude over them.
    std::map<std::string, double> amax;
    for (auto& [name, lin] : step.layer.linears()) {
      auto& a = amax[input_of.at(name)];
      a = std::max(a, lin->weight.to(at::kFloat).abs().max().item<double>());
    }
    std::vector<LayerError> errs;
    for (auto& [name, lin] : step.layer.linears()) {
      if (quant_for(in.plan, prefix + name, RangeMode::min_max).skip) {
        out.ignored.push_back(prefix + name);
        continue;
      }
      const auto w = lin->weight.to(at::kFloat);
      const auto b = numeric::fp4_quantize(
          w, kind_, kind_ == numeric::Fp4Kind::nvfp4 ? numeric::nvfp4_global_scale(amax.at(input_of.at(name))) : 0);
      numeric::Fp4Weight fw{kind_, b.codes, b.scale, b.global_scale, 0, w4a4};
      const auto wq = fw.dequantize();
      model::ActQuant aq;
      if (w4a4) {
        aq.kind = kind_ == numeric::Fp4Kind::nvfp4 ? model::ActQuant::Kind::nvfp4 : model::ActQuant::Kind::mxfp4;
        aq.bits = 4;
        if (calibrate) {
          aq.scale = numeric::nvfp4_global_scale(xs.at(input_of.at(name)).abs().max().item<double>());
          fw.input_global_scale = aq.scale;
        }
      }
      lin->weight = wq.to(lin->weight.scalar_type());
      lin->act = aq;
      out.fp4_weights[prefix + name] = fw;
      activations[prefix + name] = aq.to_json();
      errs.push_back(linear_error(prefix + name, w, wq,
                                  xs.count(input_of.at(name)) ? xs.at(input_of.at(name)) : at::Tensor(), aq));
    }
    step.errors = std::move(errs);
  });
  out.quantization_config = {
      {"quant_method", name_of},
      {"format", "fake_quant"},
      {"weights",
       {{"type", "float"},
        {"num_bits", 4},
        {"block", numeric::fp4_block(kind_)},
        {"scale", kind_ == numeric::Fp4Kind::nvfp4 ? "E4M3 per block, float32 global" : "E8M0 per block"}}},
      {"act", act},
      {"activations", activations},
      {"overrides", p.layer_overrides}};
  return out;
}

std::unique_ptr<QuantAlgorithm> make_nvfp4() { return std::make_unique<Fp4Algorithm>(numeric::Fp4Kind::nvfp4); }
std::unique_ptr<QuantAlgorithm> make_mxfp4() { return std::make_unique<Fp4Algorithm>(numeric::Fp4Kind::mxfp4); }

}  // namespace qjobs::quant

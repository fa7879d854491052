#include "jobs/quant/quarot.hpp"
#include "jobs/quant/quarot_params.hpp"

#include <filesystem>
#include <ATen/core/grad_mode.h>

#include "common/error.hpp"
#include "jobs/model/checkpoint.hpp"
#include "jobs/quant/calibration.hpp"
#include "jobs/quant/gptq.hpp"
#include "jobs/quant/layer_plan.hpp"
#include "jobs/quant/transforms.hpp"

namespace qjobs::quant {
namespace {

namespace fs = std::filesystem;

// One QuaRot run: the rotated resident model and its outputs.
struct QuarotRun {
  const QuantInputs& in;
  const QuarotParams& p;
  model::LlamaModel& model;
  QuantOutput& out;

  void rotate() {
    const auto& fam = model.config().fam();
    if (!fam.llama_layout() || !fam.rotation_folds)
      throw Error(ErrorKind::invalid_input,
                  "QuaRot's rotations fold into Llama-layout blocks with norms in front "
                  "of their Linears (Llama, Mistral, Qwen2); " +
                      fam.hf_class + " is not one: use RTN, GPTQ or AutoAWQ for it");
    const uint64_t seed = p.rotation == "hadamard" ? 0 : static_cast<uint64_t>(p.seed);
    fuse_norms(model);
    rotate_residual(model, rotation_matrix(model.config().hidden, seed));
    // A different seed for the heads: their signs are independent of the residual's.
    rotate_value_heads(model, rotation_matrix(model.config().head_dim, seed == 0 ? 0 : seed + 0x9e37));
  }

  // Round to nearest on the plan's grid; the Linear's errors.
  std::optional<LayerError> rtn_linear(const std::string& full, model::Linear& lin) {
    const auto plan = quant_for(in.plan, full, RangeMode::min_max);
    if (plan.skip) return std::nullopt;
    const at::Tensor w = lin.weight.to(at::kFloat);
    const auto qw = quantize_weight(w, plan.cfg);
    const at::Tensor deq = qw.dequantize();
    out.int_weights[full] = to_int_weight(qw, plan.cfg.bits);
    lin.weight = deq.to(lin.weight.scalar_type());
    return linear_error(full, w, deq, at::Tensor(), model::ActQuant{});
  }

  // RTN needs no inputs: block by block over the resident model, each
  // block's outputs spilled to the state folder as it is done.
  void rtn_blocks() {
    fs::path scratch;
    if (!in.state_dir.empty()) {
      scratch = in.state_dir / "scratch";
      fs::remove_all(scratch);
      fs::create_directories(scratch);
    }
    const int64_t L = model.config().layers;
    in.progress(0, L, "");
    for (int64_t l = 0; l < L; ++l) {
      const std::string prefix = "model.layers." + std::to_string(l) + ".";
      for (auto& [name, lin] : model.layers()[static_cast<std::size_t>(l)].linears())
        if (auto e = rtn_linear(prefix + name, *lin)) out.layer_errors.push_back(*e);
      collect_block(*in.ckpt, model, l, out.replaced);
      if (!in.keep_float_weights) drop_float_copies(out, prefix);
      if (!in.keep_int_codes) drop_int_codes(out, prefix);
      if (!scratch.empty()) spill_outputs(out, prefix, scratch / ("block-" + std::to_string(l) + ".safetensors"));
      in.progress(l + 1, L, "block " + std::to_string(l));
    }
  }

  // GPTQ on the rotated model: each sequential group's inputs after the
  // groups before it are quantized.
  void gptq_blocks() {
    const auto ids = in.calibration();
    run_blocks(in, model, ids, out, {}, [&](BlockStep& step) {
      std::map<std::string, model::Linear*> linears;
      for (auto& [name, lin] : step.layer.linears()) linears[name] = lin;
      for (const auto& group : step.layer.sequential_groups()) {
        const auto xs = step.engine.capture_inputs(step.index, group);
        for (const auto& name : group) {
          const std::string full = step.prefix + name;
          const auto plan = quant_for(in.plan, full, RangeMode::through_zero);
          if (plan.skip) continue;
          model::Linear& lin = *linears.at(name);
          const auto& x = xs.at(name);
          const auto w = lin.weight.to(at::kFloat);
          auto r = gptq_quantize(w, gptq_hessian(x), plan.cfg, p.damp_percent, 128, false, false);
          out.int_weights[full] = r.ints;
          step.errors.push_back(linear_error(full, w, r.weight, x, model::ActQuant{}));
          lin.weight = r.weight.to(lin.weight.scalar_type());
        }
      }
    });
  }
};

}  // namespace

QuantOutput QuarotAlgorithm::run(const QuantInputs& in) {
  at::NoGradGuard no_grad;
  const QuarotParams p = quarot_params().parse(in.params);
  // The rotation changes every tensor of the model at once, in float32.
  model::LoadOptions lo = in.compute;
  lo.stream_layers = false;
  lo.dtype = at::kFloat;
  auto model = model::LlamaModel::load(*in.ckpt, lo);
  QuantOutput out;
  QuarotRun q{.in = in, .p = p, .model = model, .out = out};
  q.rotate();
  if (p.quantizer == "GPTQ") q.gptq_blocks();
  else q.rtn_blocks();
  collect_outside(*in.ckpt, model, out);
  out.quantization_config = {
      {"quant_method", "quarot"},
      {"format", "fake_quant"},
      {"bits", p.w_bit},
      {"group_size", p.group_size},
      {"zero_point", p.zero_point},
      {"rotation", p.rotation},
      {"seed", p.seed},
      {"quantizer", p.quantizer},
      {"overrides", p.layer_overrides},
      {"modules", "the decoder blocks' Linears; embedding, norms and lm_head rotated or fused, not quantized"},
  };
  if (p.quantizer == "GPTQ") out.quantization_config["damp_percent"] = p.damp_percent;
  return out;
}

std::unique_ptr<QuantAlgorithm> make_quarot() { return std::make_unique<QuarotAlgorithm>(); }

}  // namespace qjobs::quant

#include "jobs/quant/gptq.hpp"
#include "jobs/quant/gptq_params.hpp"

#include <optional>
#include <ATen/core/grad_mode.h>

#include "common/error.hpp"
#include "jobs/model/checkpoint.hpp"
#include "jobs/quant/calibration.hpp"
#include "jobs/numeric/fp4.hpp"
#include "jobs/quant/layer_plan.hpp"

namespace qjobs::quant {

GptqResult gptq_quantize(const at::Tensor& w_in, at::Tensor H, const WeightQuantConfig& cfg, double damp,
                         int64_t block_size, bool act_order, bool static_groups, const GroupGridFn* grid) {
  at::NoGradGuard no_grad;
  if (grid != nullptr && (act_order || static_groups))
    throw Error(ErrorKind::internal, "gptq_quantize: a custom grid works in column order only");
  at::Tensor W = w_in.to(at::kFloat).clone();
  const int64_t rows = W.size(0), cols = W.size(1);
  const int64_t g = cfg.group_size <= 0 ? cols : std::min(cfg.group_size, cols);
  H = H.clone();  // the caller's stays as it was (a moved-in one is freed here)
  const auto dead = H.diagonal() == 0;
  H.diagonal().masked_fill_(dead, 1);
  W.index_put_({at::indexing::Slice(), dead}, 0);

  // Static groups: parameters from the weight before any permutation or update.
  std::vector<std::pair<at::Tensor, at::Tensor>> groups;
  if (static_groups)
    for (int64_t c0 = 0; c0 < cols; c0 += g)
      groups.push_back(through_zero_params(W.narrow(1, c0, std::min(g, cols - c0)), cfg.bits, cfg.zero_point));

  at::Tensor perm, invperm;
  if (act_order) {
    perm = at::argsort(H.diagonal(), 0, /*descending=*/true);
    W = W.index_select(1, perm);
    H = H.index_select(0, perm).index_select(1, perm);
    invperm = at::argsort(perm);
  }
  const double d = damp * H.diagonal().mean().item<double>();
  H.diagonal().add_(d);
  // Each [cols, cols] matrix is freed as soon as the next exists: for a
  // 14336-wide down_proj that is 0.8 GiB apiece.
  auto L = at::linalg_cholesky(H);
  H = at::Tensor();
  auto Hinv = at::cholesky_inverse(L);
  L = at::Tensor();
  Hinv = at::linalg_cholesky(Hinv, /*upper=*/true);

  auto Q = at::zeros_like(W);
  auto codes = at::zeros({rows, cols}, W.options().dtype(cfg.bits <= 8 ? at::kByte : at::kInt));
  const int64_t n_groups = (cols + g - 1) / g;
  auto g_scales = at::zeros({rows, n_groups}, W.options());
  auto g_zeros = at::zeros({rows, n_groups}, W.options().dtype(at::kInt));
  // Host copies of what the column loop indexes, so that it never waits on the device.
  const auto perm_host = act_order ? perm.to(at::kCPU, at::kLong).contiguous() : at::Tensor();
  at::Tensor scale, zero, lo, hi;
  bool fp4 = false;
  for (int64_t i1 = 0; i1 < cols; i1 += block_size) {
    const int64_t i2 = std::min(i1 + block_size, cols), count = i2 - i1;
    auto W1 = W.narrow(1, i1, count).clone();
    auto Q1 = at::zeros_like(W1);
    auto Err1 = at::zeros_like(W1);
    const auto Hinv1 = Hinv.narrow(0, i1, count).narrow(1, i1, count);
    for (int64_t i = 0; i < count; ++i) {
      const int64_t col = i1 + i;
      const auto w = W1.select(1, i);
      const auto dd = Hinv1.select(0, i).select(0, i);  // stays on the device
      if (static_groups) {
        const int64_t orig = act_order ? perm_host.data_ptr<int64_t>()[col] : col;
        std::tie(scale, zero) = groups[static_cast<std::size_t>(orig / g)];
      } else if (col % g == 0) {
        // As the reference does: the group's parameters from W, which holds
        // the updates of earlier blocks (not those inside this block).
        const auto group_cols = W.narrow(1, col, std::min(g, cols - col));
        if (grid != nullptr) {
          auto gr = (*grid)(group_cols, col / g);
          scale = gr.scale, zero = gr.zero, lo = gr.lo, hi = gr.hi;
          fp4 = gr.fp4;
          if (fp4) zero = at::zeros_like(scale);
        } else {
          std::tie(scale, zero) = through_zero_params(group_cols, cfg.bits, cfg.zero_point);
        }
        g_scales.select(1, col / g).copy_(scale.flatten());
        g_zeros.select(1, col / g).copy_(zero.flatten());
      }
      const auto s = scale.flatten(), z = zero.flatten();
      at::Tensor qc, q;
      if (fp4) {
        qc = numeric::e2m1_encode(at::where(s > 0, w / s, at::zeros_like(w)));
        q = numeric::e2m1_decode(qc) * s;
      } else {
        qc = quantize_codes(w, s, z, cfg.bits);
        if (lo.defined())
          qc = at::max(at::min(qc, hi.flatten().to(qc.scalar_type())), lo.flatten().to(qc.scalar_type()));
        q = dequantize_codes(qc, s, z);
      }
      codes.select(1, col).copy_(qc);
      Q1.select(1, i).copy_(q);
      const auto err = (w - q) / dd;
      W1.narrow(1, i, count - i).sub_(err.unsqueeze(1).matmul(Hinv1.select(0, i).narrow(0, i, count - i).unsqueeze(0)));
      Err1.select(1, i).copy_(err);
    }
    Q.narrow(1, i1, count).copy_(Q1);
    W.narrow(1, i1, count).copy_(W1);
    if (i2 < cols) W.narrow(1, i2, cols - i2).sub_(Err1.matmul(Hinv.narrow(0, i1, count).narrow(1, i2, cols - i2)));
  }
  GptqResult r;
  const auto idx = W.options().dtype(at::kLong);
  auto col_group = at::arange(cols, idx).div(g, "floor");
  if (act_order) {
    Q = Q.index_select(1, invperm);
    // Column j (original order) sits at position invperm[j] of the quantization order.
    col_group = static_groups ? at::arange(cols, idx).div(g, "floor") : invperm.div(g, "floor");
  }
  if (act_order) codes = codes.index_select(1, invperm);
  if (static_groups)
    for (std::size_t k = 0; k < groups.size(); ++k) {
      g_scales.select(1, static_cast<int64_t>(k)).copy_(groups[k].first.flatten());
      g_zeros.select(1, static_cast<int64_t>(k)).copy_(groups[k].second.flatten());
    }
  r.weight = Q;
  r.g_idx = col_group.to(at::kInt);
  r.ints.codes = codes;
  r.ints.scales = g_scales;
  r.ints.zeros = g_zeros;
  r.ints.g_idx = r.g_idx;
  r.ints.bits = cfg.bits;
  r.ints.group_size = g;
  return r;
}

at::Tensor gptq_hessian(const at::Tensor& x) { return at::matmul(x.t(), x) * (2.0 / static_cast<double>(x.size(0))); }

QuantOutput GptqAlgorithm::run(const QuantInputs& in) {
  const GptqParams p = given_ ? *given_ : gptq_params().parse(in.params);
  const double damp = p.damp_percent;
  const int64_t block = p.block_size;
  const bool act_order = p.desc_act;
  // An export that keeps groups in column order only runs act-order with static groups.
  const bool static_groups = p.static_groups || (p.desc_act && in.column_order_groups);
  const bool true_sequential = p.true_sequential;
  const std::string wformat = p.w_format;
  std::optional<numeric::Fp4Kind> fp4;
  if (wformat == "nvfp4") fp4 = numeric::Fp4Kind::nvfp4;
  else if (wformat == "mxfp4") fp4 = numeric::Fp4Kind::mxfp4;
  else if (wformat != "int") throw Error(ErrorKind::invalid_input, "W_FORMAT must be int, nvfp4 or mxfp4");
  if (fp4 && act_order)
    throw Error(ErrorKind::invalid_input, "GPTQ with an FP4 W_FORMAT runs in column order: DESC_ACT must be false");

  const auto ids = in.calibration();
  auto model = model::LlamaModel::load(*in.ckpt, in.compute);
  QuantOutput out;
  // The next block's inputs are the quantized block's outputs (the loop's default).
  run_blocks(in, model, ids, out, {}, [&](BlockStep& step) {
    const int64_t l = step.index;
    // Attention inputs, o, the MLP's inputs, its outputs: each group sees the
    // quantized outputs of the groups before it; or all at once.
    auto order = step.layer.sequential_groups();
    if (!true_sequential) {
      std::vector<std::string> all;
      for (const auto& g : order) all.insert(all.end(), g.begin(), g.end());
      order = {all};
    }
    const auto input_of = step.layer.input_sources();
    std::map<std::string, model::Linear*> linears;
    // NVFP4's global scale per projection a runtime fuses (the Linears reading
    // one input), from the block's weights before GPTQ changes any of them.
    std::map<std::string, double> amax;
    for (auto& [name, lin] : step.layer.linears()) {
      linears[name] = lin;
      if (fp4) {
        auto& a = amax[input_of.at(name)];
        a = std::max(a, lin->weight.to(at::kFloat).abs().max().item<double>());
      }
    }
    for (const auto& group : order) {
      const auto xs = step.engine.capture_inputs(l, group);
      // Linears that read one input (q/k/v, gate/up) share its Hessian:
      // computed once, copied for all but the last reader (gptq_quantize
      // changes the one it is given).
      // Each Linear's plan once (quant_for matches the overrides' patterns).
      std::map<std::string, LinearQuant> plans;
      std::map<std::string, int> readers_left;
      for (const auto& name : group) {
        const auto& plan =
            plans.emplace(name, quant_for(in.plan, step.prefix + name, RangeMode::through_zero)).first->second;
        if (!plan.skip) ++readers_left[input_of.at(name)];
      }
      std::map<std::string, at::Tensor> hessians;
      for (const auto& name : group) {
        const std::string full = step.prefix + name;
        const auto& plan = plans.at(name);
        if (plan.skip) continue;
        model::Linear& lin = *linears.at(name);
        const auto& x = xs.at(name);
        const auto& source = input_of.at(name);
        auto shared = hessians.find(source);
        if (shared == hessians.end()) shared = hessians.emplace(source, gptq_hessian(x)).first;
        at::Tensor H = --readers_left.at(source) > 0 ? shared->second.clone() : std::move(shared->second);
        if (!shared->second.defined()) hessians.erase(shared);
        const auto w0 = lin.weight.to(at::kFloat);
        GptqResult r;
        if (fp4) {
          // The FP4 grid: block scales from the updated columns, recorded as
          // the loop reaches each block; NVFP4's global scale from the original weight.
          WeightQuantConfig cfg = plan.cfg;
          cfg.group_size = numeric::fp4_block(*fp4);
          cfg.bits = 4;
          const double G =
              *fp4 == numeric::Fp4Kind::nvfp4 ? numeric::nvfp4_global_scale(amax.at(input_of.at(name))) : 1.0;
          auto scale_codes = at::zeros({w0.size(0), w0.size(1) / cfg.group_size}, w0.options().dtype(at::kByte));
          const GroupGridFn fn = [&](const at::Tensor& cols, int64_t group) {
            const auto sc = numeric::fp4_scales(cols.abs().amax(1, true), *fp4, G);
            scale_codes.select(1, group).copy_(sc.codes.flatten());
            GroupGrid gr;
            gr.scale = sc.divisor;
            gr.fp4 = true;
            return gr;
          };
          r = gptq_quantize(w0, std::move(H), cfg, damp, block, false, false, &fn);
          out.fp4_weights[full] = numeric::Fp4Weight{*fp4, r.ints.codes, scale_codes, G, 0, false};
        } else {
          r = gptq_quantize(w0, std::move(H), plan.cfg, damp, block, act_order, static_groups);
          out.int_weights[full] = r.ints;
        }
        const double norm = std::max(w0.norm().item<double>(), 1e-30);
        step.errors.push_back({full, (r.weight - w0).norm().item<double>() / norm,
                               (r.weight - w0).abs().max().item<double>(), relative_output_error(x, w0, r.weight)});
        lin.weight = r.weight.to(lin.weight.scalar_type());
      }
    }
  });
  out.quantization_config = {{"quant_method", "gptq"},
                             {"format", "fake_quant"},
                             {"bits", p.w_bit},
                             {"group_size", p.group_size},
                             {"sym", !p.zero_point},
                             {"desc_act", act_order},
                             {"static_groups", static_groups},
                             {"damp_percent", damp},
                             {"true_sequential", true_sequential},
                             {"w_format", wformat},
                             {"overrides", p.layer_overrides}};
  return out;
}

std::unique_ptr<QuantAlgorithm> make_gptq() { return std::make_unique<GptqAlgorithm>(); }

}  // namespace qjobs::quant

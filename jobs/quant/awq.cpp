#include "jobs/quant/awq.hpp"

#include "common/error.hpp"
#include "jobs/model/checkpoint.hpp"
#include "jobs/quant/calibration.hpp"
#include "jobs/quant/layer_plan.hpp"
#include "jobs/quant/quantizer.hpp"

namespace qjobs::quant {
namespace {

at::Tensor fake_quant(const at::Tensor& w, const LinearPlan& plan) {
  if (plan.skip) return w;
  return quantize_weight(w, plan.cfg).dequantize().to(w.scalar_type());
}

// AutoAWQ's per-input-channel weight statistic over the concatenated
// weights: |w| relative to the max of its quantization group, averaged over
// the output rows. Groups are the quantizer's (full groups, then a narrower
// tail when the group size does not divide the width).
at::Tensor weight_mean(const std::vector<model::Linear*>& ls, int64_t group) {
  std::vector<at::Tensor> ws;
  for (auto* l : ls) ws.push_back(l->weight.to(at::kFloat));
  const auto w = at::cat(ws, 0).abs();
  const int64_t cols = w.size(1);
  const int64_t g = group > 0 ? std::min(group, cols) : cols;
  std::vector<at::Tensor> parts;
  for (int64_t c0 = 0; c0 < cols; c0 += g) {
    const auto part = w.narrow(1, c0, std::min(g, cols - c0));
    parts.push_back(part / (part.amax(1, true) + 1e-6));
  }
  return at::cat(parts, 1).mean(0);
}

}  // namespace

QuantOutput AwqAlgorithm::run(const QuantInputs& in) {
  at::NoGradGuard no_grad;
  const auto& p = in.params;
  const int64_t n_grid = p.value("N_GRID", 20);
  const bool duo = p.value("DUO_SCALING", true);
  const bool clip = p.value("CLIP", true);
  const auto ids = in.calibration();
  auto model = model::LlamaModel::load(*in.ckpt, in.compute);
  QuantOutput out;
  run_blocks(in, model, ids, out, {}, [&](BlockStep& step) {
    const int64_t l = step.index;
    auto& layer = step.layer;
    auto& engine = step.engine;
    const std::string& prefix = step.prefix;
    const auto plan = [&](const std::string& name) { return plan_for(prefix + name, p, RangeMode::min_max); };
    // Full-precision outputs: the next block's inputs, and the references.
    step.next = engine.forward(l);
    auto xs = engine.capture_inputs(l, block_input_names());

    struct Group {
      std::string prev;                     // "input_norm", "self_attn.v_proj", "post_norm", "mlp.up_proj"
      std::vector<std::string> linears;
      std::string input;                    // whose input x is
      std::function<at::Tensor(const at::Tensor&)> inspect;  // the output judged
    };
    std::map<std::string, model::Linear*> lin;
    for (auto& [name, ptr] : layer.linears()) lin[name] = ptr;
    const auto& cfg = model.config();
    const auto shaped = [&](const at::Tensor& x2d) { return x2d.reshape({1, -1, x2d.size(-1)}).to(model.dtype()); };
    std::vector<Group> groups = {
        {"input_norm", {"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj"}, "self_attn.q_proj",
         [&](const at::Tensor& x) {
           // The attention output over whole windows (position-dependent).
           std::vector<at::Tensor> outs;
           const int64_t T = engine.inputs()[0].size(1);
           const auto xw = x.reshape({-1, T, x.size(-1)}).to(model.dtype());
           return model.attention_forward(l, xw, 0).to(at::kFloat);
         }},
        {"post_norm", {"mlp.gate_proj", "mlp.up_proj"}, "mlp.gate_proj",
         [&](const at::Tensor& x) { return model.mlp_forward(l, shaped(x)).to(at::kFloat); }},
        {"mlp.up_proj", {"mlp.down_proj"}, "mlp.down_proj",
         [&](const at::Tensor& x) { return (*lin["mlp.down_proj"])(shaped(x)).to(at::kFloat); }},
    };
    if (cfg.kv_heads == cfg.heads)  // v -> o only when the shapes allow
      groups.insert(groups.begin() + 1, Group{"self_attn.v_proj", {"self_attn.o_proj"}, "self_attn.o_proj",
                                              [&](const at::Tensor& x) { return (*lin["self_attn.o_proj"])(shaped(x)).to(at::kFloat); }});

    for (const auto& g : groups) {
      std::vector<model::Linear*> ls;
      bool any = false;
      for (const auto& n : g.linears) {
        ls.push_back(lin[n]);
        any = any || !plan(n).skip;
      }
      if (!any) continue;
      const auto& x = xs.at(g.input);
      const auto x_mean = x.abs().mean(0);
      const auto w_mean = weight_mean(ls, plan(g.linears[0]).cfg.group_size);
      const auto ref = g.inspect(x);
      std::vector<at::Tensor> saved;
      for (auto* l2 : ls) saved.push_back(l2->weight.clone());
      // Losses stay on the device; one sync picks the best ratio at the end.
      std::vector<at::Tensor> losses, scales;
      for (int64_t r = 0; r < n_grid; ++r) {
        const double ratio = static_cast<double>(r) / static_cast<double>(n_grid);
        auto s = duo ? (x_mean.pow(ratio) / (w_mean.pow(1 - ratio) + 1e-4)).clamp_min(1e-4) : x_mean.pow(ratio).clamp_min(1e-4);
        s = s / (s.max() * s.min()).sqrt();
        for (std::size_t i = 0; i < ls.size(); ++i) {
          const auto sw = s.to(saved[i].scalar_type());
          ls[i]->weight = fake_quant(saved[i] * sw, plan(g.linears[i])) / sw;
        }
        losses.push_back((ref - g.inspect(x)).pow(2).mean());
        scales.push_back(s);
      }
      // The first of equal losses, as a strict "<" scan would take.
      const auto best_s = scales[static_cast<std::size_t>(at::stack(losses).argmin().item<int64_t>())];
      // Fold the best scale: the previous op divides, the Linears multiply.
      for (std::size_t i = 0; i < ls.size(); ++i) ls[i]->weight = saved[i] * best_s.to(saved[i].scalar_type());
      const auto inv = (1.0 / best_s);
      if (g.prev == "input_norm") layer.input_norm = layer.input_norm * inv.to(layer.input_norm.scalar_type());
      else if (g.prev == "post_norm") layer.post_norm = layer.post_norm * inv.to(layer.post_norm.scalar_type());
      else {
        auto& prev = *lin[g.prev];
        prev.weight = prev.weight * inv.to(prev.weight.scalar_type()).unsqueeze(1);
        if (prev.bias.defined()) prev.bias = prev.bias * inv.to(prev.bias.scalar_type());
      }
    }

    // The inputs after scaling, for the clip search and the error figures.
    xs = engine.capture_inputs(l, block_input_names());
    const auto& input_of = linear_input_source();
    std::vector<LayerError> errs;
    for (auto& [name, l2] : lin) {
      const auto pl = plan(name);
      if (pl.skip) continue;
      const auto& x = xs.at(input_of.at(name));
      at::Tensor w = l2->weight.to(at::kFloat);
      if (clip && name != "self_attn.q_proj" && name != "self_attn.k_proj") {
        const int64_t co = w.size(0), ci = w.size(1);
        const int64_t gs = pl.cfg.group_size > 0 && ci % pl.cfg.group_size == 0 ? pl.cfg.group_size : ci;
        const int64_t stride = std::max<int64_t>(1, x.size(0) / 512);
        const int64_t ng = ci / gs;
        // Sampled tokens per group: [groups, tokens, gs]. Group outputs are
        // batched matrix products, not elementwise products and sums.
        const auto xs_ = x.index_select(0, at::arange(0, x.size(0), stride, at::TensorOptions().dtype(at::kLong).device(x.device())));
        const auto xg = xs_.reshape({xs_.size(0), ng, gs}).permute({1, 0, 2}).contiguous();
        const auto wg = w.reshape({co, 1, ng, gs});
        const auto org_max = wg.abs().amax(-1, true);  // [co, 1, ng, 1]
        auto best_max = org_max.clone();
        const int64_t chunk = std::max<int64_t>(1, (64 << 20) / std::max<int64_t>(1, xg.size(1) * ng));
        for (int64_t c0 = 0; c0 < co; c0 += chunk) {
          const int64_t cn = std::min(chunk, co - c0);
          const auto wc = wg.narrow(0, c0, cn);
          const auto mc = org_max.narrow(0, c0, cn);
          const auto as_groups = [&](const at::Tensor& t) {  // [cn, 1, ng, gs] -> [ng, gs, cn]
            return t.reshape({cn, ng, gs}).permute({1, 2, 0});
          };
          const auto org_out = at::bmm(xg, as_groups(wc));  // [ng, tokens, cn]
          auto min_err = at::full({ng, cn}, 1e30, w.options());
          auto best_c = mc.reshape({cn, ng}).t().contiguous();  // [ng, cn]
          for (int64_t i = 0; i < n_grid / 2; ++i) {
            const auto mx = mc * (1.0 - static_cast<double>(i) / static_cast<double>(n_grid));
            const auto cur = at::clamp(wc, -mx, mx);
            const auto q = quantize_weight(cur.reshape({cn, ci}), pl.cfg).dequantize().reshape({cn, 1, ng, gs});
            const auto err = (at::bmm(xg, as_groups(q)) - org_out).pow(2).mean(1);  // [ng, cn]
            const auto better = err < min_err;
            min_err = at::where(better, err, min_err);
            best_c = at::where(better, mx.reshape({cn, ng}).t(), best_c);
          }
          best_max.narrow(0, c0, cn).copy_(best_c.t().reshape({cn, 1, ng, 1}));
        }
        w = at::clamp(wg, -best_max, best_max).reshape({co, ci});
      }
      const auto qw = quantize_weight(w, pl.cfg);
      const auto wq = qw.dequantize();
      out.int_weights[prefix + name] = to_int_weight(qw, pl.cfg.bits);
      // Errors of the scaled pair (what the block now computes before and
      // after rounding): the unscaled original takes other inputs.
      const auto ws = l2->weight.to(at::kFloat);
      errs.push_back({prefix + name, (wq - ws).norm().item<double>() / std::max(ws.norm().item<double>(), 1e-30),
                      (wq - ws).abs().max().item<double>(), relative_output_error(x, ws, wq)});
      l2->weight = wq.to(l2->weight.scalar_type());
    }
    step.errors = std::move(errs);
  });
  out.quantization_config = {{"quant_method", "awq"},
                             {"format", "fake_quant"},
                             {"bits", p.value("W_BIT", 4)},
                             {"group_size", p.value("Q_GROUP_SIZE", 128)},
                             {"zero_point", p.value("ZERO_POINT", true)},
                             {"version", p.value("VERSION", std::string("GEMM"))},
                             {"overrides", describe_overrides(p)}};
  return out;
}

}  // namespace qjobs::quant

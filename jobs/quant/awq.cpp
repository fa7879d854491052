#include "jobs/quant/awq.hpp"
#include "jobs/quant/awq_params.hpp"

#include <ATen/core/grad_mode.h>

#include "common/error.hpp"
#include "jobs/model/checkpoint.hpp"
#include "jobs/quant/calibration.hpp"
#include "jobs/quant/layer_plan.hpp"
#include "jobs/quant/quantizer.hpp"

namespace qjobs::quant {
namespace {

// One grid point's weight of a Linear: (saved * s) rounded, then / s, into
// `buf` (allocated at the first point, reused after: in float32 a grid
// point allocates no weight-sized temporary).
void scaled_fake_quant(at::Tensor& buf, const at::Tensor& saved, const at::Tensor& s, const LinearQuant& plan) {
  const auto sw = s.to(saved.scalar_type());
  if (saved.scalar_type() != at::kFloat) {
    const auto scaled = saved * sw;
    buf = (plan.skip ? scaled : fake_quantize(scaled, plan.cfg)) / sw;
    return;
  }
  if (!buf.defined()) buf = at::empty_like(saved, at::MemoryFormat::Contiguous);
  at::mul_out(buf, saved, sw);
  if (!plan.skip) fake_quantize_(buf, plan.cfg);
  buf.div_(sw);
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

using PlanFn = std::function<LinearQuant(const std::string& name)>;
using LinearMap = std::map<std::string, model::Linear*>;

// A scaling group of the family's table: a norm or a Linear's rows divide
// by s, the Linears reading them multiply their columns by s (routers too,
// kept in full precision), judged on `inspect`'s output.
struct ScaleGroup {
  std::function<void(const at::Tensor& inv)> fold_prev;
  std::vector<std::string> linears;                      // quantized readers
  std::vector<model::Linear*> followers;                 // full-precision readers
  std::string input;                                     // whose input x is
  std::function<at::Tensor(const at::Tensor&)> inspect;  // the output judged
};

// Block l's scaling groups in AutoAWQ's order: the attention's input norm,
// v -> o, the MLP's input norm, then the pairs inside the MLP.
std::vector<ScaleGroup> scale_groups(model::LlamaModel& model, model::DecoderLayer& layer, int64_t l,
                                     CalibrationEngine& engine) {
  const auto input_of = layer.input_sources();
  const auto dtype = model.dtype();
  const auto shaped = [dtype](const at::Tensor& x2d) { return x2d.reshape({1, -1, x2d.size(-1)}).to(dtype); };
  const auto norm_group = [&model](model::NormReaders& g, std::function<at::Tensor(const at::Tensor&)> inspect) {
    ScaleGroup out{[&model, norm = g.norm](const at::Tensor& inv) { model.scale_norm(*norm, inv); },
                   {},
                   {},
                   g.input,
                   std::move(inspect)};
    for (auto& r : g.readers) {
      if (r.quantized) out.linears.push_back(r.name);
      else out.followers.push_back(r.linear);
    }
    return out;
  };
  auto norms = layer.norm_groups();
  std::vector<ScaleGroup> groups = {norm_group(norms[0], [&model, &engine, l](const at::Tensor& x) {
    // The attention output over whole windows (position-dependent).
    const int64_t T = engine.inputs()[0].size(1);
    return model.attention_forward(l, x.reshape({-1, T, x.size(-1)}).to(model.dtype()), 0).to(at::kFloat);
  })};
  std::vector<ScaleGroup> after_mlp;
  for (const auto& pair : layer.linear_pairs(model.config())) {
    ScaleGroup g{[pair](const at::Tensor& inv) {
                   auto w = pair.prev->weight.clone();
                   w.narrow(0, pair.row0, pair.rows).mul_(inv.to(w.scalar_type()).unsqueeze(1));
                   pair.prev->weight = w;
                   if (pair.prev->bias.defined()) {
                     auto b = pair.prev->bias.clone();
                     b.narrow(0, pair.row0, pair.rows).mul_(inv.to(b.scalar_type()));
                     pair.prev->bias = b;
                   }
                 },
                 {pair.next_name},
                 {},
                 input_of.at(pair.next_name),
                 [shaped, next = pair.next](const at::Tensor& x) { return (*next)(shaped(x)).to(at::kFloat); }};
    (pair.next == &layer.o_proj ? groups : after_mlp).push_back(std::move(g));
  }
  groups.push_back(norm_group(
      norms[1], [&model, shaped, l](const at::Tensor& x) { return model.mlp_forward(l, shaped(x)).to(at::kFloat); }));
  for (auto& g : after_mlp) groups.push_back(std::move(g));
  return groups;
}

// The grid search of one group's scale: s = x_mean^r (/ w_mean^(1-r) with
// duo scaling) for r in [0, 1), judged on the group's output with the
// readers quantized; the best is folded in (the previous op divides, the
// Linears and followers multiply).
void apply_best_scale(const ScaleGroup& g, const LinearMap& lin, const at::Tensor& x, const PlanFn& plan,
                      int64_t n_grid, bool duo) {
  std::vector<model::Linear*> ls;
  bool any = false;
  for (const auto& n : g.linears) {
    ls.push_back(lin.at(n));
    any = any || !plan(n).skip;
  }
  if (!any || x.size(0) == 0) return;  // an expert no calibration token reached
  const auto x_mean = x.abs().mean(0);
  const auto w_mean = weight_mean(ls, plan(g.linears[0]).cfg.group_size);
  const auto ref = g.inspect(x);
  std::vector<at::Tensor> saved;
  for (auto* l2 : ls) saved.push_back(l2->weight.clone());
  std::vector<at::Tensor> bufs(ls.size());
  // Losses stay on the device; one sync picks the best ratio at the end.
  std::vector<at::Tensor> losses, scales;
  for (int64_t r = 0; r < n_grid; ++r) {
    const double ratio = static_cast<double>(r) / static_cast<double>(n_grid);
    auto s =
        duo ? (x_mean.pow(ratio) / (w_mean.pow(1 - ratio) + 1e-4)).clamp_min(1e-4) : x_mean.pow(ratio).clamp_min(1e-4);
    s = s / (s.max() * s.min()).sqrt();
    for (std::size_t i = 0; i < ls.size(); ++i) {
      scaled_fake_quant(bufs[i], saved[i], s, plan(g.linears[i]));
      ls[i]->weight = bufs[i];
    }
    losses.push_back((ref - g.inspect(x)).pow(2).mean());
    scales.push_back(s);
  }
  // The first of equal losses, as a strict "<" scan would take.
  const auto best_s = scales[static_cast<std::size_t>(at::stack(losses).argmin().item<int64_t>())];
  for (std::size_t i = 0; i < ls.size(); ++i) ls[i]->weight = saved[i] * best_s.to(saved[i].scalar_type());
  for (auto* f : g.followers) f->weight = f->weight * best_s.to(f->weight.scalar_type());
  g.fold_prev(1.0 / best_s);
}

// AutoAWQ's clip search: each output row's max |w| per group shrunk by up
// to half in n_grid / 2 steps, keeping the one whose quantized group output
// on (sampled) calibration tokens is closest. Returns w clipped.
at::Tensor clip_weight(const at::Tensor& w, const at::Tensor& x, const WeightQuantConfig& cfg, int64_t n_grid) {
  const int64_t co = w.size(0), ci = w.size(1);
  const int64_t gs = cfg.group_size > 0 && ci % cfg.group_size == 0 ? cfg.group_size : ci;
  const int64_t stride = std::max<int64_t>(1, x.size(0) / 512);
  const int64_t ng = ci / gs;
  // Sampled tokens per group: [groups, tokens, gs]. Group outputs are
  // batched matrix products, not elementwise products and sums.
  const auto xs_ =
      x.index_select(0, at::arange(0, x.size(0), stride, at::TensorOptions().dtype(at::kLong).device(x.device())));
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
      auto q = at::clamp(wc, -mx, mx).reshape({cn, ci});
      fake_quantize_(q, cfg);
      q = q.view({cn, 1, ng, gs});
      const auto err = (at::bmm(xg, as_groups(q)) - org_out).pow(2).mean(1);  // [ng, cn]
      const auto better = err < min_err;
      min_err = at::where(better, err, min_err);
      best_c = at::where(better, mx.reshape({cn, ng}).t(), best_c);
    }
    best_max.narrow(0, c0, cn).copy_(best_c.t().reshape({cn, 1, ng, 1}));
  }
  return at::clamp(wg, -best_max, best_max).reshape({co, ci});
}

// One scaled Linear rounded (after the clip search where it applies): its
// integer form goes to `out`, its errors are returned.
LayerError quantize_linear(const std::string& full, model::Linear& lin, const at::Tensor& x, const LinearQuant& pl,
                           bool clip, int64_t n_grid, QuantOutput& out) {
  if (x.size(0) == 0) {  // no token: plain rounding
    const auto qw = quantize_weight(lin.weight.to(at::kFloat), pl.cfg);
    out.int_weights[full] = to_int_weight(qw, pl.cfg.bits);
    auto err = linear_error(full, lin.weight.to(at::kFloat), qw.dequantize(), at::Tensor(), {});
    lin.weight = qw.dequantize().to(lin.weight.scalar_type());
    return err;
  }
  const at::Tensor w = clip ? clip_weight(lin.weight.to(at::kFloat), x, pl.cfg, n_grid) : lin.weight.to(at::kFloat);
  const auto qw = quantize_weight(w, pl.cfg);
  const auto wq = qw.dequantize();
  out.int_weights[full] = to_int_weight(qw, pl.cfg.bits);
  // Errors of the scaled pair (what the block now computes before and
  // after rounding): the unscaled original takes other inputs.
  const auto ws = lin.weight.to(at::kFloat);
  LayerError err{full, (wq - ws).norm().item<double>() / std::max(ws.norm().item<double>(), 1e-30),
                 (wq - ws).abs().max().item<double>(), relative_output_error(x, ws, wq)};
  lin.weight = wq.to(lin.weight.scalar_type());
  return err;
}

}  // namespace

QuantOutput AwqAlgorithm::run(const QuantInputs& in) {
  at::NoGradGuard no_grad;
  const AwqParams p = given_ ? *given_ : awq_params().parse(in.params);
  const auto ids = in.calibration();
  auto model = model::LlamaModel::load(*in.ckpt, in.compute);
  QuantOutput out;
  run_blocks(in, model, ids, out, {}, [&](BlockStep& step) {
    const int64_t l = step.index;
    auto& layer = step.layer;
    auto& engine = step.engine;
    const std::string& prefix = step.prefix;
    const PlanFn plan = [&](const std::string& name) { return quant_for(in.plan, prefix + name, RangeMode::min_max); };
    // Full-precision outputs: the next block's inputs, and the references.
    step.next = engine.forward(l);
    auto xs = engine.capture_inputs(l, layer.input_names());
    LinearMap lin;
    for (auto& [name, ptr] : layer.linears()) lin[name] = ptr;
    const auto input_of = layer.input_sources();
    for (const auto& g : scale_groups(model, layer, l, engine))
      apply_best_scale(g, lin, xs.at(g.input), plan, p.n_grid, p.duo_scaling);

    // The inputs after scaling, for the clip search and the error figures.
    xs = engine.capture_inputs(l, layer.input_names());
    std::vector<LayerError> errs;
    for (auto& [name, l2] : lin) {
      const auto pl = plan(name);
      if (pl.skip) continue;
      const bool clip = p.clip && !layer.feeds_scores(name);
      errs.push_back(quantize_linear(prefix + name, *l2, xs.at(input_of.at(name)), pl, clip, p.n_grid, out));
    }
    step.errors = std::move(errs);
  });
  out.quantization_config = {{"quant_method", "awq"},         {"format", "fake_quant"},     {"bits", p.w_bit},
                             {"group_size", p.group_size},    {"zero_point", p.zero_point}, {"version", p.version},
                             {"overrides", p.layer_overrides}};
  return out;
}

std::unique_ptr<QuantAlgorithm> make_awq() { return std::make_unique<AwqAlgorithm>(); }

}  // namespace qjobs::quant

#include "jobs/quant/qoq.hpp"
#include "jobs/quant/lmquant_params.hpp"

#include <cmath>
#include <limits>
#include <optional>
#include <ATen/core/grad_mode.h>

#include "common/error.hpp"
#include "jobs/model/checkpoint.hpp"
#include "jobs/quant/awq.hpp"
#include "jobs/quant/calibration.hpp"
#include "jobs/quant/gptq.hpp"
#include "jobs/quant/layer_plan.hpp"
#include "jobs/quant/smoothquant.hpp"
#include "jobs/quant/transforms.hpp"

namespace qjobs::quant {
using nlohmann::json;

WeightGrid WeightGrid::for_weight(const at::Tensor& w, int bits, bool progressive) {
  WeightGrid wg;
  wg.bits = bits;
  wg.progressive = progressive && bits < 8;
  if (wg.progressive) wg.s1 = (w.abs().amax(1, true) / kQoqProtectiveRange).clamp_min(1e-8);
  return wg;
}

GroupGrid WeightGrid::grid(const at::Tensor& cols, const at::Tensor& ratio) const {
  const double qmax = std::ldexp(1.0, bits) - 1;
  auto mn = cols.amin(1, true), mx = cols.amax(1, true);
  if (ratio.defined()) mn = mn * ratio, mx = mx * ratio;
  GroupGrid g;
  if (progressive) {
    const auto mn1 = mn / s1, mx1 = mx / s1;
    const auto s2 = at::clamp_min(at::round((mx1 - mn1) / qmax), 1);
    g.zero = at::clamp(at::round(-mn1 / s2), 0, qmax);
    g.scale = s1 * s2;
    // (q - z) * s2 is the int8 the kernel multiplies with: keep it in range.
    g.lo = at::clamp_min(g.zero + at::ceil(-128.0 / s2), 0);
    g.hi = at::clamp_max(g.zero + at::floor(127.0 / s2), qmax);
  } else {
    g.scale = (mx - mn).clamp_min(1e-5) / qmax;
    g.zero = at::clamp(at::round(-mn / g.scale), 0, qmax);
  }
  return g;
}

at::Tensor WeightGrid::codes(const at::Tensor& cols, const GroupGrid& g) const {
  auto q = at::clamp(at::round(cols / g.scale) + g.zero, 0, std::ldexp(1.0, bits) - 1);
  if (g.lo.defined()) q = at::max(at::min(q, g.hi), g.lo);
  return q;
}

namespace {

int64_t effective_group(int64_t group, int64_t cols) { return group <= 0 ? cols : std::min(group, cols); }

// Round to nearest on the grid, every group; ratio [rows, groups] or undefined.
at::Tensor rtn(const at::Tensor& w, const WeightGrid& wg, int64_t g, const at::Tensor& ratio,
               numeric::IntWeight* ints = nullptr) {
  const int64_t rows = w.size(0), cols = w.size(1), ng = (cols + g - 1) / g;
  auto out = at::empty_like(w);
  at::Tensor codes, scales, zeros;
  if (ints != nullptr)
    codes = at::empty({rows, cols}, w.options().dtype(wg.bits <= 8 ? at::kByte : at::kInt)),
    scales = at::empty({rows, ng}, w.options()), zeros = at::empty({rows, ng}, w.options().dtype(at::kInt));
  for (int64_t gi = 0; gi < ng; ++gi) {
    const int64_t c0 = gi * g, n = std::min(g, cols - c0);
    const auto part = w.narrow(1, c0, n);
    const auto gr = wg.grid(part, ratio.defined() ? ratio.select(1, gi).unsqueeze(1) : at::Tensor());
    const auto q = wg.codes(part, gr);
    out.narrow(1, c0, n).copy_((q - gr.zero) * gr.scale);
    if (ints != nullptr) {
      codes.narrow(1, c0, n).copy_(q);
      scales.select(1, gi).copy_(gr.scale.flatten());
      zeros.select(1, gi).copy_(gr.zero.flatten());
    }
  }
  if (ints != nullptr) {
    ints->codes = codes;
    ints->scales = scales;
    ints->zeros = zeros;
    ints->g_idx = at::arange(cols, w.options().dtype(at::kLong)).div(g, "floor").to(at::kInt);
    ints->bits = wg.bits;
    ints->group_size = g;
  }
  return out;
}

// Activation-aware clipping: per (row, group) the shrink r of [min, max]
// (1 - max_shrink * k / grids) whose rounded group gives the least output
// error sum_t (x_t,g . (w_g - q_g))^2 on sampled inputs x [tokens, in].
at::Tensor search_clip(const at::Tensor& w, const at::Tensor& x, const WeightGrid& wg, int64_t g, double max_shrink,
                       int grids) {
  const int64_t rows = w.size(0), cols = w.size(1), ng = (cols + g - 1) / g;
  auto table = at::ones({rows, ng});
  for (int64_t gi = 0; gi < ng; ++gi) {
    const int64_t c0 = gi * g, n = std::min(g, cols - c0);
    const auto part = w.narrow(1, c0, n);
    const auto xg = x.narrow(1, c0, n);
    auto best = at::full({rows}, std::numeric_limits<float>::infinity());
    auto col = table.select(1, gi);
    for (int k = 0; k <= grids; ++k) {
      const double r = 1.0 - max_shrink * k / std::max(grids, 1);
      const auto ratio = at::full({rows, 1}, r);
      const auto gr = wg.grid(part, ratio);
      const auto q = (wg.codes(part, gr) - gr.zero) * gr.scale;
      const auto err = at::matmul(xg, (part - q).t()).pow(2).sum(0);
      const auto better = err < best;
      best = at::where(better, err, best);
      col.copy_(at::where(better, at::full_like(col, r), col));
    }
  }
  return table;
}

at::Tensor sample_rows(const at::Tensor& x, int64_t max_rows) {
  if (x.size(0) <= max_rows) return x;
  return x.index_select(0, at::arange(0, x.size(0), (x.size(0) + max_rows - 1) / max_rows, at::kLong));
}

model::ActQuant act_for(int bits, bool is_static, const at::Tensor& x) {
  model::ActQuant a;
  if (bits <= 0) return a;
  a.bits = bits;
  a.kind = is_static ? model::ActQuant::Kind::int_tensor : model::ActQuant::Kind::int_token;
  if (is_static) a.scale = std::max(x.abs().max().item<double>() / (std::ldexp(1.0, bits - 1) - 1), 1e-8);
  return a;
}

// s = xstat^alpha / wstat^beta for each grid alpha (Manual: the given
// alpha), or no smoothing, whichever gives the least `objective`.
at::Tensor choose_scale(const SmoothSetting& st, const at::Tensor& xstat, const at::Tensor& wstat,
                        const std::function<at::Tensor(const at::Tensor&)>& objective) {
  const auto make = [&](double a) {
    const double b = st.beta < 0 ? 1 - a : st.beta;
    return (xstat.clamp_min(1e-5).pow(a) / wstat.clamp_min(1e-5).pow(b)).clamp_min(1e-5);
  };
  if (st.strategy == "Manual") return make(st.alpha);
  // Every candidate's error stays on the device; one sync picks the first
  // least, as a scan keeping strict improvements would.
  std::vector<at::Tensor> candidates = {at::ones_like(xstat)}, errors = {objective(candidates[0])};
  for (int k = 0; k <= st.num_grids; ++k) {
    candidates.push_back(make(static_cast<double>(k) / st.num_grids));
    errors.push_back(objective(candidates.back()));
  }
  return candidates[static_cast<std::size_t>(at::stack(errors).argmin().item<int64_t>())];
}

// [n] per pair-half max, made equal on each RoPE pair of each head.
at::Tensor tie_rope_pairs(const at::Tensor& v, int64_t head_dim) {
  const auto h = v.reshape({-1, 2, head_dim / 2});
  return h.amax(1, true).expand_as(h).reshape({-1}).contiguous();
}

// Llama-layout checks: rotation, SmoothAttention and reordering are written
// for Llama's block (separate q/k/v and gate/up, a dense MLP, two norms).
void check_family(const model::Family& fam, const QoqConfig& c) {
  if (c.rotation && !fam.rotation_folds)
    throw Error(ErrorKind::invalid_input, "QoQ's rotation does not fold into " + fam.hf_class +
                                              "'s block (norms on its outputs): set quant.enable_rotation false");
  if (c.kv_bits > 0 && c.yx.enabled && !fam.qk_scaling_folds)
    throw Error(ErrorKind::invalid_input, "QoQ's SmoothAttention scales q and k channels, which " + fam.hf_class +
                                              " normalizes per head: set quant.smooth.enable_yx false");
  if (!fam.llama_layout())
    throw Error(ErrorKind::invalid_input, "QoQ is built for Llama-layout blocks (Llama, Mistral, Qwen2); " +
                                              fam.hf_class +
                                              " is not one: use RTN, GPTQ, AutoAWQ, HQQ, FP8 or NVFP4 for it");
}

// One QoQ run's state and its four steps on each block, in order:
// SmoothAttention, smoothing, reordering, then the weights.
struct QoqRun {
  const QuantInputs& in;
  const QoqConfig& c;
  model::LlamaModel& model;
  const model::ModelConfig& mc;
  const model::KvQuant& kv;
  QuantOutput& out;
  json activations = json::object();
  int64_t rep = mc.heads / mc.kv_heads;  // query heads per KV head

  LinearQuant plan(const std::string& full) const { return quant_for(in.plan, full, RangeMode::min_max); }

  // No export form holds a ragged last group: a width the group size does
  // not divide (down_proj's 352 at g128) is quantized per output channel,
  // packed or fake_quant alike (the pipeline's rule; issue 27).
  static int64_t group_of(const LinearQuant& plan, int64_t cols) {
    const int64_t g = effective_group(plan.cfg.group_size, cols);
    return cols % g != 0 ? cols : g;
  }

  void set_act(const std::string& full, model::Linear& lin, const LinearQuant& plan, const at::Tensor& x) {
    lin.act = act_for(plan.skip ? 0 : plan.a_bits, c.a_static, x);
    if (lin.act.kind != model::ActQuant::Kind::none) activations[full] = lin.act.to_json();
  }

  // Output error of a consumer Linear with its inputs divided and its
  // columns multiplied by S [in], both quantized as they will be.
  at::Tensor consumer_error(const std::string& full, const at::Tensor& x, const at::Tensor& w,
                            const at::Tensor& S) const {
    const auto p = plan(full);
    const auto y = at::matmul(x, w.t());
    const auto ws = w * S.unsqueeze(0);
    const auto wq =
        p.skip ? ws
               : rtn(ws, WeightGrid::for_weight(ws, p.cfg.bits, c.progressive), group_of(p, ws.size(1)), at::Tensor());
    const auto xq = act_for(p.skip ? 0 : p.a_bits, false, x).apply(x / S.unsqueeze(0));
    return (at::matmul(xq, wq.t()) - y).pow(2).sum();
  }

  // SmoothAttention on the keys after RoPE.
  void smooth_keys(BlockStep& step) const {
    const int64_t l = step.index;
    const std::string& prefix = step.prefix;
    // Running per-channel max |k| and |q| after RoPE (not every token kept),
    // and the first window for the objective.
    at::Tensor kmax, qmax, k_first, q_first;
    const auto running_max = [](at::Tensor& acc, const at::Tensor& y) {
      const auto m = y.abs().reshape({-1, y.size(-1)}).amax(0);
      acc = acc.defined() ? at::maximum(acc, m) : m;
    };
    const model::LinearHook hook = [&](const std::string& name, const at::Tensor&, const at::Tensor& y) {
      if (name == prefix + "self_attn.k_proj") {
        const auto k = after_rope(model, y);
        running_max(kmax, k);
        if (!k_first.defined()) k_first = k.narrow(0, 0, 1);
      }
      if (name == prefix + "self_attn.q_proj") {
        const auto q = after_rope(model, y);
        running_max(qmax, q);
        if (!q_first.defined()) q_first = q.narrow(0, 0, 1);
      }
      return y;
    };
    step.engine.forward(l, &hook);
    const auto kstat = tie_rope_pairs(kmax, mc.head_dim);
    const auto qstat = tie_rope_pairs(qmax.reshape({mc.kv_heads, rep, mc.head_dim}).amax(1).reshape({-1}), mc.head_dim);
    // Objective: attention logits of the first window with the keys as the cache holds them.
    const auto k0 = k_first.reshape({1, -1, mc.kv_heads, mc.head_dim}).transpose(1, 2);  // [1, kvh, T, hd]
    const auto q0 = q_first.reshape({1, -1, mc.kv_heads, rep, mc.head_dim});
    const auto qh = q0.permute({0, 2, 3, 1, 4});  // [1, kvh, rep, T, hd]
    const auto ref = at::matmul(qh, k0.unsqueeze(2).transpose(-1, -2));
    const auto lambda = choose_scale(c.yx, kstat, qstat, [&](const at::Tensor& lam) {
      const auto lh = lam.reshape({1, mc.kv_heads, 1, mc.head_dim});
      const auto kq = kv.apply(k0 / lh, l, true);
      const auto s = at::matmul(qh * lh.unsqueeze(2), kq.unsqueeze(2).transpose(-1, -2));
      return (s - ref).pow(2).sum();
    });
    smooth_attention(step.layer, mc, lambda);
  }

  // Smoothing v -> o_proj and up -> down_proj.
  void smooth_consumers(BlockStep& step) const {
    const int64_t l = step.index;
    auto& layer = step.layer;
    auto x = sample_rows(step.engine.capture_inputs(l, {"self_attn.o_proj"}).at("self_attn.o_proj"), 2048);
    auto w = layer.o_proj.weight.to(at::kFloat);
    const auto xstat = x.abs().amax(0).reshape({mc.kv_heads, rep, mc.head_dim}).amax(1).reshape({-1});
    const auto wstat = w.abs().amax(0).reshape({mc.kv_heads, rep, mc.head_dim}).amax(1).reshape({-1});
    const auto expand = [&](const at::Tensor& s) {
      return s.reshape({mc.kv_heads, 1, mc.head_dim}).expand({mc.kv_heads, rep, mc.head_dim}).reshape({-1});
    };
    const auto s_vo = choose_scale(c.xw, xstat, wstat, [&](const at::Tensor& s) {
      return consumer_error(step.prefix + "self_attn.o_proj", x, w, expand(s));
    });
    smooth_value_out(layer, mc, s_vo);
    x = sample_rows(step.engine.capture_inputs(l, {"mlp.down_proj"}).at("mlp.down_proj"), 2048);
    w = layer.down_proj.weight.to(at::kFloat);
    const auto s_ud = choose_scale(c.xw, x.abs().amax(0), w.abs().amax(0), [&](const at::Tensor& s) {
      return consumer_error(step.prefix + "mlp.down_proj", x, w, s);
    });
    smooth_up_down(layer, s_ud);
  }

  // Channel reordering of down_proj's inputs, largest first (only where
  // groups are narrower than the row: per channel it changes nothing).
  void reorder(BlockStep& step) const {
    const int64_t down_group = group_of(plan(step.prefix + "mlp.down_proj"), mc.intermediate);
    if (!c.reorder || down_group >= mc.intermediate) return;
    const auto x = step.engine.capture_inputs(step.index, {"mlp.down_proj"}).at("mlp.down_proj");
    reorder_intermediate(step.layer, at::argsort(x.abs().amax(0), 0, /*descending=*/true));
  }

  // One Linear's weights (clip search, then GPTQ or RTN on QoQ's grid) and
  // its activation quantizer; its errors.
  std::optional<LayerError> quantize_linear(const std::string& full, model::Linear& lin, const at::Tensor& x) {
    const auto p = plan(full);
    set_act(full, lin, p, x);
    if (p.skip) return std::nullopt;
    const auto w = lin.weight.to(at::kFloat);
    const int64_t g = group_of(p, w.size(1));
    const auto wg = WeightGrid::for_weight(w, p.cfg.bits, c.progressive);
    const auto ratio =
        c.calib_range ? search_clip(w, sample_rows(x, 512), wg, g, c.max_shrink, c.clip_grids) : at::Tensor();
    at::Tensor wq;
    numeric::IntWeight ints;
    if (c.gptq) {
      const GroupGridFn fn = [&](const at::Tensor& cols, int64_t gi) {
        return wg.grid(cols, ratio.defined() ? ratio.select(1, gi).unsqueeze(1) : at::Tensor());
      };
      const auto H = gptq_hessian(x);
      WeightQuantConfig cfg = p.cfg;
      cfg.group_size = g;
      auto r = gptq_quantize(w, H, cfg, c.damp, c.gptq_block, false, false, &fn);
      wq = r.weight;
      ints = r.ints;
    } else {
      wq = rtn(w, wg, g, ratio, &ints);
    }
    lin.weight = wq.to(lin.weight.scalar_type());
    out.int_weights[full] = ints;
    const auto y = at::matmul(x, w.t()), yq = at::matmul(lin.act.apply(x), wq.t());
    return LayerError{full, (wq - w).norm().item<double>() / std::max(w.norm().item<double>(), 1e-30),
                      (wq - w).abs().max().item<double>(),
                      (yq - y).norm().item<double>() / std::max(y.norm().item<double>(), 1e-30)};
  }

  // Weights (true-sequential: each group's inputs after the groups before it
  // are quantized), activations.
  void quantize_weights(BlockStep& step) {
    std::map<std::string, model::Linear*> lin;
    for (auto& [name, l2] : step.layer.linears()) lin[name] = l2;
    std::vector<LayerError> errs;
    for (const auto& group :
         std::vector<std::vector<std::string>>{{"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj"},
                                               {"self_attn.o_proj"},
                                               {"mlp.gate_proj", "mlp.up_proj"},
                                               {"mlp.down_proj"}}) {
      const auto xs = step.engine.capture_inputs(step.index, group);
      for (const auto& name : group)
        if (auto e = quantize_linear(step.prefix + name, *lin.at(name), xs.at(name))) errs.push_back(*e);
    }
    step.errors = std::move(errs);  // next inputs: the quantized block's outputs
  }
};

}  // namespace

QuantOutput QoqAlgorithm::run(const QuantInputs& in) {
  at::NoGradGuard no_grad;
  const LmQuantParams p = lmquant_params().parse(in.params);
  const auto c = QoqConfig::from_lmquant(in.params);

  const auto ids = in.calibration();
  // The rotation transforms the whole model at once: it stays resident.
  model::LoadOptions lo = in.compute;
  if (c.rotation) lo.stream_layers = false;
  auto model = model::LlamaModel::load(*in.ckpt, lo);
  check_family(model.config().fam(), c);
  if (c.rotation) {
    fuse_norms(model);
    rotate_residual(model, rotation_matrix(model.config().hidden, c.rotation_random ? 0x51ed : 0));
    rotate_value_heads(model, rotation_matrix(model.config().head_dim, c.rotation_random ? 0x51ee : 0));
  }
  model::KvQuant kv;
  if (c.kv_bits > 0) kv.kind = model::KvQuant::Kind::integer, kv.bits = c.kv_bits, kv.group = c.kv_group;
  model.set_kv_quant(kv);

  QuantOutput out;
  QoqRun q{.in = in, .c = c, .model = model, .mc = model.config(), .kv = kv, .out = out};
  BlockLoopOptions loop;
  // Static activation scales are not in the saved block state: such runs start over.
  loop.resumable = !c.a_static;
  loop.on_resumed = [&](int64_t l) {
    for (auto& [name, lin] : model.layers()[static_cast<std::size_t>(l)].linears()) {
      const std::string full = "model.layers." + std::to_string(l) + "." + name;
      q.set_act(full, *lin, q.plan(full), at::Tensor());
    }
  };
  run_blocks(in, model, ids, out, loop, [&](BlockStep& step) {
    if (c.kv_bits > 0 && c.yx.enabled) q.smooth_keys(step);
    if (c.xw.enabled) q.smooth_consumers(step);
    q.reorder(step);
    q.quantize_weights(step);
  });
  if (c.rotation) collect_outside(*in.ckpt, model, out);
  out.quantization_config = {
      {"quant_method", "qoq"},        {"format", "fake_quant"},   {"lmquant_preset", c.preset},    {"qoq", c.to_json()},
      {"activations", q.activations}, {"kv_cache", kv.to_json()}, {"overrides", p.layer_overrides}};
  return out;
}

QuantOutput LmQuantAlgorithm::run(const QuantInputs& in) {
  const LmQuantParams lp = lmquant_params().parse(in.params);
  const std::string preset = lp.quant_type;
  if (preset == "g128" || preset == "gchn") return QoqAlgorithm().run(in);
  // The presets run SmoothQuant, AWQ or GPTQ with their typed parameters at
  // those algorithms' own defaults; the per-Linear plan (the section's
  // overrides) is the same.
  std::unique_ptr<QuantAlgorithm> algo;
  if (preset == "sq_dynamic" || preset == "sq_static") {
    algo = std::make_unique<SmoothQuantAlgorithm>(lmquant_smoothquant(lp));
  } else if (preset == "awq") {
    AwqParams awq;
    awq.layer_overrides = lp.layer_overrides;
    algo = std::make_unique<AwqAlgorithm>(awq);
  } else if (preset == "gptq") {
    GptqParams gptq;
    gptq.layer_overrides = lp.layer_overrides;
    algo = std::make_unique<GptqAlgorithm>(gptq);
  } else {
    throw Error(ErrorKind::invalid_input, "llm.LMQuant.quant_type: unknown preset '" + preset + "'");
  }
  auto out = algo->run(in);
  out.quantization_config["lmquant_preset"] = preset;
  return out;
}

std::unique_ptr<QuantAlgorithm> make_lmquant() { return std::make_unique<LmQuantAlgorithm>(); }

}  // namespace qjobs::quant

#include "jobs/quant/seq_mse.hpp"
#include "jobs/quant/seq_mse_params.hpp"

#include <algorithm>
#include <cmath>
#include <ATen/core/grad_mode.h>

#include "common/error.hpp"
#include "common/job_dir.hpp"
#include "jobs/model/checkpoint.hpp"
#include "jobs/quant/calibration.hpp"
#include "jobs/quant/layer_plan.hpp"

namespace qjobs::quant {

namespace fs = std::filesystem;
using nlohmann::json;

QuantizedWeight quantize_with_range_fraction(const at::Tensor& w, const at::Tensor& fraction, int bits,
                                             bool zero_point) {
  QuantizedWeight q;
  q.group_size = w.size(1);
  if (zero_point) {
    const double qmax = (1 << bits) - 1;
    const auto mx = std::get<0>(w.max(1, true)) * fraction;
    const auto mn = std::get<0>(w.min(1, true)) * fraction;
    q.scales = (mx - mn).clamp_min(1e-5) / qmax;
    q.zeros = at::clamp(at::round(-mn / q.scales), 0, qmax);
    q.codes = at::clamp(at::round(w / q.scales) + q.zeros, 0, qmax);
  } else {
    const double qmax = (1 << (bits - 1)) - 1, qmin = -(1 << (bits - 1));
    q.scales = (w.abs().amax(1, true) * fraction).clamp_min(1e-5) / qmax;
    q.codes = at::clamp(at::round(w / q.scales), qmin, qmax);
  }
  return q;
}

namespace {

at::Tensor dequantized(const QuantizedWeight& q) {
  return q.zeros.defined() ? (q.codes - q.zeros) * q.scales : q.codes * q.scales;
}

// Loss per output channel of y_hat against y ([tokens, out]), summed over
// the rows; sqnr per window, summed over windows.
at::Tensor channel_loss(const at::Tensor& y, const at::Tensor& y_hat, SeqMseLoss loss, int64_t windows) {
  const auto d = y_hat - y;
  switch (loss) {
    case SeqMseLoss::mse:
      return d.square().sum(0);
    case SeqMseLoss::l1:
      return d.abs().sum(0);
    case SeqMseLoss::sqnr: {
      const int64_t rows = y.size(0) / windows;
      const auto sig = y.reshape({windows, rows, -1}).square().mean(1);
      const auto noise = d.reshape({windows, rows, -1}).square().mean(1);
      return (-10.0 * at::log10(sig / (noise + 1e-10))).sum(0);
    }
  }
  return {};
}

// The mse loss of every output channel without the candidate's output:
// sum over tokens of (x . d_r)^2 = d_r H d_r^T with H = X^T X of the
// group's columns, d = the candidate's weights minus the float ones. One
// [rows, g] x [g, g] product per candidate instead of a [tokens, g] x
// [g, rows] one (g / tokens of the work), in float64 so that near-equal
// candidates are told apart at least as well as by the outputs in float32.
at::Tensor channel_mse_from_hessian(const at::Tensor& d, const at::Tensor& h) {
  const auto dd = d.to(at::kDouble);
  return (at::matmul(dd, h) * dd).sum(1);
}

}  // namespace

SeqMseResult seq_mse_quantize(const at::Tensor& w_in, const at::Tensor& x_in, const WeightQuantConfig& cfg,
                              const SeqMseOptions& o) {
  at::NoGradGuard no_grad;
  if (w_in.dim() != 2 || x_in.dim() != 2 || x_in.size(1) != w_in.size(1))
    throw Error(ErrorKind::internal, "seq_mse_quantize: w [out, in] and x [tokens, in] do not match");
  if (o.candidates < 1) throw Error(ErrorKind::invalid_input, "NUM_CANDIDATES must be at least 1");
  if (cfg.bits < 2 || cfg.bits > 8) throw Error(ErrorKind::invalid_input, "bits must be in [2, 8]");
  if (o.windows < 1 || x_in.size(0) % o.windows != 0)
    throw Error(ErrorKind::internal, "seq_mse_quantize: rows are not whole windows");
  const auto w = w_in.to(at::kFloat).contiguous();
  const auto x = x_in.to(at::kFloat);
  const int64_t rows = w.size(0), cols = w.size(1);
  const int64_t g = cfg.group_size <= 0 ? cols : std::min(cfg.group_size, cols);
  const int64_t groups = (cols + g - 1) / g;
  const auto opts = w.options();
  SeqMseResult r;
  r.candidate = at::empty({rows, groups}, opts.dtype(at::kLong));
  std::vector<at::Tensor> codes, scales, zeros;
  for (int64_t j = 0; j < groups; ++j) {
    const int64_t c0 = j * g, width = std::min(g, cols - c0);
    const auto wj = w.narrow(1, c0, width);
    const auto xj = x.narrow(1, c0, width);
    // mse: the group's input Gram matrix, once; l1 and sqnr: the group's
    // share of the float output, which every candidate is scored against.
    const bool quadratic = o.loss == SeqMseLoss::mse;
    const auto h = quadratic ? at::matmul(xj.t().to(at::kDouble), xj.to(at::kDouble)) : at::Tensor();
    const auto y = quadratic ? at::Tensor() : at::matmul(xj, wj.t());
    at::Tensor best_loss, best;
    for (int64_t c = 0; c < o.candidates; ++c) {
      const double f = static_cast<double>(c + 1) / static_cast<double>(o.candidates);
      const auto q = quantize_with_range_fraction(wj, at::full({rows, 1}, f, opts), cfg.bits, cfg.zero_point);
      const auto loss = quadratic ? channel_mse_from_hessian(dequantized(q) - wj, h)
                                  : channel_loss(y, at::matmul(xj, dequantized(q).t()), o.loss, o.windows);
      if (c == 0) {
        best_loss = loss;
        best = at::zeros({rows}, opts.dtype(at::kLong));
      } else {
        // Ties keep the smaller range, as argmin over the stacked losses does.
        const auto better = loss < best_loss;
        best_loss = at::where(better, loss, best_loss);
        best = at::where(better, at::full_like(best, c), best);
      }
    }
    r.candidate.select(1, j).copy_(best);
    const auto fraction = ((best + 1).to(at::kFloat) / static_cast<double>(o.candidates)).unsqueeze(1);
    const auto q = quantize_with_range_fraction(wj, fraction, cfg.bits, cfg.zero_point);
    codes.push_back(q.codes);
    scales.push_back(q.scales);
    if (cfg.zero_point) zeros.push_back(q.zeros);
  }
  r.q.codes = at::cat(codes, 1).to(at::kInt);
  r.q.scales = at::cat(scales, 1);
  if (cfg.zero_point) r.q.zeros = at::cat(zeros, 1).to(at::kInt);
  r.q.group_size = g;
  r.weight = r.q.dequantize();
  return r;
}

namespace {

SeqMseLoss loss_named(const std::string& s) {
  if (s == "mse") return SeqMseLoss::mse;
  if (s == "l1") return SeqMseLoss::l1;
  if (s == "sqnr") return SeqMseLoss::sqnr;
  throw Error(ErrorKind::invalid_input, "LOSS_FN must be mse, l1 or sqnr");
}

// The static input scales of the finished blocks, beside the block states,
// so that a resumed run has those of the blocks it does not run again.
class ActivationState {
 public:
  ActivationState(const fs::path& state_dir, std::string fingerprint) : fp_(std::move(fingerprint)) {
    if (state_dir.empty()) return;
    file_ = state_dir / "seq_mse_activations.json";
    if (!fs::exists(file_)) return;
    const auto j = json::parse(read_file(file_), nullptr, false);
    if (j.is_object() && j.value("fingerprint", "") == fp_ && j.contains("layers") && j["layers"].is_object())
      layers_ = j["layers"];
  }
  json restored(int64_t layer) const {
    const auto key = std::to_string(layer);
    if (!layers_.contains(key))
      throw Error(ErrorKind::internal,
                  "the saved state has block " + key +
                      " but not its activation scales (seq_mse_activations.json); remove the job's state folder");
    return layers_[key];
  }
  void save(int64_t layer, const json& acts) {
    layers_[std::to_string(layer)] = acts;
    if (!file_.empty()) write_file_atomic(file_, json{{"fingerprint", fp_}, {"layers", layers_}}.dump());
  }

 private:
  fs::path file_;
  std::string fp_;
  json layers_ = json::object();
};

}  // namespace

QuantOutput SequentialMseAlgorithm::run(const QuantInputs& in) {
  at::NoGradGuard no_grad;
  const SeqMseParams p = seq_mse_params().parse(in.params);
  SeqMseOptions opt;
  opt.candidates = p.num_candidates;
  opt.loss = loss_named(p.loss_fn);
  const std::string symmetry = p.inp_symmetry;
  if (symmetry != "symqt" && symmetry != "symfp")
    throw Error(ErrorKind::invalid_input, "INP_SYMMETRY must be symqt or symfp (AIMET's asym is not built)");
  const bool float_inputs = symmetry == "symfp";
  // AIMET's LPBQ: the search runs on plain blocks (as AIMET's does), then
  // each row's block scales become 4-bit multiples of one per-channel scale.
  const bool lpbq = p.lpbq;
  if (lpbq && p.zero_point) throw Error(ErrorKind::invalid_input, "LPBQ is symmetric: set ZERO_POINT: false");
  auto ids = in.calibration();
  if (p.num_batches) ids = ids.narrow(0, 0, std::min<int64_t>(ids.size(0), *p.num_batches));
  auto model = model::LlamaModel::load(*in.ckpt, in.compute);
  QuantOutput out;
  json activations = json::object();
  ActivationState saved(in.state_dir,
                        in.state_dir.empty() ? "" : calibration_fingerprint(*in.ckpt, in.params, ids, model.dtype()));
  double fraction_sum = 0;
  int64_t fraction_count = 0;
  BlockLoopOptions loop;
  loop.on_resumed = [&](int64_t l) {
    const json block = saved.restored(l);
    for (auto& [name, a] : block.items()) activations[name] = a;
  };
  run_blocks(in, model, ids, out, loop, [&](BlockStep& step) {
    const int64_t l = step.index;
    // Attention inputs, then o, then the MLP's inputs, then its outputs: each
    // group's inputs are taken after the groups before it are quantized (symqt).
    const auto order = step.layer.sequential_groups();
    const auto input_of = step.layer.input_sources();
    std::map<std::string, model::Linear*> linears;
    for (auto& [name, lin] : step.layer.linears()) linears[name] = lin;
    std::map<std::string, at::Tensor> float_xs;
    if (float_inputs) {
      // The next block and every Linear here see full-precision inputs.
      step.next = step.engine.forward(l);
      float_xs = step.engine.capture_inputs(l, step.layer.input_names());
    }
    json block_acts = json::object();
    for (const auto& group : order) {
      std::map<std::string, at::Tensor> xs;
      if (float_inputs) {
        for (const auto& name : group) xs[name] = float_xs.at(input_of.at(name));
      } else {
        xs = step.engine.capture_inputs(l, group);
      }
      for (const auto& name : group) {
        const std::string full = step.prefix + name;
        const auto plan = quant_for(in.plan, full, RangeMode::min_max);
        if (plan.skip) {
          out.ignored.push_back(full);
          continue;
        }
        model::Linear& lin = *linears.at(name);
        const auto& x = xs.at(name);
        const auto w0 = lin.weight.to(at::kFloat);
        SeqMseOptions o = opt;
        o.windows = ids.size(0);
        auto r = seq_mse_quantize(w0, x, plan.cfg, o);
        if (lpbq && plan.cfg.bits < 8 && !plan.cfg.zero_point && r.q.scales.size(1) > 1 &&
            w0.size(1) % r.q.group_size == 0) {
          r.q = quantize_with_scales(w0, lpbq_scales(r.q.scales, plan.cfg.bits), r.q.group_size, plan.cfg.bits);
          r.weight = r.q.dequantize();
        }
        out.int_weights[full] = to_int_weight(r.q, plan.cfg.bits);
        fraction_sum += ((r.candidate + 1).to(at::kDouble) / static_cast<double>(opt.candidates)).mean().item<double>();
        ++fraction_count;
        if (plan.a_bits > 0) {
          model::ActQuant aq;
          aq.kind = model::ActQuant::Kind::int_tensor;
          aq.bits = plan.a_bits;
          aq.scale = std::max(x.abs().max().item<double>() / (std::ldexp(1.0, aq.bits - 1) - 1), 1e-8);
          block_acts[full] = aq.to_json();
        }
        const double norm = std::max(w0.norm().item<double>(), 1e-30);
        step.errors.push_back({full, (r.weight - w0).norm().item<double>() / norm,
                               (r.weight - w0).abs().max().item<double>(), relative_output_error(x, w0, r.weight)});
        lin.weight = r.weight.to(lin.weight.scalar_type());
      }
    }
    for (auto& [name, a] : block_acts.items()) activations[name] = a;
    saved.save(l, block_acts);
  });
  out.quantization_config = {
      {"quant_method", "sequential_mse"},
      {"format", "fake_quant"},
      {"bits", p.w_bit},
      {"group_size", p.group_size},
      {"zero_point", p.zero_point},
      {"num_candidates", opt.candidates},
      {"inp_symmetry", symmetry},
      {"loss_fn", p.loss_fn},
      {"act_bits", p.a_bit},
      {"lpbq", lpbq},
      {"mean_range_fraction", fraction_count > 0 ? fraction_sum / static_cast<double>(fraction_count) : 1.0},
      {"overrides", p.layer_overrides}};
  if (!activations.empty()) out.quantization_config["activations"] = activations;
  return out;
}

std::unique_ptr<QuantAlgorithm> make_seq_mse() { return std::make_unique<SequentialMseAlgorithm>(); }

}  // namespace qjobs::quant

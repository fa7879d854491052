#include "spec/estimate.hpp"

#include <algorithm>
#include <cmath>

#include "common/error.hpp"
#include "jobs/model/model_config.hpp"
#include "spec/algorithm_catalog.hpp"
#include "spec/export_formats.hpp"
#include "spec/linear_plan.hpp"

namespace qjobs {

using nlohmann::json;

namespace {

// The worker process with libtorch loaded and nothing computed: its RSS,
// measured with /usr/bin/time on this project's CPU build (torch 2.11).
constexpr double kRuntimeBytes = 370.0 * (1 << 20);
// The verify stage's Python (torch, transformers, compressed-tensors
// imported), before it reads the model.
constexpr double kReferenceRuntimeBytes = 600.0 * (1 << 20);
// verify.hpp: the reference runs the whole model only up to this size.
constexpr double kVerifyFunctionParams = 2e9;
// Linear counts above this are not planned one by one (a hostile
// config.json): the output is then sized from the section's own settings.
constexpr double kMaxPlannedLinears = 5e6;

int64_t stored_bytes_per_value(const model::ModelConfig& c) {
  return c.torch_dtype == "float32" ? 4 : c.torch_dtype == "float64" ? 8 : 2;
}

// The model's decoder Linears, one list per layer, as the estimate counts
// them: from decoder_linears (the family's table: fused, expert and shared
// Linears as they are), or for a config with more Linears than are planned
// one by one, each layer's routed experts as one Linear per role.
struct ModelBlocks {
  std::vector<model::DecoderLinear> linears;  // empty when not planned one by one
  std::vector<std::vector<BlockLinear>> layers;
};

BlockLinear block_linear(const model::DecoderLinear& l, const model::ModelConfig& c) {
  using Role = model::DecoderLinear::Role;
  BlockLinear b;
  b.in = l.in;
  b.out = l.out;
  b.input = l.input;
  b.group = l.role == Role::q || l.role == Role::k || l.role == Role::v || l.role == Role::qkv ? 0
            : l.role == Role::o                                                                ? 1
            : l.role == Role::down                                                             ? 3
                                                                                               : 2;
  b.feeds_scores = l.role == Role::q || l.role == Role::k || l.role == Role::qkv;
  b.output_proj = l.role == Role::o || l.role == Role::down;
  if (l.expert >= 0 && c.moe.experts > 0)
    b.token_share = static_cast<double>(c.moe.top_k) / static_cast<double>(c.moe.experts);
  return b;
}

ModelBlocks model_blocks(const model::ModelConfig& c) {
  ModelBlocks m;
  m.layers.resize(static_cast<std::size_t>(c.layers));
  const double per_layer = c.moe.experts > 0 ? 3.0 * static_cast<double>(c.moe.experts) + 7 : 7;
  if (static_cast<double>(c.layers) * per_layer <= kMaxPlannedLinears) {
    m.linears = model::decoder_linears(c);
    for (const auto& l : m.linears) m.layers[static_cast<std::size_t>(l.layer)].push_back(block_linear(l, c));
    return m;
  }
  // Too many to list: a dense Llama block whose MLP Linears stand for all
  // the experts at once (their widths summed, each token seeing top_k).
  using Role = model::DecoderLinear::Role;
  const int64_t h = c.hidden, q = c.heads * c.head_dim, kv = c.kv_heads * c.head_dim;
  for (int64_t i = 0; i < c.layers; ++i) {
    const bool sparse = c.sparse(i);
    const int64_t width = sparse ? c.moe.experts * c.moe.expert_intermediate : c.intermediate;
    const int64_t expert = sparse ? 0 : -1;
    for (const model::DecoderLinear& l :
         {model::DecoderLinear{"q", h, q, i, "q", Role::q}, model::DecoderLinear{"k", h, kv, i, "q", Role::k},
          model::DecoderLinear{"v", h, kv, i, "q", Role::v}, model::DecoderLinear{"o", q, h, i, "o", Role::o},
          model::DecoderLinear{"gate", h, width, i, "gate", Role::gate, expert},
          model::DecoderLinear{"up", h, width, i, "gate", Role::up, expert},
          model::DecoderLinear{"down", width, h, i, "down", Role::down, expert}})
      m.layers[static_cast<std::size_t>(i)].push_back(block_linear(l, c));
  }
  return m;
}

BlockShape block_shape(const model::ModelConfig& c, const ModelBlocks& m, int64_t layer, int64_t samples,
                       int64_t seqlen) {
  BlockShape b;
  b.samples = samples;
  b.seqlen = seqlen;
  b.hidden = c.hidden;
  b.heads = c.heads;
  b.head_dim = c.head_dim;
  b.q_width = c.heads * c.head_dim;
  b.kv_width = c.kv_heads * c.head_dim;
  b.mlp_width = c.sparse(layer) ? c.moe.top_k * c.moe.expert_intermediate + c.moe.shared_intermediate : c.intermediate;
  b.linears = m.layers[static_cast<std::size_t>(layer)];
  for (const auto& l : b.linears) b.params += l.in * l.out;
  return b;
}

// What the perplexity tasks cost: every forward of their windows, twice
// when the original model is evaluated too (the baseline stage).
EstimateStage evaluate_stage(const JobSpec& spec, const model::ModelConfig& c, const ModelBlocks& m, bool quantizes,
                             std::vector<std::string>& notes) {
  EstimateStage s{"evaluate"};
  if (!spec.eval.contains("tasks") || !spec.eval["tasks"].is_array()) return s;
  for (const auto& t : spec.eval["tasks"]) {
    const std::string type = t.value("type", std::string());
    const std::string name = t.value("name", type);
    const bool ppl = type == "ppl" || type == "wikitext-ppl" || type == "c4-ppl";
    const int64_t windows =
        t.contains("num_samples") && t["num_samples"].is_number_integer() ? t["num_samples"].get<int64_t>() : -1;
    const int64_t seqlen =
        t.contains("seqlen") && t["seqlen"].is_number_integer() ? t["seqlen"].get<int64_t>() : int64_t{0};
    if (!ppl || windows <= 0 || seqlen <= 0) {
      notes.push_back("eval task " + name + " is not counted in the time: " +
                      (ppl ? "it reads every window of its text (set num_samples to count it)"
                           : "its cost depends on its items' lengths"));
      continue;
    }
    double flops = 2.0 * static_cast<double>(windows * seqlen) * static_cast<double>(c.hidden * c.vocab);
    for (int64_t l = 0; l < c.layers; ++l) flops += block_shape(c, m, l, windows, seqlen).forward_flops();
    s.gemm_flops += (quantizes ? 2 : 1) * flops;
  }
  return s;
}

// The logits of the largest batch an eval task computes at once:
// batch_size x seqlen x vocab in float32. 0 without tasks.
double eval_logits_bytes(const JobSpec& spec, const model::ModelConfig& c) {
  double most = 0;
  if (!spec.eval.contains("tasks") || !spec.eval["tasks"].is_array()) return most;
  for (const auto& t : spec.eval["tasks"]) {
    const auto get = [&](const char* k, int64_t def) {
      return t.contains(k) && t[k].is_number_integer() ? t[k].get<int64_t>() : def;
    };
    const double tokens = static_cast<double>(get("batch_size", 1)) * static_cast<double>(get("seqlen", 512));
    most = std::max(most, 4 * tokens * static_cast<double>(c.vocab));
  }
  return most;
}

// Bytes of the decoder Linears as the export writes them, from the plan
// of every Linear (its bits, group and skip), or the section's settings
// for a model too large to plan one by one.
// `onnx`: as jobs/export/onnx_llama.hpp's QDQ graph holds them instead:
// one byte a code (two above 8 bits), a float32 scale and for asymmetric
// grids a byte of zero point per group, float32 for Linears left float.
double packed_linear_bytes(const model::ModelConfig& c, const ModelBlocks& m, const quant::WeightScheme& weights,
                           const AlgorithmOutput& output, double stored, bool onnx) {
  const auto packed = [&](double in, double out, int bits, int64_t group, bool zero_point) {
    const double groups = group > 0 && static_cast<int64_t>(in) % group == 0 ? in / static_cast<double>(group) : 1;
    if (onnx) return in * out * (bits > 8 ? 2 : 1) + out * groups * (4 + (zero_point ? 1 : 0));
    if (!output.fp4.empty() || output.w_format != "int") {
      const double block = output.fp4 == "MXFP4" || output.w_format == "mxfp4" ? 32 : 16;
      return in * out * 0.5 + in * out / block + 4;  // E2M1 codes, one byte scale per block
    }
    return in * out * bits / 8.0 + out * groups * (2 + (zero_point ? bits / 8.0 : 0.0));
  };
  if (onnx) stored = 4;
  if (m.linears.empty()) {
    double bytes = 0;
    for (int64_t l = 0; l < c.layers; ++l)
      bytes += static_cast<double>(block_shape(c, m, l, 0, 0).params) * (onnx ? 1 : weights.bits / 8.0);
    return bytes;
  }
  std::vector<LinearShape> shapes;
  shapes.reserve(m.linears.size());
  for (const auto& l : m.linears) shapes.push_back({l.name, l.in, l.out});
  const LinearPlan plan(weights, shapes);
  double bytes = 0;
  for (const auto& l : m.linears) {
    const auto& s = plan.at(l.name);
    const double in = static_cast<double>(l.in), out = static_cast<double>(l.out);
    bytes += s.skip || s.bits >= 16 ? in * out * stored : packed(in, out, s.bits, s.group_size, s.zero_point);
  }
  return bytes;
}

}  // namespace

std::optional<JobEstimate> estimate_job(const JobSpec& spec, const json& config, const DeviceRates* rates, bool gpu,
                                        std::string* why) {
  model::ModelConfig c;
  try {
    c = model::ModelConfig::from_json(config);
  } catch (const Error& e) {
    if (why) *why = e.what();
    return std::nullopt;
  }
  JobEstimate e;
  if (rates) e.rates = *rates;
  const ModelBlocks blocks = model_blocks(c);
  const AlgorithmInfo* algo = find_algorithm(spec.algorithm);
  const bool quantizes = algo != nullptr && algo->name != "Evaluate";
  const double stored = static_cast<double>(stored_bytes_per_value(c));
  const double h = static_cast<double>(c.hidden), vocab = static_cast<double>(c.vocab);
  const double resident = vocab * h * stored * (c.tie_word_embeddings ? 1 : 2);

  // Calibration: every block's work as its algorithm counts it.
  const bool calibrates = quantizes && algorithm_needs_data(*algo, spec.params);
  const int64_t samples = calibrates ? spec.calibration.value("n_samples", algo->calib_samples) : 0;
  const int64_t seqlen = calibrates ? spec.calibration.value("seqlen", algo->calib_seqlen) : 0;
  EstimateStage calib{"calibrate"};
  double working = 0, block_bytes = 0, activations = 0, linear_params = 0;
  if (quantizes) {
    if (!algo->block_work)
      e.notes.push_back(algo->name + " has no cost count of its own: its calibration is counted as " +
                        (calibrates ? "three forwards of each block and every Linear's output error"
                                    : "one rounding of every weight"));
    for (int64_t l = 0; l < c.layers; ++l) {
      const BlockShape b = block_shape(c, blocks, l, samples, seqlen);
      BlockWork w;
      if (algo->block_work) {
        w = algo->block_work(spec.params, b);
      } else {
        w.gemm_flops = calibrates ? 3 * b.forward_flops() + 2 * b.linear_flops() : 0;
        w.elementwise = 14 * static_cast<double>(b.params);
      }
      calib.gemm_flops += w.gemm_flops;
      calib.factor_flops += w.factor_flops;
      calib.elementwise += w.elementwise;
      working = std::max(working, w.working_bytes);
      block_bytes = std::max(block_bytes, 4.0 * static_cast<double>(b.params));
      const double T = static_cast<double>(b.tokens());
      // The block's input and output and the MLP's intermediate, in float32.
      activations = std::max(activations, 4 * T * (2 * h + static_cast<double>(b.mlp_width)));
      linear_params += static_cast<double>(b.params);
    }
    e.stages.push_back(calib);
  } else {
    for (int64_t l = 0; l < c.layers; ++l) linear_params += static_cast<double>(block_shape(c, blocks, l, 0, 0).params);
  }
  auto eval = evaluate_stage(spec, c, blocks, quantizes, e.notes);
  if (eval.gemm_flops > 0) e.stages.push_back(eval);

  if (rates && rates->gemm_flops > 0) {
    e.seconds = 0;
    for (auto& s : e.stages) {
      s.seconds = s.gemm_flops / rates->gemm_flops +
                  s.factor_flops / (rates->factor_flops > 0 ? rates->factor_flops : rates->gemm_flops) +
                  (rates->elementwise > 0 ? s.elementwise / rates->elementwise : 0);
      e.seconds += s.seconds;
    }
    e.notes.push_back("loading the checkpoint and writing the export are not counted in the time");
  }

  // Memory, the largest of the stages: calibrating, the block in float32
  // (and its stored copy), the activations of one forward on the
  // calibration windows and the algorithm's working set (the embeddings are
  // mapped, and only the rows of the windows' tokens are read; the head is
  // not read); evaluating (block by block), the head as stored, one block in
  // float32 and the logits of a batch; verifying a
  // compressed-tensors output, compressed-tensors' reference in its own
  // Python process with the checkpoint mapped and, up to 2e9 parameters,
  // the whole model in float32 (transformers runs it).
  e.original_bytes = static_cast<int64_t>(resident + linear_params * stored);
  const double calibration = block_bytes * 1.5 + activations + working;
  const double model_f32 = (resident / stored + linear_params) * 4;
  const double logits = eval_logits_bytes(spec, c);
  const double head = vocab * h * stored;
  const double evaluation = logits > 0 ? head + block_bytes + logits : 0.0;
  double verify = 0;
  if (quantizes && spec.verify && spec.export_format == "compressed-tensors") {
    const bool function = resident / stored + linear_params <= kVerifyFunctionParams && c.moe.experts == 0;
    verify = kReferenceRuntimeBytes + static_cast<double>(e.original_bytes) + (function ? model_f32 : block_bytes);
    e.notes.push_back(
        "the verify stage (compressed-tensors' reference loader, in Python) is in the host memory figure but not "
        "in the time");
  }
  if (gpu) {
    e.device_bytes = static_cast<int64_t>(std::max(calibration, evaluation));
    e.host_bytes = static_cast<int64_t>(std::max(kRuntimeBytes + resident + linear_params * stored, verify));
  } else {
    e.host_bytes = static_cast<int64_t>(std::max(kRuntimeBytes + std::max(calibration, evaluation), verify));
  }

  // Disk: the output as its format packs it, or while calibrating, the
  // windows' hidden states in float32 (one copy kept between blocks) beside
  // the finished blocks' outputs, which the export then writes out.
  // ONNX (worker/formats/onnx.cpp): the QDQ graph is the output (float32
  // but for the codes); beside it the float graph (all float32) and, while
  // they are written, the model staged as safetensors in its stored dtype.
  const bool onnx = spec.export_format == "onnx";
  double output = static_cast<double>(e.original_bytes), beside = 0;
  if (quantizes && algo->weights && spec.export_format != "fake_quant") {
    try {
      const AlgorithmOutput out = algo->output ? algo->output(spec.params) : AlgorithmOutput{};
      output = resident * (onnx ? 4 / stored : 1) +
               packed_linear_bytes(c, blocks, algo->weights(spec.params), out, stored, onnx);
      if (onnx) beside = (resident / stored + linear_params) * 4 + static_cast<double>(e.original_bytes);
    } catch (const Error&) {
      // A section the algorithm refuses is reported by the spec check.
    }
  }
  e.output_bytes = static_cast<int64_t>(output);
  const double state = calibrates ? 4 * static_cast<double>(samples * seqlen) * h : 0.0;
  e.disk_bytes = static_cast<int64_t>(std::max(output + beside, state + output - resident));
  if (onnx)
    e.notes.push_back(
        "onnx: the output is the QDQ graph (one byte a code, float32 otherwise); the float graph beside it is in "
        "the disk figure");
  if (spec.export_format == "gguf")
    e.notes.push_back("the gguf file is sized as the packed weights; its own layout is not counted");
  return e;
}

json to_json(const DeviceRates& r) {
  return {{"device", r.device},
          {"gemm_gflops", r.gemm_flops / 1e9},
          {"factor_gflops", r.factor_flops / 1e9},
          {"elementwise_per_s", r.elementwise},
          {"measured_at", r.measured_at}};
}

std::optional<DeviceRates> device_rates_from_json(const json& j) {
  if (!j.is_object() || !j.contains("gemm_gflops") || !j["gemm_gflops"].is_number()) return std::nullopt;
  DeviceRates r;
  r.device = j.value("device", std::string());
  r.gemm_flops = j["gemm_gflops"].get<double>() * 1e9;
  r.elementwise = j.contains("elementwise_per_s") && j["elementwise_per_s"].is_number()
                      ? j["elementwise_per_s"].get<double>()
                      : 0.0;
  r.factor_flops =
      j.contains("factor_gflops") && j["factor_gflops"].is_number() ? j["factor_gflops"].get<double>() * 1e9 : 0.0;
  r.measured_at = j.value("measured_at", std::string());
  if (!(r.gemm_flops > 0) || !std::isfinite(r.gemm_flops)) return std::nullopt;
  return r;
}

json to_json(const JobEstimate& e) {
  json stages = json::array();
  for (const auto& s : e.stages)
    stages.push_back({{"name", s.name},
                      {"gflop", s.gemm_flops / 1e9},
                      {"factor_gflop", s.factor_flops / 1e9},
                      {"elementwise_g", s.elementwise / 1e9},
                      {"seconds", s.seconds >= 0 ? json(s.seconds) : json(nullptr)}});
  return {{"seconds", e.seconds >= 0 ? json(e.seconds) : json(nullptr)},
          {"stages", stages},
          {"host_bytes", e.host_bytes},
          {"device_bytes", e.device_bytes},
          {"disk_bytes", e.disk_bytes},
          {"output_bytes", e.output_bytes},
          {"original_bytes", e.original_bytes},
          {"rates", e.rates ? to_json(*e.rates) : json(nullptr)},
          {"notes", e.notes}};
}

}  // namespace qjobs

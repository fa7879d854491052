#include "jobs/quant/lmquant_params.hpp"

#include <algorithm>
#include <string>
#include <vector>

#include "common/error.hpp"
#include "jobs/quant/awq_params.hpp"
#include "jobs/quant/weight_only_params.hpp"

namespace qjobs::quant {
using nlohmann::json;
namespace {

// The value at a dotted path below `j`, or nullptr.
const json* at_path_impl(const json& j, std::initializer_list<const char*> path) {
  const json* cur = &j;
  for (const char* k : path) {
    if (!cur->is_object() || !cur->contains(k)) return nullptr;
    cur = &(*cur)[k];
  }
  return cur->is_null() ? nullptr : cur;
}

// Bits of a deepcompressor dtype name; 0 for none.
int dtype_bits(const std::string& key, const std::string& d, const std::vector<std::string>& allowed) {
  if (std::find(allowed.begin(), allowed.end(), d) == allowed.end()) {
    std::string list;
    for (const auto& a : allowed) list += (list.empty() ? "" : ", ") + a;
    throw Error(ErrorKind::invalid_input, key + ": '" + d + "' is not supported here (" + list + ")");
  }
  if (d == "none" || d == "null") return 0;
  return std::stoi(d.substr(d.find_first_of("0123456789")));
}

void read_smooth(const json& q, const char* branch, SmoothSetting& s) {
  if (const auto* v = at_path(q, {"smooth", branch, "strategy"})) s.strategy = v->get<std::string>();
  if (const auto* v = at_path(q, {"smooth", branch, "alpha"})) s.alpha = v->get<double>();
  if (const auto* v = at_path(q, {"smooth", branch, "beta"})) s.beta = v->get<double>();
  if (const auto* v = at_path(q, {"smooth", branch, "num_grids"})) s.num_grids = v->get<int>();
}

json smooth_json(const SmoothSetting& s) {
  return {{"enabled", s.enabled},
          {"strategy", s.strategy},
          {"alpha", s.alpha},
          {"beta", s.beta},
          {"num_grids", s.num_grids}};
}

ParamSpec smooth_branch(std::string name, std::string desc) {
  return param::section(
      std::move(name), std::move(desc),
      {
          param::number("alpha", "smoothing exponent on activations", nullptr, 0, 1),
          param::number("beta", "smoothing exponent on weights (negative: 1 - alpha)", nullptr),
          param::string("strategy", "search strategy", nullptr, {"Manual", "GridSearch"}),
          param::integer("num_grids", "grid points of the search", nullptr, 1, 1000),
          param::string("outputs_device", "where calibration outputs are kept", nullptr, {"cpu", "cuda", "auto"}),
      });
}

}  // namespace

const ParamTable<LmQuantParams>& lmquant_params() {
  static const auto t = [] {
    const std::vector<std::string> dtypes = {"float16",       "bfloat16",       "float32",
                                             "torch.float16", "torch.bfloat16", "torch.float32"};
    return ParamTable<LmQuantParams>()
        .add(&LmQuantParams::save_model, param::boolean("save_model", "package the quantized checkpoint", nullptr))
        .add(&LmQuantParams::keep_scales, param::boolean("keep_scales", "keep the scales in the checkpoint", nullptr))
        .add(&LmQuantParams::loads_with_qserve,
             param::boolean("loads_with_qserve", "pack for the QServe runtime", nullptr))
        .add(&LmQuantParams::dtype, param::string("dtype", "compute dtype of calibration", nullptr, dtypes))
        .add(&LmQuantParams::quant_type, param::string("quant_type", "QoQ preset", nullptr,
                                                       {"g128", "gchn", "sq_dynamic", "sq_static", "awq", "gptq"}))
        .add(&LmQuantParams::quant,
             param::section(
                 "quant", "QoQ quantization settings (deepcompressor's quant.* keys); unset keys keep the preset",
                 {
                     param::string("develop_dtype", "dtype of statistics", nullptr, dtypes),
                     param::boolean("enable_rotation",
                                    "Hadamard rotation of the residual stream and of values per head", nullptr),
                     param::section("rotation", "rotation",
                                    {param::boolean("random", "random signs on the Hadamard matrix", nullptr)}),
                     param::boolean("enable_smooth", "all smoothing (xw and yx)", nullptr),
                     param::section("smooth", "smoothing",
                                    {param::boolean("enable_xw", "smooth v -> o_proj and up -> down_proj", nullptr),
                                     param::boolean("enable_yx", "SmoothAttention on keys after RoPE", nullptr),
                                     smooth_branch("xw", "activation -> weight smoothing (v -> o, up -> down)"),
                                     smooth_branch("yx", "SmoothAttention on keys (beta: exponent on queries)")}),
                     param::boolean("enable_reorder", "reorder down_proj's input channels by magnitude", nullptr),
                     param::section(
                         "wgts", "weight quantization",
                         {param::string("dtype", "weight type", nullptr, {"uint4", "uint8"}),
                          param::integer("group_size", "columns per group; -1 = per output channel", nullptr, -1,
                                         1 << 20),
                          param::boolean("progressive", "int8 per channel in [-119, 119], then integer group scales",
                                         nullptr),
                          param::boolean("enable_calib_range", "activation-aware clipping", nullptr),
                          param::section(
                              "calib_range", "activation-aware clipping",
                              {param::number("max_shrink", "largest shrink of a group's range", nullptr, 0, 0.99),
                               param::integer("num_grids", "grid points of the shrink search", nullptr, 1, 1000),
                               param::string("outputs_device", "where outputs are kept", nullptr,
                                             {"cpu", "cuda", "auto"})}),
                          param::boolean("enable_kernel_gptq", "GPTQ on the QoQ grid", nullptr),
                          param::section(
                              "kernel_gptq", "GPTQ",
                              {param::number("damp_percentage", "damping as a share of the mean Hessian diagonal",
                                             nullptr, 0, 1),
                               param::integer("block_size", "columns per lazy update block", nullptr, 1, 1 << 16)})}),
                     param::section(
                         "ipts", "input activations of the Linears",
                         {param::string("dtype", "activation type", nullptr, {"sint8", "sint16", "none", "null"}),
                          param::boolean("static", "one calibrated scale per tensor instead of one per token",
                                         nullptr)}),
                     param::section(
                         "opts", "KV cache (asymmetric, per token per head)",
                         {param::string("dtype", "KV type", nullptr, {"uint4", "uint8", "none", "null"}),
                          param::integer("group_size", "channels per group; 0 = the whole head", nullptr, 0, 1 << 16)}),
                     param::section("reorder", "channel reordering",
                                    {param::string("outputs_device", "where outputs are kept", nullptr,
                                                   {"cpu", "cuda", "auto"})}),
                 }))
        .add(&LmQuantParams::layer_overrides, layer_overrides_spec(true))
        .add(&LmQuantParams::eval,
             param::section("eval", "evaluation after quantization",
                            {
                                param::string_list("tasks", "tasks such as wikitext or arc_challenge:25"),
                                param::integer("max_seq_length", "longest sequence evaluated", nullptr, 1, 1 << 20),
                                param::string("evaluator", "evaluation harness", nullptr, {"lm_eval", "gptq"}),
                            }));
  }();
  return t;
}

const json* at_path(const json& j, std::initializer_list<const char*> path) { return at_path_impl(j, path); }

QoqConfig QoqConfig::from_lmquant(const json& section) {
  const LmQuantParams lp = lmquant_params().parse(section);
  QoqConfig c;
  c.preset = lp.quant_type;
  if (c.preset == "gchn") c.w_group = -1, c.progressive = false, c.kv_bits = 8;
  else if (c.preset != "g128")
    throw Error(ErrorKind::invalid_input, "llm.LMQuant.quant_type: QoQ runs g128 or gchn, not " + c.preset);
  const json q = lp.quant.is_object() ? lp.quant : json::object();
  const auto b = [&](std::initializer_list<const char*> path, bool& dst) {
    if (const auto* v = at_path_impl(q, path)) dst = v->get<bool>();
  };
  if (const auto* v = at_path_impl(q, {"wgts", "dtype"}))
    c.w_bits = dtype_bits("llm.LMQuant.quant.wgts.dtype", v->get<std::string>(), {"uint4", "uint8"});
  if (const auto* v = at_path_impl(q, {"wgts", "group_size"})) c.w_group = v->get<int64_t>();
  b({"wgts", "progressive"}, c.progressive);
  b({"wgts", "enable_calib_range"}, c.calib_range);
  if (const auto* v = at_path_impl(q, {"wgts", "calib_range", "max_shrink"})) c.max_shrink = v->get<double>();
  if (const auto* v = at_path_impl(q, {"wgts", "calib_range", "num_grids"})) c.clip_grids = v->get<int>();
  b({"wgts", "enable_kernel_gptq"}, c.gptq);
  if (const auto* v = at_path_impl(q, {"wgts", "kernel_gptq", "damp_percentage"})) c.damp = v->get<double>();
  if (const auto* v = at_path_impl(q, {"wgts", "kernel_gptq", "block_size"})) c.gptq_block = v->get<int64_t>();
  if (const auto* v = at_path_impl(q, {"ipts", "dtype"}))
    c.a_bits = dtype_bits("llm.LMQuant.quant.ipts.dtype", v->get<std::string>(), {"sint8", "sint16", "none", "null"});
  b({"ipts", "static"}, c.a_static);
  if (const auto* v = at_path_impl(q, {"opts", "dtype"}))
    c.kv_bits = dtype_bits("llm.LMQuant.quant.opts.dtype", v->get<std::string>(), {"uint4", "uint8", "none", "null"});
  if (const auto* v = at_path_impl(q, {"opts", "group_size"})) c.kv_group = v->get<int64_t>();
  b({"enable_rotation"}, c.rotation);
  b({"rotation", "random"}, c.rotation_random);
  bool smooth = true;
  b({"enable_smooth"}, smooth);
  b({"smooth", "enable_xw"}, c.xw.enabled);
  b({"smooth", "enable_yx"}, c.yx.enabled);
  if (!smooth) c.xw.enabled = c.yx.enabled = false;
  read_smooth(q, "xw", c.xw);
  read_smooth(q, "yx", c.yx);
  b({"enable_reorder"}, c.reorder);
  return c;
}

json QoqConfig::to_json() const {
  return {{"preset", preset},
          {"weights",
           {{"bits", w_bits},
            {"group_size", w_group},
            {"progressive", progressive},
            {"protective_range", progressive ? kQoqProtectiveRange : 0},
            {"calib_range", calib_range},
            {"max_shrink", max_shrink},
            {"gptq", gptq},
            {"damp_percent", damp}}},
          {"activations", {{"bits", a_bits}, {"static", a_static}, {"granularity", a_static ? "tensor" : "token"}}},
          {"kv_cache", {{"bits", kv_bits}, {"group_size", kv_group}, {"granularity", "token, head"}}},
          {"rotation", {{"enabled", rotation}, {"random", rotation_random}}},
          {"smooth_xw", smooth_json(xw)},
          {"smooth_attention", smooth_json(yx)},
          {"reorder", reorder}};
}

AlgorithmInfo lmquant_info() {
  AlgorithmInfo a{"LMQuant",
                  "QoQ W4A8KV4 (g128, gchn) with rotation, smoothing and GPTQ; sq_*, awq, gptq presets by delegation; "
                  "compressed-tensors W4A8",
                  true,
                  lmquant_params().specs(),
                  128,
                  512};
  a.weights = [](const json& s) { return lmquant_weights(s); };
  a.output = [](const json& s) {
    const std::string preset = lmquant_params().parse(s).quant_type;
    if (preset == "awq" || preset == "gptq")
      return AlgorithmOutput{.int_weight_only = true, .int_weights = true, .onnx_encodings = true};
    if (preset == "g128" || preset == "gchn") return AlgorithmOutput{.int_weights = true};
    return AlgorithmOutput{};  // sq_*: W8A8
  };
  a.check = [](const json& s, const std::string&) {
    std::vector<SectionFinding> out;
    const LmQuantParams p = lmquant_params().parse(s);
    // QServe's packing is not written: say so at submission, not after calibration.
    if (p.loads_with_qserve)
      out.push_back(
          {{"loads_with_qserve"},
           true,
           "packing for the QServe runtime is not built; set False (the job writes a fake-quant checkpoint that "
           "records W4A8KV4 in config.json)"});
    // The sq_*/awq/gptq presets delegate to SmoothQuant, AWQ or GPTQ: of the
    // quant.* keys only quant.smooth.xw.alpha and (sq_*) quant.enable_smooth
    // reach them; the others are named, not dropped silently.
    const std::string preset = p.quant_type;
    if (preset == "g128" || preset == "gchn" || !p.quant.is_object()) return out;
    const bool sq = preset == "sq_dynamic" || preset == "sq_static";
    std::vector<std::vector<std::string>> leaves;
    std::vector<std::pair<const json*, std::vector<std::string>>> stack{{&p.quant, {"quant"}}};
    while (!stack.empty()) {
      auto [j, path] = stack.back();
      stack.pop_back();
      if (j->is_object()) {
        for (auto it = j->rbegin(); it != j->rend(); ++it) {
          auto child = path;
          child.push_back(it.key());
          stack.push_back({&*it, std::move(child)});
        }
      } else if (!j->is_null()) {
        leaves.push_back(path);
      }
    }
    for (const auto& leaf : leaves) {
      std::string dotted;
      for (const auto& k : leaf) dotted += (dotted.empty() ? "" : ".") + k;
      if (sq && (dotted == "quant.smooth.xw.alpha" || dotted == "quant.enable_smooth")) continue;
      if (dotted.find("develop_dtype") != std::string::npos || dotted.find("device") != std::string::npos) continue;
      if (out.size() >= 100) break;
      out.push_back({leaf, false,
                     "has no effect with quant_type " + preset + ": it runs " +
                         (sq ? std::string("SmoothQuant (alpha from quant.smooth.xw.alpha, smoothing off with "
                                           "quant.enable_smooth: false)")
                          : preset == "awq" ? std::string("AWQ W4 g128")
                                            : std::string("GPTQ W4 g128"))});
    }
    return out;
  };
  return a;
}

SmoothQuantParams lmquant_smoothquant(const LmQuantParams& p) {
  SmoothQuantParams sq;
  const json q = p.quant.is_object() ? p.quant : json::object();
  if (const auto* v = at_path_impl(q, {"smooth", "xw", "alpha"})) sq.alpha = v->get<double>();
  sq.act = p.quant_type == "sq_dynamic" ? "dynamic" : "static";
  // quant.enable_smooth: false is W8A8 without smoothing (it used to change nothing).
  if (const auto* v = at_path_impl(q, {"enable_smooth"}); v && v->is_boolean()) sq.smoothing = v->get<bool>();
  sq.layer_overrides = p.layer_overrides;
  return sq;
}

WeightScheme lmquant_weights(const json& section) {
  const LmQuantParams p = lmquant_params().parse(section);
  WeightScheme w;
  w.overrides = linear_overrides(p.layer_overrides);
  if (p.quant_type == "g128" || p.quant_type == "gchn") {
    // QoQ: asymmetric weights at the preset's (or quant.wgts') bits and group, A_BIT from quant.ipts.
    const QoqConfig c = QoqConfig::from_lmquant(section);
    w.bits = c.w_bits;
    w.group_size = c.w_group;
    w.zero_point = true;
    w.a_bits = c.a_bits;
  } else if (p.quant_type == "awq" || p.quant_type == "gptq") {
    // AWQ and GPTQ at their own defaults: W4 g128, asymmetric.
    const AwqParams d{};
    w.bits = static_cast<int>(d.w_bit);
    w.group_size = d.group_size;
    w.zero_point = d.zero_point;
  }
  return w;
}

}  // namespace qjobs::quant

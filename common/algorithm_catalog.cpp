#include "common/algorithm_catalog.hpp"

namespace qjobs {
namespace {

using nlohmann::json;

ParamSpec integer(std::string name, std::string desc, json def, double lo, double hi) {
  ParamSpec p{.name = std::move(name), .type = ParamType::integer, .description = std::move(desc),
              .default_value = std::move(def)};
  p.min = lo;
  p.max = hi;
  return p;
}

ParamSpec number(std::string name, std::string desc, json def, double lo = -1e300,
                 double hi = 1e300) {
  ParamSpec p{.name = std::move(name), .type = ParamType::number, .description = std::move(desc),
              .default_value = std::move(def)};
  p.min = lo;
  p.max = hi;
  return p;
}

ParamSpec boolean(std::string name, std::string desc, json def) {
  return ParamSpec{.name = std::move(name), .type = ParamType::boolean,
                   .description = std::move(desc), .default_value = std::move(def)};
}

ParamSpec string(std::string name, std::string desc, json def,
                 std::vector<std::string> choices = {}) {
  return ParamSpec{.name = std::move(name), .type = ParamType::string,
                   .description = std::move(desc), .default_value = std::move(def),
                   .choices = std::move(choices)};
}

ParamSpec string_list(std::string name, std::string desc) {
  return ParamSpec{.name = std::move(name), .type = ParamType::string_list,
                   .description = std::move(desc)};
}

ParamSpec section(std::string name, std::string desc, std::vector<ParamSpec> children) {
  return ParamSpec{.name = std::move(name), .type = ParamType::section,
                   .description = std::move(desc), .children = std::move(children)};
}

std::optional<std::string> group_size_rule(const json& v) {
  const auto g = v.get<long long>();
  if (g == -1 || g >= 1) return std::nullopt;
  return "must be -1 (one group per output channel) or a positive group size";
}

ParamSpec layer_overrides(bool activations = false) {
  auto group = integer("Q_GROUP_SIZE", "group size for the matching Linears", nullptr, -1, 1 << 20);
  group.check = group_size_rule;
  ParamSpec p{.name = "LAYER_OVERRIDES", .type = ParamType::section_list,
              .description = "per-Linear settings; the first entry whose glob pattern matches the name wins"};
  p.children = {string("pattern", "glob over names such as model.layers.0.mlp.down_proj", nullptr),
                integer("W_BIT", "bits for the matching Linears", nullptr, 2, 8), std::move(group),
                boolean("ZERO_POINT", "asymmetric for the matching Linears", nullptr),
                boolean("SKIP", "keep the matching Linears unquantized", nullptr)};
  if (activations)
    p.children.push_back(integer("A_BIT", "input activation bits of the matching Linears (16: 16-bit, 0: full precision)",
                                 nullptr, 0, 16));
  return p;
}

// Keys AutoAWQ's section uses in Nyuntam; RTN shares them so that switching
// ALGORITHM between the two needs no other edit.
std::vector<ParamSpec> weight_only_params(std::string version_default) {
  auto group = integer("Q_GROUP_SIZE", "input columns per quantization group; -1 = per output channel",
                       128, -1, 1 << 20);
  group.check = group_size_rule;
  return {
      integer("W_BIT", "weight bits", 4, 2, 8),
      std::move(group),
      boolean("ZERO_POINT", "asymmetric (with zero point) when true, symmetric when false", true),
      string("VERSION", "AutoAWQ kernel layout of the packed checkpoint", std::move(version_default),
             {"GEMM", "GEMV", "GEMV_FAST", "Marlin"}),
      layer_overrides(),
  };
}

std::vector<ParamSpec> awq_params() {
  auto p = weight_only_params("GEMM");
  p.push_back(integer("N_GRID", "grid points of the scale search", 20, 2, 1000));
  p.push_back(boolean("DUO_SCALING", "scale by activation and weight statistics (AutoAWQ's default)", true));
  p.push_back(boolean("CLIP", "search clipping ranges after scaling", true));
  return p;
}

std::vector<ParamSpec> gptq_params() {
  auto p = weight_only_params("GEMM");
  p.push_back(number("DAMP_PERCENT", "damping as a share of the mean Hessian diagonal", 0.01, 0, 1));
  p.push_back(integer("BLOCK_SIZE", "columns per lazy update block", 128, 1, 1 << 16));
  p.push_back(boolean("DESC_ACT", "act-order: columns by decreasing Hessian diagonal", false));
  p.push_back(boolean("STATIC_GROUPS", "group parameters from the weight before updates", false));
  p.push_back(boolean("TRUE_SEQUENTIAL", "q,k,v -> o -> gate,up -> down inside a block", true));
  p.push_back(string("W_FORMAT", "weight grid: int (W_BIT, Q_GROUP_SIZE), or nvfp4 / mxfp4 (FP4 E2M1 blocks of 16 / 32; "
                                 "W_BIT, Q_GROUP_SIZE and ZERO_POINT do not apply)",
                     "int", {"int", "nvfp4", "mxfp4"}));
  return p;
}

// AIMET's SeqMseParams under their spec spelling (num_candidates ->
// NUM_CANDIDATES, ...), over the weight-only keys RTN and GPTQ share.
std::vector<ParamSpec> seq_mse_params() {
  auto p = weight_only_params("GEMM");
  p.back() = layer_overrides(true);
  p.push_back(integer("NUM_CANDIDATES", "range candidates per channel (group): (c + 1) / N of the full range, c = 0 .. N-1", 20,
                      1, 1000));
  p.push_back(integer("NUM_BATCHES", "calibration windows the search uses (AIMET's num_batches); unset: all of them", nullptr, 1,
                      1 << 20));
  p.push_back(string("INP_SYMMETRY", "inputs of both outputs: symqt (of the quantized model) or symfp (of the float model)",
                     "symqt", {"symqt", "symfp"}));
  p.push_back(string("LOSS_FN", "output error minimized per channel (group): mse, l1 or sqnr", "mse", {"mse", "l1", "sqnr"}));
  auto a = integer("A_BIT", "simulated input activation bits, static per tensor (16: w4a16, 8: w4a8; 0: none, weight-only)", 0,
                   0, 16);
  a.check = [](const json& v) -> std::optional<std::string> {
    const auto b = v.get<long long>();
    if (b == 0 || b >= 2) return std::nullopt;
    return "must be 0 (no activation quantization) or 2..16 bits";
  };
  p.push_back(std::move(a));
  p.push_back(boolean("LPBQ", "AIMET's low-power blockwise quantization: each row's block scales as integer multiples "
                              "1..2^(8 - W_BIT) of one per-channel scale (symmetric, Q_GROUP_SIZE blocks; 8-bit Linears "
                              "keep plain blocks)",
                      false));
  return p;
}

std::vector<ParamSpec> hqq_params() {
  auto group = integer("Q_GROUP_SIZE", "input columns per group; -1 = per output channel", 64, -1, 1 << 20);
  group.check = group_size_rule;
  return {integer("W_BIT", "weight bits", 4, 2, 8), std::move(group),
          string("ZERO_POINTS", "real (HQQ's own) or integer (rounded as the last step, what packed formats store); "
                                "unset: integer for a packed export, real for fake_quant", nullptr, {"real", "integer"}),
          layer_overrides()};
}

ParamSpec smooth_branch(std::string name, std::string desc) {
  return section(std::move(name), std::move(desc),
                 {
                     number("alpha", "smoothing exponent on activations", nullptr, 0, 1),
                     number("beta", "smoothing exponent on weights (negative: 1 - alpha)", nullptr),
                     string("strategy", "search strategy", nullptr, {"Manual", "GridSearch"}),
                     integer("num_grids", "grid points of the search", nullptr, 1, 1000),
                     string("outputs_device", "where calibration outputs are kept", nullptr,
                            {"cpu", "cuda", "auto"}),
                 });
}

std::vector<ParamSpec> lmquant_params() {
  const std::vector<std::string> dtypes = {"float16", "bfloat16", "float32", "torch.float16",
                                           "torch.bfloat16", "torch.float32"};
  return {
      boolean("save_model", "package the quantized checkpoint", true),
      boolean("keep_scales", "keep the scales in the checkpoint", true),
      boolean("loads_with_qserve", "pack for the QServe runtime", false),
      string("dtype", "compute dtype of calibration", "float16", dtypes),
      string("quant_type", "QoQ preset", "gchn",
             {"g128", "gchn", "sq_dynamic", "sq_static", "awq", "gptq"}),
      section("quant", "QoQ quantization settings (deepcompressor's quant.* keys); unset keys keep the preset",
              {
                  string("develop_dtype", "dtype of statistics", nullptr, dtypes),
                  boolean("enable_rotation", "Hadamard rotation of the residual stream and of values per head", nullptr),
                  section("rotation", "rotation",
                          {boolean("random", "random signs on the Hadamard matrix", nullptr)}),
                  boolean("enable_smooth", "all smoothing (xw and yx)", nullptr),
                  section("smooth", "smoothing",
                          {boolean("enable_xw", "smooth v -> o_proj and up -> down_proj", nullptr),
                           boolean("enable_yx", "SmoothAttention on keys after RoPE", nullptr),
                           smooth_branch("xw", "activation -> weight smoothing (v -> o, up -> down)"),
                           smooth_branch("yx", "SmoothAttention on keys (beta: exponent on queries)")}),
                  boolean("enable_reorder", "reorder down_proj's input channels by magnitude", nullptr),
                  section("wgts", "weight quantization",
                          {string("dtype", "weight type", nullptr, {"uint4", "uint8"}),
                           integer("group_size", "columns per group; -1 = per output channel", nullptr, -1, 1 << 20),
                           boolean("progressive", "int8 per channel in [-119, 119], then integer group scales", nullptr),
                           boolean("enable_calib_range", "activation-aware clipping", nullptr),
                           section("calib_range", "activation-aware clipping",
                                   {number("max_shrink", "largest shrink of a group's range", nullptr, 0, 0.99),
                                    integer("num_grids", "grid points of the shrink search", nullptr, 1, 1000),
                                    string("outputs_device", "where outputs are kept", nullptr,
                                           {"cpu", "cuda", "auto"})}),
                           boolean("enable_kernel_gptq", "GPTQ on the QoQ grid", nullptr),
                           section("kernel_gptq", "GPTQ",
                                   {number("damp_percentage", "damping as a share of the mean Hessian diagonal", nullptr, 0, 1),
                                    integer("block_size", "columns per lazy update block", nullptr, 1, 1 << 16)})}),
                  section("ipts", "input activations of the Linears",
                          {string("dtype", "activation type", nullptr, {"sint8", "sint16", "none", "null"}),
                           boolean("static", "one calibrated scale per tensor instead of one per token", nullptr)}),
                  section("opts", "KV cache (asymmetric, per token per head)",
                          {string("dtype", "KV type", nullptr, {"uint4", "uint8", "none", "null"}),
                           integer("group_size", "channels per group; 0 = the whole head", nullptr, 0, 1 << 16)}),
                  section("reorder", "channel reordering",
                          {string("outputs_device", "where outputs are kept", nullptr,
                                  {"cpu", "cuda", "auto"})}),
              }),
      layer_overrides(true),
      section("eval", "evaluation after quantization",
              {
                  string_list("tasks", "tasks such as wikitext or arc_challenge:25"),
                  integer("max_seq_length", "longest sequence evaluated", nullptr, 1, 1 << 20),
                  string("evaluator", "evaluation harness", nullptr, {"lm_eval", "gptq"}),
              }),
  };
}

ParamSpec skip_overrides() {
  ParamSpec p{.name = "LAYER_OVERRIDES", .type = ParamType::section_list,
              .description = "Linears kept in full precision; the first entry whose glob pattern matches the name wins"};
  p.children = {string("pattern", "glob over names such as model.layers.0.mlp.down_proj", nullptr),
                boolean("SKIP", "keep the matching Linears unquantized", nullptr)};
  return p;
}

std::vector<ParamSpec> fp4_params(const char* block) {
  return {string("ACT", std::string("activations: none (W4A16) or dynamic (W4A4, FP4 blocks of ") + block + " at run time)", "none",
                 {"none", "dynamic"}),
          skip_overrides()};
}

std::vector<AlgorithmInfo> make_catalog() {
  return {
      {"RTN", "round-to-nearest weight quantization (no calibration)", true,
       weight_only_params("GEMM")},
      {"AutoAWQ", "AWQ activation-aware weight quantization", true, awq_params(), 128, 512},
      {"GPTQ", "GPTQ Hessian-based weight quantization", true, gptq_params(), 128, 2048},
      {"SequentialMSE", "AIMET's Sequential MSE: per channel (group) the weight range minimizing each Linear's output error on "
                        "inputs that carry the earlier Linears' quantization; W4/W8, w4a16 / w8a16 with LAYER_OVERRIDES",
       true, seq_mse_params(), 32, 2048},
      {"HQQ", "half-quadratic calibration-free weight quantization", true, hqq_params()},
      {"SmoothQuant", "W8A8 with activation smoothing (int8 weights and activations; compressed-tensors int-quantized)", true,
       {number("alpha", "migration strength", 0.5, 0, 1),
        string("ACT", "integer activation scales: dynamic (per token) or static (per tensor, calibrated)", "dynamic",
               {"dynamic", "static"}),
        integer("A_BIT", "input activation bits (8; 16 for 16-bit activations)", 8, 2, 16),
        boolean("SMOOTHING", "migrate activation outliers into the weights (false: plain W8A8, as Quark's int8 recipe)", true),
        string("WEIGHT_SCALE", "int8 weight scales per output channel or one per tensor (Quark)", "channel", {"channel", "tensor"}),
        layer_overrides(true)},
       512, 512},
      {"LMQuant", "QoQ W4A8KV4 (g128, gchn) with rotation, smoothing and GPTQ; sq_*, awq, gptq presets by delegation; compressed-tensors W4A8",
       true, lmquant_params(), 128, 512},
      {"FP8", "W8A8 E4M3 with optional FP8 KV cache; compressed-tensors float-quantized", true,
       {boolean("kv_cache", "quantize the KV cache to FP8", false),
        string("ACT", "activation scales: dynamic (per token) or static (per tensor, calibrated)", "dynamic",
               {"dynamic", "static"}),
        string("WEIGHT_SCALE", "weight scales per output channel or per tensor", "channel", {"channel", "tensor"})},
       512, 512},
      {"NVFP4", "FP4 E2M1 weights in blocks of 16 with FP8 E4M3 block scales and a float32 global scale (W4A16, or W4A4 "
                "with a calibrated input global scale); compressed-tensors nvfp4-pack-quantized",
       true, fp4_params("16"), 128, 512},
      {"MXFP4", "FP4 E2M1 weights in blocks of 32 with E8M0 power-of-two scales (W4A16 or W4A4); compressed-tensors "
                "mxfp4-pack-quantized",
       true, fp4_params("32")},
      {"Evaluate", "evaluate an existing checkpoint (full precision or packed); needs eval tasks", true, {}},
  };
}

}  // namespace

std::string_view param_type_name(ParamType t) {
  switch (t) {
    case ParamType::boolean: return "a boolean";
    case ParamType::integer: return "an integer";
    case ParamType::number: return "a number";
    case ParamType::string: return "a string";
    case ParamType::string_list: return "a list of strings";
    case ParamType::section: return "a mapping";
    case ParamType::section_list: return "a list of mappings";
  }
  return "a value";
}

const std::vector<AlgorithmInfo>& algorithm_catalog() {
  static const std::vector<AlgorithmInfo> catalog = make_catalog();
  return catalog;
}

const std::vector<ParamSpec>& calibration_schema() {
  static const std::vector<ParamSpec> schema = {
      string("data_path", "a .txt, .jsonl or .json file or folder (as DATA_PATH)", nullptr),
      string("dataset", "dataset name under the data root (as DATASET_NAME)", nullptr),
      string("subset", "dataset subset (as DATASET_SUBNAME)", nullptr),
      string("split", "split to read", nullptr),
      string("text_column", "comma list of columns (as TEXT_COLUMN)", nullptr),
      integer("n_samples", "calibration windows (default: the algorithm's)", nullptr, 1, 1 << 20),
      integer("seqlen", "tokens per window (default: the algorithm's)", nullptr, 2, 1 << 20),
      integer("seed", "sampling seed", 0, 0, 1e15),
  };
  return schema;
}

const std::vector<ParamSpec>& eval_schema() {
  static const std::vector<ParamSpec> schema = [] {
    ParamSpec tasks{.name = "tasks", .type = ParamType::section_list,
                    .description = "evaluations run on the original and on the quantized model"};
    tasks.children = {
        string("type", "ppl (any dataset), wikitext-ppl (WikiText-2 test), mc (multiple choice), demo (answers to prompts)",
               nullptr, {"ppl", "wikitext-ppl", "mc", "demo"}),
        string("name", "label in the report (default: the type)", nullptr),
        string("data_path", "a .txt, .jsonl or .json file or folder (as DATA_PATH)", nullptr),
        string("dataset", "dataset name under the data root (as DATASET_NAME)", nullptr),
        string("subset", "dataset subset (as DATASET_SUBNAME)", nullptr),
        string("split", "split to read", nullptr),
        string("text_column", "comma list of columns (as TEXT_COLUMN)", nullptr),
        integer("seqlen", "tokens per perplexity window", 2048, 2, 1 << 20),
        integer("num_samples", "first N windows (ppl) or items (mc); -1 = all", -1, -1, 1 << 30),
        string("format", "mc: row format", nullptr, {"plain", "mmlu", "arc", "tinymmlu"}),
        integer("num_fewshot", "mc: examples shown before each item", nullptr, 0, 64),
        string("fewshot_split", "mc: split the examples come from (default dev for mmlu, else train)", nullptr),
        integer("seed", "mc: seed of the example draw", nullptr, 0, (int64_t{1} << 62)),
        integer("batch_size", "windows per forward pass", 1, 1, 4096),
        string_list("prompts", "demo prompts, sent through the chat template"),
        integer("max_new_tokens", "demo answer length in tokens", 64, 1, 1 << 16),
        boolean("raw", "demo: send prompts as they are, without the chat template", false),
    };
    return std::vector<ParamSpec>{tasks};
  }();
  return schema;
}

const AlgorithmInfo* find_algorithm(std::string_view name) {
  for (const auto& a : algorithm_catalog())
    if (a.name == name) return &a;
  return nullptr;
}

}  // namespace qjobs

#include "spec/export_formats.hpp"

#include <algorithm>
#include <map>
#include <set>

#include "common/error.hpp"
#include "jobs/model/model_config.hpp"
#include "spec/linear_plan.hpp"

namespace qjobs {
namespace {

using Findings = std::vector<SectionFinding>;

// The algorithms whose section, at its defaults, writes weight-only integers
// (what GGUF and MLX hold), read from the catalog's rows.
std::string weight_only_algorithms() {
  std::string names;
  for (const auto& a : algorithm_catalog()) {
    if (!a.available || !a.output) continue;
    try {
      const AlgorithmOutput o = a.output(nlohmann::json::object());
      if (o.int_weight_only && o.w_format == "int") names += (names.empty() ? "" : ", ") + a.name;
    } catch (const std::exception&) {  // a section that needs keys set: not listed
    }
  }
  return names;
}

// awq (AutoAWQ GEMM) and gptq (AutoGPTQ): one bit width and group size of
// integer weights for every Linear.
Findings check_awq_gptq(const FormatCheck& job, const std::string& f) {
  const auto& out = job.output;
  const int bits = job.weights.bits;
  if (out.int_weight_only && out.w_format != "int")
    return {{{},
             true,
             "W_FORMAT " + out.w_format + " is exported as compressed-tensors " + out.w_format +
                 "-pack-quantized (the default) or fake_quant, not " + f}};
  if (!out.int_weight_only)
    return {{{},
             true,
             job.algorithm.name +
                 " quantizes more than weights; it is exported as compressed-tensors (the default) or fake_quant"}};
  if (f == "awq" && bits != 4)
    return {
        {{},
         true,
         "the AWQ GEMM format holds 4-bit weights only; use compressed-tensors for " + std::to_string(bits) + " bits"}};
  if (f == "awq" && job.weights.group_size == -1)
    return {
        {{},
         true,
         "the AWQ GEMM format holds groups only, not per-channel (Q_GROUP_SIZE -1); use gptq or compressed-tensors"}};
  if (f == "gptq" && bits != 4 && bits != 8)
    return {{{}, true, "the gptq format is written for 4 and 8 bits; use compressed-tensors or fake_quant"}};
  if (!job.weights.overrides.empty())
    return {{{},
             true,
             "the " + f +
                 " format holds one bit width and group size for every Linear; LAYER_OVERRIDES (mixed "
                 "precision) are exported as compressed-tensors (one config group per scheme) or fake_quant"}};
  return {};
}

// llama.cpp's Q4_0 / Q8_0: symmetric blocks of 32 along the inputs, the
// job's (dequantized) weights encoded in them.
Findings check_gguf(const FormatCheck& job) {
  const auto& out = job.output;
  const int bits = job.weights.bits;
  if (!out.int_weight_only || out.w_format != "int")
    return {{{},
             true,
             "the GGUF export writes weight-only integer models (" + weight_only_algorithms() +
                 " without activation bits) as Q4_0 or Q8_0; " + job.algorithm.name +
                 " is exported as compressed-tensors or fake_quant"}};
  if (bits != 4 && bits != 8)
    return {
        {{"W_BIT"}, true, "the GGUF export writes W_BIT 4 as Q4_0 and 8 as Q8_0; W_BIT is " + std::to_string(bits)}};
  if (!job.weights.overrides.empty())
    return {{{},
             true,
             "the GGUF export writes one block type for every decoder Linear; LAYER_OVERRIDES (mixed precision) "
             "are exported as compressed-tensors"}};
  if (job.weights.group_size != 32 || job.weights.zero_point)
    return {{{},
             false,
             std::string("GGUF ") + (bits == 4 ? "Q4_0" : "Q8_0") +
                 " holds symmetric blocks of 32: the job's weights are encoded into them again (the perplexity "
                 "reported is that of the GGUF file); Q_GROUP_SIZE: 32 with ZERO_POINT: false lets the "
                 "algorithm work on a grid close to it"}};
  return {};
}

// The float graph + AIMET encodings + the QDQ graph: integer weights with
// at most static per-tensor integer inputs.
Findings check_onnx(const FormatCheck& job) {
  if (!job.output.onnx_encodings || job.output.w_format != "int")
    return {{{},
             true,
             "the ONNX export writes integer-weight models (RTN, AutoAWQ, GPTQ, SequentialMSE; LMQuant awq/gptq) "
             "with their encodings; " +
                 job.algorithm.name + " is exported as compressed-tensors or fake_quant"}};
  return {};
}

// compressed-tensors pack-quantized holds integer weights of 1 to 8 bits
// (its pack_to_int32 packs them densely; the algorithms' W_BIT is 2 to 8),
// but vLLM's and SGLang's kernels (Marlin, Machete) take 4 and 8 only:
// other widths are said, not refused (transformers decompresses them).
Findings check_compressed_tensors(const FormatCheck& job) {
  if (!job.output.int_weights || job.output.w_format != "int") return {};
  const auto served = [](int b) { return b == 4 || b == 8; };
  const auto note = [](int b) {
    return "is " + std::to_string(b) +
           ": compressed-tensors packs these weights densely and transformers loads them; vLLM and SGLang load 4 "
           "and 8 bits only";
  };
  Findings out;
  if (!served(job.weights.bits)) out.push_back({{"W_BIT"}, false, note(job.weights.bits)});
  for (std::size_t i = 0; i < job.weights.overrides.size(); ++i) {
    const auto& o = job.weights.overrides[i];
    if (o.skip || !o.bits || served(*o.bits)) continue;
    out.push_back({{"LAYER_OVERRIDES[" + std::to_string(i) + "]", "W_BIT"}, false, note(*o.bits)});
  }
  return out;
}

using Linear = LinearAtExport;
using MaybeFinding = std::optional<ExportFinding>;

std::string widths(const Linear& l) { return std::to_string(l.in) + " inputs"; }

bool ragged(const Linear& l) {
  const int64_t g = l.scheme.group_size;
  return g > 0 && l.in > g && l.in % g != 0;
}

// "NVFP4" or "MXFP4" when the job's weights are FP4; "" for integers.
std::string fp4_name(const FormatCheck& job) {
  return !job.output.fp4.empty()          ? job.output.fp4
         : job.output.w_format == "nvfp4" ? "NVFP4"
         : job.output.w_format == "mxfp4" ? "MXFP4"
                                          : "";
}

// Integer weights only: the rules below are about integer packing.
bool int_weights(const FormatCheck& job) { return job.output.int_weights && fp4_name(job).empty(); }

// The FP4 blocks of compressed-tensors' nvfp4/mxfp4-pack-quantized.
MaybeFinding fp4_blocks(const FormatCheck& job, const Linear& l) {
  const std::string name = fp4_name(job);
  const int64_t block = name == "NVFP4" ? 16 : 32;
  if (l.in % block == 0) return std::nullopt;
  return ExportFinding{true, name + " packs blocks of " + std::to_string(block) + " inputs; " + l.kind + " has " +
                                 widths(l) + ": keep it in full precision with a LAYER_OVERRIDES entry {pattern: \"*." +
                                 l.kind + "\", SKIP: true}"};
}

// Integer weights of a ragged width are quantized per output channel.
MaybeFinding ragged_per_channel(const FormatCheck& job, const Linear& l) {
  if (!int_weights(job) || !ragged(l)) return std::nullopt;
  return ExportFinding{false, l.kind + " has " + widths(l) + ", not a multiple of Q_GROUP_SIZE " +
                                  std::to_string(l.scheme.group_size) +
                                  ": it is quantized per output channel in every export form (its own "
                                  "compressed-tensors config group, as vLLM serves; per-channel ONNX encodings; "
                                  "fake_quant the same), so no ragged group is written"};
}

MaybeFinding linear_compressed_tensors(const FormatCheck& job, const Linear& l) {
  return fp4_name(job).empty() ? ragged_per_channel(job, l) : fp4_blocks(job, l);
}

MaybeFinding linear_awq_gptq(const FormatCheck& job, const Linear& l, const std::string& format) {
  if (!int_weights(job)) return std::nullopt;
  const int per = 32 / std::max(l.scheme.bits, 1);
  if (ragged(l))
    return ExportFinding{true, "the " + format + " format needs Q_GROUP_SIZE to divide every Linear's inputs; " +
                                   l.kind + " has " + widths(l) + " at Q_GROUP_SIZE " +
                                   std::to_string(l.scheme.group_size) +
                                   " (use EXPORT_FORMAT: compressed-tensors, which packs such Linears per channel, "
                                   "or a group size dividing " +
                                   std::to_string(l.in) + ")"};
  if (format == "awq" && l.out % 8 != 0)
    return ExportFinding{
        true, "the AWQ GEMM format packs 8 output channels per word; " + l.kind + " has " + std::to_string(l.out)};
  if (format == "gptq" && (l.in % per != 0 || l.out % per != 0))
    return ExportFinding{true, "the gptq format packs " + std::to_string(per) +
                                   " values per word along inputs and outputs; " + l.kind + " is " +
                                   std::to_string(l.out) + " x " + std::to_string(l.in) + " (use compressed-tensors)"};
  return std::nullopt;
}

MaybeFinding linear_gguf(const FormatCheck& job, const Linear& l) {
  if (!int_weights(job) || l.in % 32 == 0) return std::nullopt;
  return ExportFinding{true, "GGUF's Q4_0 / Q8_0 blocks hold 32 inputs; " + l.kind + " has " + widths(l) +
                                 " (use EXPORT_FORMAT: compressed-tensors)"};
}

// MLX's affine quantization (mlx-lm): 2-, 4- or 8-bit integer weights in
// groups of 32, 64 or 128 inputs, each group with a scale and a bias; one
// scheme per Linear (mixed precision as per-Linear entries).
Findings check_mlx(const FormatCheck& job) {
  const auto& out = job.output;
  if (!out.int_weight_only || out.w_format != "int")
    return {{{},
             true,
             "the MLX export writes weight-only integer models (" + weight_only_algorithms() +
                 " without activation bits); " + job.algorithm.name +
                 " is exported as compressed-tensors or fake_quant"}};
  Findings found;
  const auto bits_ok = [](int b) { return b == 2 || b == 4 || b == 8; };
  const auto group_ok = [](int64_t g) { return g == 32 || g == 64 || g == 128; };
  const std::string bits_rule = "MLX packs 2, 4 or 8 bits per weight",
                    group_rule = "MLX's groups are 32, 64 or 128 inputs (no per-channel scales)";
  if (!bits_ok(job.weights.bits))
    found.push_back({{"W_BIT"}, true, bits_rule + "; W_BIT is " + std::to_string(job.weights.bits)});
  if (!group_ok(job.weights.group_size))
    found.push_back(
        {{"Q_GROUP_SIZE"}, true, group_rule + "; Q_GROUP_SIZE is " + std::to_string(job.weights.group_size)});
  for (std::size_t i = 0; i < job.weights.overrides.size(); ++i) {
    const auto& o = job.weights.overrides[i];
    const std::string at = "LAYER_OVERRIDES[" + std::to_string(i) + "]";
    if (o.skip) continue;
    if (o.bits && !bits_ok(*o.bits))
      found.push_back({{at, "W_BIT"}, true, bits_rule + "; this override asks " + std::to_string(*o.bits)});
    if (o.group_size && !group_ok(*o.group_size))
      found.push_back(
          {{at, "Q_GROUP_SIZE"}, true, group_rule + "; this override asks " + std::to_string(*o.group_size)});
  }
  return found;
}

// MLX's groups must divide every Linear's inputs: a ragged width cannot be
// held per output channel as the other formats hold it.
MaybeFinding linear_mlx(const FormatCheck& job, const Linear& l) {
  if (!int_weights(job) || l.scheme.group_size <= 0 || l.in % l.scheme.group_size == 0) return std::nullopt;
  return ExportFinding{
      true, "MLX's groups must divide every Linear's inputs; " + l.kind + " has " + widths(l) + " at Q_GROUP_SIZE " +
                std::to_string(l.scheme.group_size) + " (use a group size dividing " + std::to_string(l.in) +
                ", or skip it with a LAYER_OVERRIDES entry {pattern: \"*." + l.kind + "\", SKIP: true})"};
}

}  // namespace

const std::vector<ExportFormatRow>& export_formats() {
  static const std::vector<ExportFormatRow> rows = {
      {"fake_quant",
       "float weights in the original dtype, the recipe under config.json's qjobs_quantization (any loader)",
       [](const FormatCheck&) { return Findings{}; }, ragged_per_channel},
      {"awq", "AutoAWQ GEMM: 4-bit groups (transformers, vLLM awq)",
       [](const FormatCheck& j) { return check_awq_gptq(j, "awq"); },
       [](const FormatCheck& j, const Linear& l) { return linear_awq_gptq(j, l, "awq"); }},
      {"gptq", "AutoGPTQ: 4- or 8-bit, g_idx for act-order (transformers, vLLM gptq_marlin)",
       [](const FormatCheck& j) { return check_awq_gptq(j, "gptq"); },
       [](const FormatCheck& j, const Linear& l) { return linear_awq_gptq(j, l, "gptq"); }},
      {"compressed-tensors", "the packed form of every recipe (vLLM, SGLang, transformers)", check_compressed_tensors,
       linear_compressed_tensors},
      {"gguf", "llama.cpp Q4_0 / Q8_0 (llama.cpp, Ollama)", check_gguf, linear_gguf},
      {"onnx", "float ONNX graph with AIMET encodings and a QDQ graph (ONNX Runtime, Qualcomm AI Hub)", check_onnx,
       ragged_per_channel},
      {"mlx", "MLX affine groups of 2, 4 or 8 bits (mlx-lm on Apple silicon, LM Studio's MLX engine)", check_mlx,
       linear_mlx},
  };
  return rows;
}

const ExportFormatRow* find_export_format(const std::string& name) {
  for (const auto& r : export_formats())
    if (r.name == name) return &r;
  return nullptr;
}

const std::vector<std::string>& export_format_names() {
  static const std::vector<std::string> names = [] {
    std::vector<std::string> n;
    for (const auto& r : export_formats()) n.push_back(r.name);
    return n;
  }();
  return names;
}

std::vector<ExportFinding> check_export_shapes(const FormatCheck& job, const std::string& format,
                                               const nlohmann::json& config) {
  std::vector<ExportFinding> out;
  if (!job.output.quantizes) return out;
  model::ModelConfig c;
  try {
    c = model::ModelConfig::from_json(config);
  } catch (const Error&) {
    return out;  // not a config the model reader takes: refused there, with the key named
  }
  // Bounded work for a hostile config.json or override list: past 5 million
  // rule lookups the check is left to the worker, which runs it on the
  // checkpoint it loaded.
  const std::size_t per_layer = c.moe.experts > 0 ? static_cast<std::size_t>(3 * c.moe.experts + 7) : 7;
  if (static_cast<double>(c.layers) * static_cast<double>(per_layer) *
          static_cast<double>(job.weights.overrides.size() + 1) >
      5e6)
    return out;
  const ExportFormatRow* row = find_export_format(format);
  if (row == nullptr || !row->linear) return out;
  const auto linears = model::decoder_linears(c);
  std::vector<LinearShape> shapes;
  shapes.reserve(linears.size());
  for (const auto& l : linears) shapes.push_back({l.name, l.in, l.out});
  // The plan without rule 3: its groups are what the section asked.
  std::vector<LinearShape> unshaped = shapes;
  for (auto& s : unshaped) s.in = 0;
  const LinearPlan plan(job.weights, unshaped);
  // One finding per kind of Linear and message, counting the layers.
  std::map<std::string, std::pair<ExportFinding, std::set<int64_t>>> found;
  for (const auto& l : linears) {
    const auto r = plan.at(l.name);
    if (r.skip) continue;
    // "model.layers.N.KIND"
    const int64_t layer = l.layer;
    const std::string prefix = "model.layers." + std::to_string(layer) + ".";
    std::string kind = l.name.substr(prefix.size());
    // Experts are one kind: "block_sparse_moe.experts.*.w2".
    if (const auto& ep = c.fam().names.expert_prefix; !ep.empty() && kind.rfind(ep, 0) == 0)
      kind = ep + "*" + kind.substr(kind.find('.', ep.size()));
    const auto f = row->linear(job, LinearAtExport{kind, l.in, l.out, r});
    if (!f) continue;
    auto& entry = found[kind + "\n" + f->message];
    entry.first = *f;
    entry.second.insert(layer);
  }
  for (auto& [key, f] : found) {
    const auto& ls = f.second;
    std::string where = ls.size() == static_cast<std::size_t>(c.layers) ? "every layer"
                        : ls.size() == 1                                ? "layer " + std::to_string(*ls.begin())
                                                                        : std::to_string(ls.size()) + " layers";
    f.first.message = "model.layers.*." + key.substr(0, key.find('\n')) + " (" + where + "): " + f.first.message;
    out.push_back(f.first);
  }
  return out;
}

std::vector<ExportFinding> check_export_shapes(const std::string& algorithm, const std::string& format,
                                               const nlohmann::json& section, const nlohmann::json& config) {
  const AlgorithmInfo* info = find_algorithm(algorithm);
  if (info == nullptr || !info->weights || algorithm == "Evaluate") return {};
  const quant::WeightScheme weights = info->weights(section);
  const AlgorithmOutput output = info->output ? info->output(section) : AlgorithmOutput{};
  return check_export_shapes({*info, output, weights}, format, config);
}

}  // namespace qjobs

#include "common/linear_rule.hpp"

#include <fnmatch.h>

#include <map>
#include <set>


namespace qjobs {
using nlohmann::json;

LinearRule linear_rule(const std::string& linear, const json& params) {
  LinearRule r;
  r.bits = params.value("W_BIT", 4);
  r.group_size = params.value("Q_GROUP_SIZE", 128);
  r.zero_point = params.value("ZERO_POINT", true);
  r.a_bits = params.value("A_BIT", 8);
  if (params.contains("LAYER_OVERRIDES") && params["LAYER_OVERRIDES"].is_array())
    for (const auto& o : params["LAYER_OVERRIDES"]) {
      if (!o.is_object() || fnmatch(o.value("pattern", "").c_str(), linear.c_str(), 0) != 0) continue;
      r.skip = o.value("SKIP", false);
      r.bits = o.value("W_BIT", r.bits);
      r.group_size = o.value("Q_GROUP_SIZE", r.group_size);
      r.zero_point = o.value("ZERO_POINT", r.zero_point);
      r.a_bits = o.value("A_BIT", r.a_bits);
      break;
    }
  if (params.contains("PER_CHANNEL_LINEARS") && params["PER_CHANNEL_LINEARS"].is_array() && r.group_size > 0)
    for (const auto& n : params["PER_CHANNEL_LINEARS"])
      if (n == linear) r.group_size = -1;
  return r;
}

std::vector<ExportFinding> check_export_shapes(const std::string& algorithm, const std::string& format, const json& params,
                                               const json& config) {
  std::vector<ExportFinding> out;
  if (algorithm == "Evaluate") return out;
  // fake_quant holds any shape; only the ragged-width rule, which every form
  // follows, is said for it.
  const bool fake = format == "fake_quant";
  const auto num = [&](const char* key, int64_t def) -> int64_t {
    return config.contains(key) && config[key].is_number_integer() ? config[key].get<int64_t>() : def;
  };
  const int64_t hidden = num("hidden_size", 0), layers = num("num_hidden_layers", 0), heads = num("num_attention_heads", 0);
  const int64_t inter = num("intermediate_size", 0);
  if (hidden <= 0 || layers <= 0 || heads <= 0 || inter <= 0) return out;  // not a shape we know
  if (layers > 4096) return out;  // past the model reader's bound: refused there, with the key named
  // Bounded work for a hostile config.json or override list: past 5 million
  // rule lookups the check is left to the worker, which runs it on the
  // checkpoint it loaded.
  const std::size_t overrides = params.contains("LAYER_OVERRIDES") && params["LAYER_OVERRIDES"].is_array()
                                    ? params["LAYER_OVERRIDES"].size() : 0;
  if (static_cast<double>(layers) * 7 * static_cast<double>(overrides + 1) > 5e6) return out;
  const int64_t kv = num("num_key_value_heads", heads), hd = num("head_dim", hidden / heads);
  // Every decoder Linear: name, in, out.
  const std::vector<std::tuple<std::string, int64_t, int64_t>> kinds = {
      {"self_attn.q_proj", hidden, heads * hd}, {"self_attn.k_proj", hidden, kv * hd}, {"self_attn.v_proj", hidden, kv * hd},
      {"self_attn.o_proj", heads * hd, hidden}, {"mlp.gate_proj", hidden, inter},    {"mlp.up_proj", hidden, inter},
      {"mlp.down_proj", inter, hidden}};
  const std::string wformat = params.value("W_FORMAT", std::string("int"));
  const bool fp4 = algorithm == "NVFP4" || algorithm == "MXFP4" || wformat == "nvfp4" || wformat == "mxfp4";
  const std::string fp4_name = algorithm == "NVFP4" || wformat == "nvfp4" ? "NVFP4" : "MXFP4";
  // LMQuant's weight groups: 128 for g128 and the awq/gptq presets (or
  // quant.wgts.group_size), per channel for gchn; the sq_* presets are W8A8.
  const bool lmquant = algorithm == "LMQuant";
  const std::string preset = params.value("quant_type", std::string("gchn"));
  int64_t lm_group = preset == "g128" || preset == "awq" || preset == "gptq" ? 128 : -1;
  if ((preset == "g128" || preset == "gchn") && params.contains("quant") && params["quant"].is_object() &&
      params["quant"].contains("wgts") && params["quant"]["wgts"].is_object() &&
      params["quant"]["wgts"].contains("group_size") && params["quant"]["wgts"]["group_size"].is_number_integer())
    lm_group = params["quant"]["wgts"]["group_size"].get<int64_t>();
  const bool int_weights = algorithm == "RTN" || algorithm == "AutoAWQ" || algorithm == "GPTQ" || algorithm == "HQQ" ||
                           algorithm == "SequentialMSE" || (lmquant && preset.rfind("sq_", 0) != 0);
  // One finding per kind of Linear and message, counting the layers.
  std::map<std::string, std::pair<ExportFinding, std::set<int64_t>>> found;
  const auto add = [&](const std::string& kind, int64_t layer, bool error, const std::string& msg) {
    auto& f = found[kind + "\n" + msg];
    f.first = {error, msg};
    f.second.insert(layer);
  };
  for (int64_t l = 0; l < layers; ++l)
    for (const auto& [kind, in, o] : kinds) {
      const std::string name = "model.layers." + std::to_string(l) + "." + kind;
      const auto r = linear_rule(name, params);
      if (r.skip) continue;
      const std::string widths = std::to_string(in) + " inputs";
      if (fp4 && !fake) {
        const int64_t block = fp4_name == "NVFP4" ? 16 : 32;
        if (in % block != 0)
          add(kind, l, true, fp4_name + " packs blocks of " + std::to_string(block) + " inputs; " + kind + " has " + widths +
                                 ": keep it in full precision with a LAYER_OVERRIDES entry {pattern: \"*." + kind + "\", SKIP: true}");
        continue;
      }
      if (fp4 || !int_weights) continue;
      if (format == "gguf") {
        if (in % 32 != 0)
          add(kind, l, true, "GGUF's Q4_0 / Q8_0 blocks hold 32 inputs; " + kind + " has " + widths +
                                 " (use EXPORT_FORMAT: compressed-tensors)");
        continue;
      }
      const int64_t g = lmquant ? lm_group : r.group_size;
      const bool ragged = g > 0 && in > g && in % g != 0;
      if (format == "compressed-tensors" || format == "onnx" || fake) {
        if (ragged)
          add(kind, l, false, kind + " has " + widths + ", not a multiple of Q_GROUP_SIZE " + std::to_string(g) +
                                  ": it is quantized per output channel in every export form (its own "
                                  "compressed-tensors config group, as vLLM serves; per-channel ONNX encodings; "
                                  "fake_quant the same), so no ragged group is written");
      } else if (format == "awq" || format == "gptq") {
        const int per = 32 / std::max(r.bits, 1);
        if (ragged)
          add(kind, l, true, "the " + format + " format needs Q_GROUP_SIZE to divide every Linear's inputs; " + kind +
                                 " has " + widths + " at Q_GROUP_SIZE " + std::to_string(g) +
                                 " (use EXPORT_FORMAT: compressed-tensors, which packs such Linears per channel, or a "
                                 "group size dividing " + std::to_string(in) + ")");
        else if (format == "awq" && o % 8 != 0)
          add(kind, l, true, "the AWQ GEMM format packs 8 output channels per word; " + kind + " has " + std::to_string(o));
        else if (format == "gptq" && (in % per != 0 || o % per != 0))
          add(kind, l, true, "the gptq format packs " + std::to_string(per) + " values per word along inputs and outputs; " +
                                 kind + " is " + std::to_string(o) + " x " + std::to_string(in) + " (use compressed-tensors)");
      }
    }
  for (auto& [key, f] : found) {
    const auto& ls = f.second;
    std::string where = ls.size() == static_cast<std::size_t>(layers) ? "every layer"
                        : ls.size() == 1 ? "layer " + std::to_string(*ls.begin())
                                         : std::to_string(ls.size()) + " layers";
    f.first.message = "model.layers.*." + key.substr(0, key.find('\n')) + " (" + where + "): " + f.first.message;
    out.push_back(f.first);
  }
  return out;
}

}  // namespace qjobs

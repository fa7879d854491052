// EXPORT_FORMAT compressed-tensors: vLLM's format (jobs/export/packed.hpp).
// Every quantized form has a scheme here: integer Linears pack-quantized
// (with their simulated input quantizer as input_activations), W8A8 Linears
// float- or int-quantized, NVFP4 / MXFP4 Linears pack-quantized in FP4; the
// KV cache's scheme when it is FP8 (an integer KV cache, which the schema
// cannot hold, under qjobs_quantization); every other Linear in `ignore`.
#include "worker/export_format.hpp"

#include "jobs/export/packed.hpp"
#include "jobs/model/act_quant.hpp"
#include "jobs/model/llama_model.hpp"
#include "jobs/model/mapped_file.hpp"
#include "jobs/numeric/fp8.hpp"

#include <memory>
#include <set>

namespace qjobs::worker {
namespace {

using nlohmann::json;

// The algorithm simulated an integer KV cache (QoQ's KV4).
bool int_kv_cache(const ExportInputs& in) {
  const auto& qc = in.q.quantization_config;
  return qc.contains("kv_cache") && qc["kv_cache"].is_object() && qc["kv_cache"].value("kind", "none") == "int";
}

// Every Linear of the model that holds no quantized weight (skipped by
// LAYER_OVERRIDES, routers, what an algorithm left out), by name: a loader
// gives a Linear that is in no group and not ignored a scheme of a group
// targeting "Linear" (transformers then leaves its weight on the meta
// device) or refuses it (vLLM: "Unable to find matching target").
std::vector<std::string> unquantized_linears(const ExportInputs& in,
                                             const std::map<std::string, exporter::LinearScheme>& schemes) {
  const auto config = model::ModelConfig::from_json(in.ckpt.config());
  std::set<std::string> seen;
  std::vector<std::string> out;
  const auto add = [&](const std::string& name) {
    if (!schemes.contains(name) && seen.insert(name).second) out.push_back(name);
  };
  for (const auto& w : model::quantized_linear_weights(config))
    if (in.ckpt.has(w)) add(w.substr(0, w.size() - std::string(".weight").size()));
  for (const auto& name : model::full_precision_linears(config)) add(name);
  for (const auto& name : in.q.ignored) add(name);
  return out;
}

// The simulated input quantizer of each Linear, as the algorithm recorded it.
model::ActQuant act_of(const json& acts, const std::string& name) {
  return acts.contains(name) ? model::ActQuant::from_json(acts[name]) : model::ActQuant{};
}

// config.json's quantization_config, warning about what vLLM does not serve.
json ct_config(const ExportInputs& in) {
  const auto& q = in.q;
  const json acts = q.quantization_config.value("activations", json::object());
  // GPTQ's act-order, as the algorithm recorded it (the pipeline runs it with
  // static groups for this format: column_order_groups).
  const bool act_order = q.quantization_config.value("desc_act", false);
  std::map<std::string, exporter::LinearScheme> schemes;
  for (const auto& [name, w] : q.int_weights) {
    auto s = exporter::int_scheme(w, act_order);
    s.input_activations = exporter::activation_args(act_of(acts, name));
    schemes[name] = s;
  }
  for (const auto& [name, w] : q.w8a8_weights) {
    auto s = exporter::w8a8_scheme(q.w8a8_float, w.scale.numel() == 1 ? "tensor" : "channel");
    s.input_activations = exporter::activation_args(act_of(acts, name));
    schemes[name] = s;
  }
  for (const auto& [name, w] : q.fp4_weights) schemes[name] = exporter::fp4_scheme(w);
  json kv_scheme = nullptr;
  if (!q.k_scales.empty()) {
    kv_scheme = exporter::fp8_kv_cache_args();
  } else if (int_kv_cache(in)) {
    const int bits = q.quantization_config["kv_cache"].value("bits", 4);
    in.rep.warn("the " + std::to_string(bits) +
                "-bit integer KV cache this job was evaluated with is recorded under "
                "config.json's qjobs_quantization.kv_cache, not kv_cache_scheme: compressed-tensors' schema has no "
                "dynamic per-head integer KV form and no engine serves one. vLLM, SGLang and transformers load the "
                "weights and serve them with a 16-bit KV cache (or vLLM's --kv-cache-dtype fp8); the perplexity "
                "reported is that with the " +
                std::to_string(bits) + "-bit cache");
  }
  bool asym_w4a8 = false;
  for (const auto& [name, s] : schemes)
    asym_w4a8 = asym_w4a8 ||
                (s.format == "pack-quantized" && !s.input_activations.is_null() && !s.weights.value("symmetric", true));
  if (asym_w4a8)
    in.rep.warn(
        "the W4A8 Linears keep QoQ's asymmetric 4-bit weights (weight_zero_point); vLLM's W4A8 integer kernels "
        "read symmetric weights only");
  return exporter::compressed_tensors_config(schemes, unquantized_linears(in, schemes), kv_scheme);
}

// `manifest` gets every quantized Linear's checksums, taken from the
// algorithm's form before packing (worker/verify.hpp), with its scales in the
// dtype they are stored in and the product rounded to it, as
// compressed-tensors decodes it (exact for float32 models; one bfloat16 or
// float16 rounding per weight otherwise, the same on both sides).
SafetensorsLayout ct_layout(const ExportInputs& in, const std::shared_ptr<VerifyManifest>& manifest) {
  // Scales stored in the model's dtype (that of its embedding).
  const auto scale_dtype = in.ckpt.tensor("model.embed_tokens.weight").scalar_type();
  const json acts = in.q.quantization_config.value("activations", json::object());
  SafetensorsLayout l;
  l.last_use = true;
  l.room_per_tensor = 6;
  l.encode = [&in, scale_dtype, acts, manifest](const std::string& stem, bool is_weight,
                                                const model::StTensorInfo& info, const PutTensor& put) {
    if (!is_weight) return false;
    const auto& q = in.q;
    const auto f4 = q.fp4_weights.find(stem);
    if (f4 != q.fp4_weights.end()) {
      // compressed-tensors decompresses FP4 in bfloat16: NVFP4's scale / global
      // scale products round (2^-8 relative; 2^-7 allowed), MXFP4's do not.
      manifest->add(stem, f4->second.dequantize(), f4->second.kind == numeric::Fp4Kind::nvfp4 ? 0.0078125 : 1e-9);
      for (auto& [suffix, t] : exporter::pack(f4->second))
        put(stem + "." + suffix, t,
            suffix == "weight_scale" && f4->second.kind == numeric::Fp4Kind::nvfp4
                ? std::optional<model::StDtype>(model::StDtype::F8_E4M3)
                : std::nullopt);
      model::release_mapped(f4->second.codes);
      return true;
    }
    const auto fw = q.w8a8_weights.find(stem);
    if (fw != q.w8a8_weights.end()) {
      const auto values = q.w8a8_float ? numeric::fp8_e4m3_decode(fw->second.codes) : fw->second.codes.to(at::kFloat);
      manifest->add(stem, (values.to(at::kFloat) * fw->second.scale.to(scale_dtype).to(at::kFloat)).to(scale_dtype),
                    1e-9);
      put(info.name, fw->second.codes,
          q.w8a8_float ? std::optional<model::StDtype>(model::StDtype::F8_E4M3) : std::nullopt);
      put(stem + ".weight_scale", fw->second.scale.to(scale_dtype), std::nullopt);
      if (fw->second.input_scale.defined())
        put(stem + ".input_scale", fw->second.input_scale.to(scale_dtype), std::nullopt);
      model::release_mapped(fw->second.codes);
      return true;
    }
    const auto iw = q.int_weights.find(stem);
    if (iw == q.int_weights.end()) return false;
    {
      auto stored = iw->second;
      const auto sdt = model::st_to_aten(info.dtype);
      stored.scales = stored.scales.to(sdt).to(at::kFloat);
      manifest->add(stem, stored.dequantize().to(sdt), 1e-9);
    }
    for (auto& [suffix, t] :
         exporter::pack(iw->second, exporter::PackedFormat::compressed_tensors, model::st_to_aten(info.dtype)))
      put(stem + "." + suffix, t, std::nullopt);
    // A static input scale (per tensor) beside a packed integer weight.
    const auto a = act_of(acts, stem);
    if (a.kind == model::ActQuant::Kind::int_tensor || a.kind == model::ActQuant::Kind::fp8_tensor)
      put(stem + ".input_scale", at::full({1}, a.scale, at::kDouble).to(scale_dtype), std::nullopt);
    for (const auto* t : {&iw->second.codes, &iw->second.scales, &iw->second.zeros, &iw->second.g_idx})
      model::release_mapped(*t);
    return true;
  };
  l.finish_count = [&in] { return 2 * in.q.k_scales.size(); };
  l.finish = [&in, scale_dtype](const PutTensor& put) {
    for (std::size_t i = 0; i < in.q.k_scales.size(); ++i) {
      const std::string p = "model.layers." + std::to_string(i) + ".self_attn.";
      // Shape [1], as compressed-tensors writes them (not 0-dim).
      put(p + "k_scale", at::full({1}, in.q.k_scales[i], at::kDouble).to(scale_dtype), std::nullopt);
      put(p + "v_scale", at::full({1}, in.q.v_scales[i], at::kDouble).to(scale_dtype), std::nullopt);
    }
  };
  return l;
}

}  // namespace

const ExportFormat& export_compressed_tensors() {
  static const ExportFormat f{
      .name = "compressed-tensors",
      .packed = true,
      .column_order_groups = true,
      .verified = true,
      .write =
          [](const ExportInputs& in) {
            require_quantized_form(in);
            const auto qc = ct_config(in);
            auto manifest = std::make_shared<VerifyManifest>();
            auto layout = ct_layout(in, manifest);
            if (int_kv_cache(in))
              layout.config_extra["qjobs_quantization"] = {{"kv_cache", in.q.quantization_config["kv_cache"]}};
            write_safetensors_model(in, layout, qc, true);
            ExportResult result{qc, {}};
            result.verify = std::move(*manifest);
            result.verify.loader = "compressed-tensors";
            return result;
          },
      .read_back = read_written_model,
      .report_note = packed_report_note};
  return f;
}

}  // namespace qjobs::worker

#include "jobs/export/packed.hpp"

#include "common/error.hpp"
#include "jobs/model/act_quant.hpp"
#include "jobs/numeric/bit_pack.hpp"
#include "jobs/numeric/fp8.hpp"

namespace qjobs::exporter {
namespace {

using numeric::kAwqOrder;
using numeric::pack_dense;
using numeric::pack_last;

}  // namespace

std::optional<PackedFormat> packed_format(const std::string& name) {
  if (name == "awq") return PackedFormat::awq;
  if (name == "gptq") return PackedFormat::gptq;
  if (name == "compressed-tensors") return PackedFormat::compressed_tensors;
  return std::nullopt;
}

std::map<std::string, at::Tensor> pack(const IntWeight& w_any, PackedFormat format, at::ScalarType scale_dtype) {
  const IntWeight w = w_any.cpu();
  const int64_t in = w.codes.size(1);
  const int64_t out = w.codes.size(0);
  std::map<std::string, at::Tensor> t;
  const bool trivial_g_idx =
      at::equal(w.g_idx.to(at::kLong), at::arange(in, at::kLong).div(w.group_size > 0 ? w.group_size : in, "floor"));
  if (format == PackedFormat::compressed_tensors) {
    if (w.bits < 1 || w.bits > 8)
      throw Error(ErrorKind::invalid_input, "the compressed-tensors pack-quantized format holds 1 to 8 bits");
    t["weight_packed"] = pack_dense(w.codes.contiguous(), w.bits);
    t["weight_scale"] = w.scales.contiguous().to(scale_dtype);
    t["weight_shape"] = at::tensor({out, in}, at::kLong);
    if (!at::equal(w.zeros, at::full_like(w.zeros, 1 << (w.bits - 1))))
      t["weight_zero_point"] = pack_dense(w.zeros.t().contiguous(), w.bits).t().contiguous();
    if (!trivial_g_idx) t["weight_g_idx"] = w.g_idx.to(at::kInt).contiguous();
    return t;
  }
  if (format == PackedFormat::awq) {
    if (w.bits != 4) throw Error(ErrorKind::invalid_input, "the AWQ GEMM format holds 4-bit weights only");
    if (w.group_size <= 0 || in % w.group_size != 0)
      throw Error(ErrorKind::invalid_input, "the AWQ GEMM format needs a group size dividing in_features");
    if (!trivial_g_idx) throw Error(ErrorKind::invalid_input, "the AWQ GEMM format has no act-order (g_idx)");
    t["qweight"] = pack_last(w.codes.t(), 4, kAwqOrder);
    t["qzeros"] = pack_last(w.zeros.t(), 4, kAwqOrder);
    t["scales"] = w.scales.t().contiguous().to(at::kHalf);
    return t;
  }
  if (w.bits != 4 && w.bits != 8) throw Error(ErrorKind::invalid_input, "the GPTQ format is written for 4 and 8 bits");
  if (in % (32 / w.bits) != 0 || out % (32 / w.bits) != 0)
    throw Error(
        ErrorKind::invalid_input,
        "the GPTQ format packs in and out features in words: both must be multiples of " + std::to_string(32 / w.bits));
  // Along the input dimension: pack each output row's inputs, then lay the
  // words out as [in * bits / 32, out].
  t["qweight"] = pack_last(w.codes.contiguous(), w.bits, nullptr).t().contiguous();
  t["qzeros"] =
      pack_last((w.zeros - 1).bitwise_and(static_cast<int64_t>((1 << w.bits) - 1)).t().contiguous(), w.bits, nullptr);
  t["scales"] = w.scales.t().contiguous().to(at::kHalf);
  t["g_idx"] = w.g_idx.to(at::kInt).contiguous();
  return t;
}

nlohmann::json packed_quantization_config(const std::map<std::string, IntWeight>& weights, PackedFormat format,
                                          const nlohmann::json& recipe, bool symmetric) {
  if (weights.empty()) throw Error(ErrorKind::invalid_input, "no quantized Linears to pack");
  const auto& any = weights.begin()->second;
  for (const auto& [name, w] : weights)
    if (w.bits != any.bits || w.format_group_size() != any.format_group_size())
      throw Error(ErrorKind::invalid_input, "the awq and gptq formats hold one bit width and group size; " + name +
                                                " differs (compressed-tensors holds one per Linear)");
  if (format == PackedFormat::awq)
    return {{"quant_method", "awq"}, {"bits", any.bits},  {"group_size", any.group_size},
            {"zero_point", true},    {"version", "gemm"}, {"modules_to_not_convert", nullptr}};
  if (format != PackedFormat::gptq)
    throw Error(ErrorKind::invalid_input, "compressed-tensors configs come from compressed_tensors_config");
  {
    return {{"quant_method", "gptq"},
            {"bits", any.bits},
            {"group_size", any.format_group_size()},
            {"desc_act", recipe.value("desc_act", false)},
            {"sym", symmetric},
            {"static_groups", recipe.value("static_groups", false)},
            {"true_sequential", true},
            {"damp_percent", recipe.value("damp_percent", 0.01)},
            {"checkpoint_format", "gptq"}};
  }
}

std::map<std::string, at::Tensor> pack(const Fp4Weight& w) {
  const auto codes = w.codes.to(at::kCPU).contiguous();
  const int64_t out = codes.size(0), in = codes.size(1);
  if (in % 2 != 0) throw Error(ErrorKind::invalid_input, "FP4 packing needs an even number of input features");
  const auto pairs = codes.view({out, in / 2, 2});
  std::map<std::string, at::Tensor> t;
  t["weight_packed"] = pairs.select(2, 0).bitwise_or(pairs.select(2, 1).bitwise_left_shift(4)).contiguous();
  t["weight_scale"] = w.scale.to(at::kCPU).contiguous();
  if (w.kind == numeric::Fp4Kind::nvfp4) {
    t["weight_global_scale"] = at::full({1}, w.global_scale, at::kFloat);
    if (w.input_global_scale > 0) t["input_global_scale"] = at::full({1}, w.input_global_scale, at::kFloat);
  }
  return t;
}

namespace {

nlohmann::json args(int bits, const char* type, bool symmetric, const char* strategy, nlohmann::json group_size,
                    nlohmann::json dynamic, nlohmann::json observer) {
  return {{"num_bits", bits},
          {"type", type},
          {"symmetric", symmetric},
          {"strategy", strategy},
          {"group_size", std::move(group_size)},
          {"dynamic", std::move(dynamic)},
          {"actorder", nullptr},
          {"observer", std::move(observer)},
          {"observer_kwargs", nlohmann::json::object()},
          {"block_structure", nullptr}};
}

bool trivial_groups(const IntWeight& w) {
  const int64_t in = w.codes.size(1);
  return at::equal(w.g_idx.to(at::kCPU).to(at::kLong),
                   at::arange(in, at::kLong).div(w.group_size > 0 ? w.group_size : in, "floor"));
}

}  // namespace

LinearScheme int_scheme(const IntWeight& w, bool act_order) {
  if (!trivial_groups(w))
    throw Error(ErrorKind::invalid_input,
                "a per-column group map (GPTQ act-order without static groups, compressed-tensors' removed actorder "
                "\"group\") is read by no current compressed-tensors or vLLM: quantize with STATIC_GROUPS: true "
                "(actorder \"weight\") or export as gptq");
  const bool symmetric = at::equal(w.zeros.to(at::kCPU), at::full_like(w.zeros.to(at::kCPU), 1 << (w.bits - 1)));
  const bool channel = w.scales.size(1) == 1;
  auto wq = args(w.bits, "int", symmetric, channel ? "channel" : "group",
                 channel ? nlohmann::json(nullptr) : nlohmann::json(w.group_size), false, "minmax");
  // Act-order calibration with groups in column order: nothing to apply at run time.
  if (act_order) wq["actorder"] = "weight";
  return {wq, nullptr, "pack-quantized"};
}

LinearScheme w8a8_scheme(bool is_float, const std::string& weight_strategy) {
  return {args(8, is_float ? "float" : "int", true, weight_strategy.c_str(), nullptr, false, "minmax"), nullptr,
          is_float ? "float-quantized" : "int-quantized"};
}

LinearScheme fp4_scheme(const Fp4Weight& w) {
  model::ActQuant a;
  a.kind = w.kind == numeric::Fp4Kind::nvfp4 ? model::ActQuant::Kind::nvfp4 : model::ActQuant::Kind::mxfp4;
  if (w.kind == numeric::Fp4Kind::nvfp4) {
    LinearScheme s{args(4, "float", true, "tensor_group", 16, false, "minmax"), nullptr, "nvfp4-pack-quantized"};
    s.weights["scale_dtype"] = "torch.float8_e4m3fn";
    if (w.act) s.input_activations = activation_args(a);
    return s;
  }
  LinearScheme s{args(4, "float", true, "group", 32, false, "minmax"), nullptr, "mxfp4-pack-quantized"};
  s.weights["scale_dtype"] = "torch.uint8";  // E8M0 exponents
  if (w.act) s.input_activations = activation_args(a);
  return s;
}

nlohmann::json activation_args(const model::ActQuant& a) {
  using K = model::ActQuant::Kind;
  switch (a.kind) {
    case K::none:
      return nullptr;
    case K::int_token:
      return args(a.bits, "int", true, "token", nullptr, true, nullptr);
    case K::int_tensor:
      return args(a.bits, "int", true, "tensor", nullptr, false, "minmax");
    case K::fp8_token:
      return args(8, "float", true, "token", nullptr, true, nullptr);
    case K::fp8_tensor:
      return args(8, "float", true, "tensor", nullptr, false, "minmax");
    case K::nvfp4: {
      // Block scales computed at run time ("local"), the global one calibrated.
      auto j = args(4, "float", true, "tensor_group", 16, "local", "static_minmax");
      j["scale_dtype"] = "torch.float8_e4m3fn";
      return j;
    }
    case K::mxfp4: {
      auto j = args(4, "float", true, "group", 32, true, nullptr);
      j["scale_dtype"] = "torch.uint8";
      return j;
    }
  }
  return nullptr;
}

nlohmann::json compressed_tensors_config(const std::map<std::string, LinearScheme>& schemes,
                                         const std::vector<std::string>& ignore,
                                         const nlohmann::json& kv_cache_scheme) {
  if (schemes.empty()) throw Error(ErrorKind::invalid_input, "no quantized Linears to pack");
  // Schemes in order of first appearance, with their Linears.
  std::vector<std::pair<const LinearScheme*, std::vector<std::string>>> groups;
  std::map<std::string, std::size_t> index;
  for (const auto& [name, s] : schemes) {
    const std::string key = nlohmann::json{s.weights, s.input_activations, s.format}.dump();
    auto [it, fresh] = index.emplace(key, groups.size());
    if (fresh) groups.push_back({&s, {}});
    groups[it->second].second.push_back(name);
  }
  nlohmann::json cg = nlohmann::json::object();
  for (std::size_t i = 0; i < groups.size(); ++i) {
    const auto& [s, names] = groups[i];
    cg["group_" + std::to_string(i)] = {
        {"targets", groups.size() == 1 ? nlohmann::json::array({"Linear"}) : nlohmann::json(names)},
        {"weights", s->weights},
        {"input_activations", s->input_activations},
        {"output_activations", nullptr},
        {"format", s->format}};
  }
  std::string format = groups.front().first->format;
  for (const auto& g : groups)
    if (g.first->format != format) format = "mixed-precision";
  nlohmann::json ign = nlohmann::json::array({"lm_head"});
  for (const auto& i : ignore)
    if (i != "lm_head") ign.push_back(i);
  return {{"quant_method", "compressed-tensors"},
          {"format", format},
          {"quantization_status", "compressed"},
          {"config_groups", cg},
          {"ignore", ign},
          {"kv_cache_scheme", kv_cache_scheme},
          {"global_compression_ratio", nullptr}};
}

nlohmann::json fp8_kv_cache_args() { return args(8, "float", true, "tensor", nullptr, false, "minmax"); }

}  // namespace qjobs::exporter

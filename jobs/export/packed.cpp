#include "jobs/export/packed.hpp"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include "common/error.hpp"
#include "jobs/model/act_quant.hpp"
#include "jobs/model/checkpoint.hpp"
#include "jobs/quant/fp8.hpp"

namespace qjobs::exporter {
namespace {

constexpr int kAwqOrder[8] = {0, 2, 4, 6, 1, 3, 5, 7};

// Packs the last dimension of x (int32 values < 2^bits) into int32 words,
// `32 / bits` values per word; value k of word j sits at bits*k and comes
// from column (j * per + order[k]).
at::Tensor pack_last(const at::Tensor& x, int bits, const int* order) {
  const int per = 32 / bits;
  auto v = x.to(at::kLong).contiguous();
  const int64_t rows = v.size(0);
  // A width that words do not divide is padded with zeros (compressed-
  // tensors does the same; weight_shape says where the values end).
  if (v.size(1) % per != 0) v = at::cat({v, at::zeros({rows, per - v.size(1) % per}, v.options())}, 1);
  const int64_t cols = v.size(1);
  auto out = at::zeros({rows, cols / per}, at::kLong);
  const auto g = v.view({rows, cols / per, per});
  for (int k = 0; k < per; ++k) out.bitwise_or_(g.select(2, order ? order[k] : k).bitwise_left_shift(bits * k));
  // Reinterpret the low 32 bits as signed int32, as the checkpoints store them.
  return at::where(out >= (int64_t{1} << 31), out - (int64_t{1} << 32), out).to(at::kInt);
}

at::Tensor unpack_last(const at::Tensor& words, int bits, const int* order) {
  const int per = 32 / bits;
  const auto w = words.to(at::kLong).bitwise_and(static_cast<int64_t>(0xffffffffLL));
  const int64_t rows = w.size(0), n = w.size(1);
  auto out = at::empty({rows, n, per}, at::kLong);
  for (int k = 0; k < per; ++k)
    out.select(2, order ? order[k] : k).copy_(w.bitwise_right_shift(bits * k).bitwise_and(static_cast<int64_t>((1 << bits) - 1)));
  return out.view({rows, n * per}).to(at::kInt);
}

}  // namespace

at::Tensor IntWeight::dequantize() const {
  const auto gi = g_idx.to(at::kLong);
  return (codes.to(at::kFloat) - zeros.index_select(1, gi).to(at::kFloat)) * scales.index_select(1, gi);
}

IntWeight IntWeight::cpu() const {
  IntWeight c = *this;
  c.codes = codes.to(at::kCPU);
  c.scales = scales.to(at::kCPU);
  c.zeros = zeros.to(at::kCPU);
  c.g_idx = g_idx.to(at::kCPU);
  return c;
}

int64_t IntWeight::format_group_size() const { return scales.size(1) == 1 ? -1 : group_size; }

at::Tensor Fp4Weight::dequantize() const {
  quant::Fp4Blocks b{codes, scale, global_scale};
  return quant::fp4_dequantize(b, kind);
}

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
    if (w.bits != 4 && w.bits != 8)
      throw Error(ErrorKind::invalid_input, "the compressed-tensors pack-quantized format is written for 4 and 8 bits");
    t["weight_packed"] = pack_last(w.codes.contiguous(), w.bits, nullptr);
    t["weight_scale"] = w.scales.contiguous().to(scale_dtype);
    t["weight_shape"] = at::tensor({out, in}, at::kLong);
    if (!at::equal(w.zeros, at::full_like(w.zeros, 1 << (w.bits - 1))))
      t["weight_zero_point"] = pack_last(w.zeros.t().contiguous(), w.bits, nullptr).t().contiguous();
    if (!trivial_g_idx) t["weight_g_idx"] = w.g_idx.to(at::kInt).contiguous();
    return t;
  }
  if (format == PackedFormat::awq) {
    if (w.bits != 4) throw Error(ErrorKind::invalid_input, "the AWQ GEMM format holds 4-bit weights only");
    if (w.group_size <= 0 || in % w.group_size != 0)
      throw Error(ErrorKind::invalid_input, "the AWQ GEMM format needs a group size dividing in_features");
    if (!trivial_g_idx)
      throw Error(ErrorKind::invalid_input, "the AWQ GEMM format has no act-order (g_idx)");
    t["qweight"] = pack_last(w.codes.t(), 4, kAwqOrder);
    t["qzeros"] = pack_last(w.zeros.t(), 4, kAwqOrder);
    t["scales"] = w.scales.t().contiguous().to(at::kHalf);
    return t;
  }
  if (w.bits != 4 && w.bits != 8) throw Error(ErrorKind::invalid_input, "the GPTQ format is written for 4 and 8 bits");
  if (in % (32 / w.bits) != 0 || out % (32 / w.bits) != 0)
    throw Error(ErrorKind::invalid_input, "the GPTQ format packs in and out features in words: both must be multiples of " +
                                              std::to_string(32 / w.bits));
  // Along the input dimension: pack each output row's inputs, then lay the
  // words out as [in * bits / 32, out].
  t["qweight"] = pack_last(w.codes.contiguous(), w.bits, nullptr).t().contiguous();
  t["qzeros"] = pack_last((w.zeros - 1).bitwise_and(static_cast<int64_t>((1 << w.bits) - 1)).t().contiguous(), w.bits, nullptr);
  t["scales"] = w.scales.t().contiguous().to(at::kHalf);
  t["g_idx"] = w.g_idx.to(at::kInt).contiguous();
  return t;
}

nlohmann::json packed_quantization_config(const std::map<std::string, IntWeight>& weights, PackedFormat format,
                                          const nlohmann::json& params) {
  if (weights.empty()) throw Error(ErrorKind::invalid_input, "no quantized Linears to pack");
  const auto& any = weights.begin()->second;
  for (const auto& [name, w] : weights)
    if (w.bits != any.bits || w.format_group_size() != any.format_group_size())
      throw Error(ErrorKind::invalid_input, "the awq and gptq formats hold one bit width and group size; " + name +
                                                " differs (compressed-tensors holds one per Linear)");
  if (format == PackedFormat::awq)
    return {{"quant_method", "awq"}, {"bits", any.bits}, {"group_size", any.group_size}, {"zero_point", true},
            {"version", "gemm"}, {"modules_to_not_convert", nullptr}};
  if (format != PackedFormat::gptq) throw Error(ErrorKind::invalid_input, "compressed-tensors configs come from compressed_tensors_config");
  {
    return {{"quant_method", "gptq"}, {"bits", any.bits}, {"group_size", any.format_group_size()},
            {"desc_act", params.value("DESC_ACT", false)}, {"sym", !params.value("ZERO_POINT", true)},
            {"static_groups", params.value("STATIC_GROUPS", false)}, {"true_sequential", true},
            {"damp_percent", params.value("DAMP_PERCENT", 0.01)}, {"checkpoint_format", "gptq"}};
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
  if (w.kind == quant::Fp4Kind::nvfp4) {
    t["weight_global_scale"] = at::full({1}, w.global_scale, at::kFloat);
    if (w.input_global_scale > 0) t["input_global_scale"] = at::full({1}, w.input_global_scale, at::kFloat);
  }
  return t;
}

namespace {

nlohmann::json args(int bits, const char* type, bool symmetric, const char* strategy, nlohmann::json group_size,
                    nlohmann::json dynamic, nlohmann::json observer) {
  return {{"num_bits", bits},       {"type", type},         {"symmetric", symmetric},
          {"strategy", strategy},   {"group_size", std::move(group_size)}, {"dynamic", std::move(dynamic)},
          {"actorder", nullptr},    {"observer", std::move(observer)},     {"observer_kwargs", nlohmann::json::object()},
          {"block_structure", nullptr}};
}

bool trivial_groups(const IntWeight& w) {
  const int64_t in = w.codes.size(1);
  return at::equal(w.g_idx.to(at::kCPU).to(at::kLong),
                   at::arange(in, at::kLong).div(w.group_size > 0 ? w.group_size : in, "floor"));
}

// Whether `pattern` (a PCRE2 regular expression) matches `subject` from its
// first character, as Python's re.match does. Bounded: a pattern from an
// untrusted checkpoint gets a match limit, and one that fails to compile or
// runs out of it matches nothing.
bool regex_match_start(const std::string& pattern, const std::string& subject) {
  int err = 0;
  PCRE2_SIZE off = 0;
  pcre2_code* code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.data()), pattern.size(), PCRE2_ANCHORED, &err, &off, nullptr);
  if (code == nullptr) return false;
  pcre2_match_context* ctx = pcre2_match_context_create(nullptr);
  pcre2_set_match_limit(ctx, 100000);
  pcre2_match_data* md = pcre2_match_data_create_from_pattern(code, nullptr);
  const int rc = pcre2_match(code, reinterpret_cast<PCRE2_SPTR>(subject.data()), subject.size(), 0, 0, md, ctx);
  pcre2_match_data_free(md);
  pcre2_match_context_free(ctx);
  pcre2_code_free(code);
  return rc >= 0;
}

// 0: no match; 3: exact name; 2: "re:" pattern; 1: the class "Linear".
int match_rank(const nlohmann::json& targets, const std::string& name) {
  int best = 0;
  if (!targets.is_array()) return 0;
  for (const auto& t : targets) {
    if (!t.is_string()) continue;
    const std::string s = t.get<std::string>();
    if (s == name) return 3;
    if (s.rfind("re:", 0) == 0 && s.size() <= 1000 && regex_match_start(s.substr(3), name)) best = std::max(best, 2);
    if (s == "Linear") best = std::max(best, 1);
  }
  return best;
}

}  // namespace

LinearScheme int_scheme(const IntWeight& w) {
  const bool symmetric = at::equal(w.zeros.to(at::kCPU), at::full_like(w.zeros.to(at::kCPU), 1 << (w.bits - 1)));
  const bool channel = w.scales.size(1) == 1;
  auto wq = args(w.bits, "int", symmetric, channel ? "channel" : "group",
                 channel ? nlohmann::json(nullptr) : nlohmann::json(w.group_size), false, "minmax");
  if (!trivial_groups(w)) wq["actorder"] = "group";
  return {wq, nullptr, "pack-quantized"};
}

LinearScheme w8a8_scheme(bool is_float, const std::string& weight_strategy) {
  return {args(8, is_float ? "float" : "int", true, weight_strategy.c_str(), nullptr, false, "minmax"), nullptr,
          is_float ? "float-quantized" : "int-quantized"};
}

LinearScheme fp4_scheme(const Fp4Weight& w) {
  model::ActQuant a;
  a.kind = w.kind == quant::Fp4Kind::nvfp4 ? model::ActQuant::Kind::nvfp4 : model::ActQuant::Kind::mxfp4;
  if (w.kind == quant::Fp4Kind::nvfp4) {
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
    case K::none: return nullptr;
    case K::int_token: return args(a.bits, "int", true, "token", nullptr, true, nullptr);
    case K::int_tensor: return args(a.bits, "int", true, "tensor", nullptr, false, "minmax");
    case K::fp8_token: return args(8, "float", true, "token", nullptr, true, nullptr);
    case K::fp8_tensor: return args(8, "float", true, "tensor", nullptr, false, "minmax");
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

model::ActQuant activation_from_args(const nlohmann::json& j, double static_scale) {
  using K = model::ActQuant::Kind;
  model::ActQuant a;
  if (j.is_null()) return a;
  if (!j.is_object()) throw Error(ErrorKind::invalid_input, "input_activations is not an object");
  const std::string type = j.value("type", "int"), strategy = j.value("strategy", "tensor");
  const int bits = j.value("num_bits", 8);
  const bool dynamic = j.contains("dynamic") && !j["dynamic"].is_boolean() ? true : j.value("dynamic", false);
  if (type == "float" && bits == 4) {
    a.kind = strategy == "tensor_group" ? K::nvfp4 : K::mxfp4;
    if (a.kind == K::mxfp4 && (strategy != "group" || j.value("group_size", 0) != 32))
      throw Error(ErrorKind::invalid_input, "FP4 input activations other than NVFP4 (tensor_group 16) or MXFP4 (group 32) are not read");
    if (a.kind == K::nvfp4 && j.value("group_size", 0) != 16)
      throw Error(ErrorKind::invalid_input, "NVFP4 input activations have group_size 16");
    a.bits = 4;
    a.scale = static_scale;
    return a;
  }
  if (type == "float" && bits != 8) throw Error(ErrorKind::invalid_input, "float input activations of other than 4 or 8 bits are not read");
  if (type != "float" && type != "int") throw Error(ErrorKind::invalid_input, "input activations of type '" + type + "' are not read");
  if (!j.value("symmetric", true)) throw Error(ErrorKind::invalid_input, "asymmetric input activations are not read");
  if (strategy != "token" && strategy != "tensor")
    throw Error(ErrorKind::invalid_input, "input activations per " + strategy + " are not read (token or tensor)");
  if (!dynamic && strategy == "token") throw Error(ErrorKind::invalid_input, "static per-token input activations are not read");
  const bool is_float = type == "float";
  a.kind = dynamic ? (is_float ? K::fp8_token : K::int_token) : (is_float ? K::fp8_tensor : K::int_tensor);
  a.bits = bits;
  if (bits < 2 || bits > 16) throw Error(ErrorKind::invalid_input, "input activations of " + std::to_string(bits) + " bits are not read");
  if (!dynamic) {
    if (!(static_scale > 0)) throw Error(ErrorKind::invalid_input, "static input activations without a positive input_scale");
    a.scale = static_scale;
  }
  return a;
}

nlohmann::json compressed_tensors_config(const std::map<std::string, LinearScheme>& schemes,
                                         const std::vector<std::string>& ignore, const nlohmann::json& kv_cache_scheme) {
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
    cg["group_" + std::to_string(i)] = {{"targets", groups.size() == 1 ? nlohmann::json::array({"Linear"}) : nlohmann::json(names)},
                                        {"weights", s->weights},
                                        {"input_activations", s->input_activations},
                                        {"output_activations", nullptr},
                                        {"format", s->format}};
  }
  std::string format = groups.front().first->format;
  for (const auto& g : groups)
    if (g.first->format != format) format = "mixed-precision";
  nlohmann::json ign = nlohmann::json::array({"lm_head"});
  for (const auto& i : ignore) ign.push_back(i);
  return {{"quant_method", "compressed-tensors"}, {"format", format},       {"quantization_status", "compressed"},
          {"config_groups", cg},                 {"ignore", ign},          {"kv_cache_scheme", kv_cache_scheme},
          {"global_compression_ratio", nullptr}};
}

const nlohmann::json* scheme_group(const nlohmann::json& qc, const std::string& name) {
  if (!qc.is_object() || qc.value("quant_method", "") != "compressed-tensors") return nullptr;
  if (qc.contains("ignore") && match_rank(qc["ignore"], name) > 0) return nullptr;
  if (!qc.contains("config_groups") || !qc["config_groups"].is_object()) return nullptr;
  const nlohmann::json* best = nullptr;
  int rank = 0;
  for (const auto& [key, g] : qc["config_groups"].items()) {
    if (!g.is_object() || !g.contains("targets")) continue;
    const int r = match_rank(g["targets"], name);
    if (r > rank) {
      rank = r;
      best = &g;
    }
  }
  return best;
}

std::string group_format(const nlohmann::json& qc, const nlohmann::json& group) {
  if (group.contains("format") && group["format"].is_string()) return group["format"];
  return qc.value("format", std::string());
}

nlohmann::json fp8_kv_cache_args() { return args(8, "float", true, "tensor", nullptr, false, "minmax"); }

nlohmann::json int_kv_cache_args(int bits, int64_t group) {
  return args(bits, "int", false, "attn_head", group > 0 ? nlohmann::json(group) : nlohmann::json(nullptr), true, nullptr);
}

bool is_quantized_linear(const model::Checkpoint& ckpt, const std::string& p, const nlohmann::json& qc) {
  const std::string method = qc.is_object() ? qc.value("quant_method", "") : "";
  if (method == "awq" || method == "gptq") return ckpt.has(p + ".qweight");
  if (method != "compressed-tensors" || scheme_group(qc, p) == nullptr) return false;
  return ckpt.has(p + ".weight_packed") || ckpt.has(p + ".weight_scale");
}

namespace {

at::Tensor w8a8_dequantize(const model::Checkpoint& ckpt, const std::string& p) {
  const auto codes = ckpt.tensor(p + ".weight");
  if (codes.scalar_type() != at::kByte && codes.scalar_type() != at::kChar)
    throw Error(ErrorKind::data_corruption, p + ".weight is neither F8_E4M3 nor I8 in a W8A8 checkpoint");
  const auto scale = ckpt.tensor(p + ".weight_scale").to(at::kFloat);
  const auto values = codes.scalar_type() == at::kByte ? quant::fp8_e4m3_decode(codes) : codes.to(at::kFloat);
  return values * (scale.dim() == 2 ? scale : scale.reshape({1, -1}));
}

at::Tensor fp4_unpack(const model::Checkpoint& ckpt, const std::string& p, quant::Fp4Kind kind) {
  const auto packed = ckpt.tensor(p + ".weight_packed");
  if (packed.scalar_type() != at::kByte || packed.dim() != 2)
    throw Error(ErrorKind::data_corruption, p + ".weight_packed is not a 2-D U8 tensor");
  const int64_t out = packed.size(0), in = packed.size(1) * 2;
  const auto codes = at::stack({packed.bitwise_and(15), packed.bitwise_right_shift(4)}, 2).reshape({out, in});
  const auto scale = ckpt.tensor(p + ".weight_scale");
  const int64_t block = quant::fp4_block(kind);
  if (scale.scalar_type() != at::kByte || scale.dim() != 2 || scale.size(0) != out || scale.size(1) * block != in)
    throw Error(ErrorKind::data_corruption, p + ".weight_scale is not [" + std::to_string(out) + ", " +
                                                std::to_string(in / block) + "] of 8-bit scales");
  quant::Fp4Blocks b{codes, scale, 1.0};
  if (kind == quant::Fp4Kind::nvfp4) {
    b.global_scale = ckpt.tensor(p + ".weight_global_scale").to(at::kFloat).flatten()[0].item<double>();
    if (!(b.global_scale > 0) || !std::isfinite(b.global_scale))
      throw Error(ErrorKind::data_corruption, p + ".weight_global_scale is not a positive number");
  }
  return quant::fp4_dequantize(b, kind);
}

}  // namespace

at::Tensor unpack_weight(const model::Checkpoint& ckpt, const std::string& p, const nlohmann::json& qc) {
  const std::string method = qc.value("quant_method", "");
  if (method == "compressed-tensors") {
    const nlohmann::json* group = scheme_group(qc, p);
    if (group == nullptr || !group->contains("weights") || !(*group)["weights"].is_object())
      throw Error(ErrorKind::invalid_input, p + " is in no config group with weights of the compressed-tensors config");
    const std::string format = group_format(qc, *group);
    if (format == "float-quantized" || format == "int-quantized" || format == "naive-quantized") return w8a8_dequantize(ckpt, p);
    if (format == "nvfp4-pack-quantized") return fp4_unpack(ckpt, p, quant::Fp4Kind::nvfp4);
    if (format == "mxfp4-pack-quantized") return fp4_unpack(ckpt, p, quant::Fp4Kind::mxfp4);
    if (format != "pack-quantized")
      throw Error(ErrorKind::invalid_input, "compressed-tensors format '" + format + "' of " + p +
                                                " is not read (pack-quantized, int-/float-quantized, nvfp4-/mxfp4-pack-quantized)");
    const auto& wq = (*group)["weights"];
    const int bits = wq.value("num_bits", 4);
    if (bits != 4 && bits != 8) throw Error(ErrorKind::invalid_input, p + ": pack-quantized weights of " + std::to_string(bits) + " bits are not read");
    const int64_t offset = int64_t{1} << (bits - 1);
    const auto shape = ckpt.tensor(p + ".weight_shape").to(at::kLong);
    const int64_t out = shape[0].item<int64_t>(), in = shape[1].item<int64_t>();
    const auto codes = unpack_last(ckpt.tensor(p + ".weight_packed"), bits, nullptr).narrow(1, 0, in);  // [out, in]
    const auto scales = ckpt.tensor(p + ".weight_scale").to(at::kFloat);  // [out, groups]
    const auto zeros = ckpt.has(p + ".weight_zero_point")
                           ? unpack_last(ckpt.tensor(p + ".weight_zero_point").t().contiguous(), bits, nullptr).t().narrow(0, 0, out)
                           : at::full(scales.sizes(), offset, at::kInt);
    at::Tensor gi;
    if (ckpt.has(p + ".weight_g_idx")) gi = ckpt.tensor(p + ".weight_g_idx").to(at::kLong);
    else if (scales.size(1) == 1) gi = at::zeros({in}, at::kLong);
    else {
      // Groups of group_size columns, the last one narrower when it does not divide `in`.
      const int64_t g = wq.contains("group_size") && wq["group_size"].is_number_integer() && wq["group_size"].get<int64_t>() > 0
                            ? wq["group_size"].get<int64_t>()
                            : (in + scales.size(1) - 1) / scales.size(1);
      if ((in + g - 1) / g != scales.size(1))
        throw Error(ErrorKind::data_corruption, p + ".weight_scale has " + std::to_string(scales.size(1)) + " groups, group_size " +
                                                    std::to_string(g) + " over " + std::to_string(in) + " columns implies " +
                                                    std::to_string((in + g - 1) / g));
      gi = at::arange(in, at::kLong).div(g, "floor");
    }
    return (codes.to(at::kFloat) - zeros.index_select(1, gi).to(at::kFloat)) * scales.index_select(1, gi);
  }
  const int bits = qc.value("bits", 4);
  const auto scales = ckpt.tensor(p + ".scales").to(at::kFloat);  // [groups, out]
  if (method == "awq") {
    const int64_t g = qc.value("group_size", 128);
    const auto codes = unpack_last(ckpt.tensor(p + ".qweight"), 4, kAwqOrder).t();  // [out, in]
    const auto zeros = unpack_last(ckpt.tensor(p + ".qzeros"), 4, kAwqOrder).t();   // [out, groups]
    const auto gi = at::arange(codes.size(1), at::kLong).div(g, "floor");
    return (codes.to(at::kFloat) - zeros.index_select(1, gi).to(at::kFloat)) * scales.t().index_select(1, gi);
  }
  if (method == "gptq") {
    const auto codes = unpack_last(ckpt.tensor(p + ".qweight").t().contiguous(), bits, nullptr);  // [out, in]
    const auto zeros = (unpack_last(ckpt.tensor(p + ".qzeros"), bits, nullptr) + 1).bitwise_and(static_cast<int64_t>((1 << bits) - 1));  // [groups, out]
    const auto gi = ckpt.tensor(p + ".g_idx").to(at::kLong);
    return (codes.to(at::kFloat) - zeros.t().index_select(1, gi).to(at::kFloat)) * scales.t().index_select(1, gi);
  }
  throw Error(ErrorKind::invalid_input, "packed weights of quant_method '" + method + "' are not supported (awq, gptq, compressed-tensors)");
}

}  // namespace qjobs::exporter

#include "jobs/model/quantized_checkpoint.hpp"

#include <cmath>

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include "common/error.hpp"
#include "jobs/model/checkpoint.hpp"
#include "jobs/numeric/bit_pack.hpp"
#include "jobs/numeric/fp4.hpp"
#include "jobs/numeric/fp8.hpp"

namespace qjobs::model {
namespace {

using numeric::kAwqOrder;
using numeric::unpack_dense;
using numeric::unpack_last;

// Whether `pattern` (a PCRE2 regular expression) matches `subject` from its
// first character, as Python's re.match does. Bounded: a pattern from an
// untrusted checkpoint gets a match limit, and one that fails to compile or
// runs out of it matches nothing.
bool regex_match_start(const std::string& pattern, const std::string& subject) {
  int err = 0;
  PCRE2_SIZE off = 0;
  pcre2_code* code =
      pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.data()), pattern.size(), PCRE2_ANCHORED, &err, &off, nullptr);
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

at::Tensor w8a8_dequantize(const Checkpoint& ckpt, const std::string& p) {
  const auto codes = ckpt.tensor(p + ".weight");
  if (codes.scalar_type() != at::kByte && codes.scalar_type() != at::kChar)
    throw Error(ErrorKind::data_corruption, p + ".weight is neither F8_E4M3 nor I8 in a W8A8 checkpoint");
  const auto scale = ckpt.tensor(p + ".weight_scale").to(at::kFloat);
  const auto values = codes.scalar_type() == at::kByte ? numeric::fp8_e4m3_decode(codes) : codes.to(at::kFloat);
  return values * (scale.dim() == 2 ? scale : scale.reshape({1, -1}));
}

at::Tensor fp4_unpack(const Checkpoint& ckpt, const std::string& p, numeric::Fp4Kind kind) {
  const auto packed = ckpt.tensor(p + ".weight_packed");
  if (packed.scalar_type() != at::kByte || packed.dim() != 2)
    throw Error(ErrorKind::data_corruption, p + ".weight_packed is not a 2-D U8 tensor");
  const int64_t out = packed.size(0), in = packed.size(1) * 2;
  const auto codes = at::stack({packed.bitwise_and(15), packed.bitwise_right_shift(4)}, 2).reshape({out, in});
  const auto scale = ckpt.tensor(p + ".weight_scale");
  const int64_t block = numeric::fp4_block(kind);
  if (scale.scalar_type() != at::kByte || scale.dim() != 2 || scale.size(0) != out || scale.size(1) * block != in)
    throw Error(ErrorKind::data_corruption, p + ".weight_scale is not [" + std::to_string(out) + ", " +
                                                std::to_string(in / block) + "] of 8-bit scales");
  numeric::Fp4Blocks b{codes, scale, 1.0};
  if (kind == numeric::Fp4Kind::nvfp4) {
    b.global_scale = ckpt.tensor(p + ".weight_global_scale").to(at::kFloat).flatten()[0].item<double>();
    if (!(b.global_scale > 0) || !std::isfinite(b.global_scale))
      throw Error(ErrorKind::data_corruption, p + ".weight_global_scale is not a positive number");
  }
  return numeric::fp4_dequantize(b, kind);
}

}  // namespace

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

ActQuant activation_from_args(const nlohmann::json& j, double static_scale) {
  using K = ActQuant::Kind;
  ActQuant a;
  if (j.is_null()) return a;
  if (!j.is_object()) throw Error(ErrorKind::invalid_input, "input_activations is not an object");
  const std::string type = j.value("type", "int"), strategy = j.value("strategy", "tensor");
  const int bits = j.value("num_bits", 8);
  const bool dynamic = j.contains("dynamic") && !j["dynamic"].is_boolean() ? true : j.value("dynamic", false);
  if (type == "float" && bits == 4) {
    a.kind = strategy == "tensor_group" ? K::nvfp4 : K::mxfp4;
    if (a.kind == K::mxfp4 && (strategy != "group" || j.value("group_size", 0) != 32))
      throw Error(ErrorKind::invalid_input,
                  "FP4 input activations other than NVFP4 (tensor_group 16) or MXFP4 (group 32) are not read");
    if (a.kind == K::nvfp4 && j.value("group_size", 0) != 16)
      throw Error(ErrorKind::invalid_input, "NVFP4 input activations have group_size 16");
    a.bits = 4;
    a.scale = static_scale;
    return a;
  }
  if (type == "float" && bits != 8)
    throw Error(ErrorKind::invalid_input, "float input activations of other than 4 or 8 bits are not read");
  if (type != "float" && type != "int")
    throw Error(ErrorKind::invalid_input, "input activations of type '" + type + "' are not read");
  if (!j.value("symmetric", true)) throw Error(ErrorKind::invalid_input, "asymmetric input activations are not read");
  if (strategy != "token" && strategy != "tensor")
    throw Error(ErrorKind::invalid_input, "input activations per " + strategy + " are not read (token or tensor)");
  if (!dynamic && strategy == "token")
    throw Error(ErrorKind::invalid_input, "static per-token input activations are not read");
  const bool is_float = type == "float";
  a.kind = dynamic ? (is_float ? K::fp8_token : K::int_token) : (is_float ? K::fp8_tensor : K::int_tensor);
  a.bits = bits;
  if (bits < 2 || bits > 16)
    throw Error(ErrorKind::invalid_input, "input activations of " + std::to_string(bits) + " bits are not read");
  if (!dynamic) {
    if (!(static_scale > 0))
      throw Error(ErrorKind::invalid_input, "static input activations without a positive input_scale");
    a.scale = static_scale;
  }
  return a;
}

bool is_quantized_linear(const Checkpoint& ckpt, const std::string& p, const nlohmann::json& qc) {
  const std::string method = qc.is_object() ? qc.value("quant_method", "") : "";
  if (method == "awq" || method == "gptq") return ckpt.has(p + ".qweight");
  if (method != "compressed-tensors" || scheme_group(qc, p) == nullptr) return false;
  return ckpt.has(p + ".weight_packed") || ckpt.has(p + ".weight_scale");
}

at::Tensor unpack_weight(const Checkpoint& ckpt, const std::string& p, const nlohmann::json& qc) {
  const std::string method = qc.value("quant_method", "");
  if (method == "compressed-tensors") {
    const nlohmann::json* group = scheme_group(qc, p);
    if (group == nullptr || !group->contains("weights") || !(*group)["weights"].is_object())
      throw Error(ErrorKind::invalid_input, p + " is in no config group with weights of the compressed-tensors config");
    const std::string format = group_format(qc, *group);
    if (format == "float-quantized" || format == "int-quantized" || format == "naive-quantized")
      return w8a8_dequantize(ckpt, p);
    if (format == "nvfp4-pack-quantized") return fp4_unpack(ckpt, p, numeric::Fp4Kind::nvfp4);
    if (format == "mxfp4-pack-quantized") return fp4_unpack(ckpt, p, numeric::Fp4Kind::mxfp4);
    if (format != "pack-quantized")
      throw Error(ErrorKind::invalid_input,
                  "compressed-tensors format '" + format + "' of " + p +
                      " is not read (pack-quantized, int-/float-quantized, nvfp4-/mxfp4-pack-quantized)");
    const auto& wq = (*group)["weights"];
    const int bits = wq.value("num_bits", 4);
    if (bits < 1 || bits > 8)
      throw Error(ErrorKind::invalid_input,
                  p + ": pack-quantized weights of " + std::to_string(bits) + " bits are not read (1 to 8)");
    const int64_t offset = int64_t{1} << (bits - 1);
    const auto shape = ckpt.tensor(p + ".weight_shape").to(at::kLong);
    const int64_t out = shape[0].item<int64_t>(), in = shape[1].item<int64_t>();
    const auto codes = unpack_dense(ckpt.tensor(p + ".weight_packed"), bits, in);  // [out, in]
    const auto scales = ckpt.tensor(p + ".weight_scale").to(at::kFloat);           // [out, groups]
    const auto zeros = ckpt.has(p + ".weight_zero_point")
                           ? unpack_dense(ckpt.tensor(p + ".weight_zero_point").t().contiguous(), bits, out).t()
                           : at::full(scales.sizes(), offset, at::kInt);
    at::Tensor gi;
    if (ckpt.has(p + ".weight_g_idx")) gi = ckpt.tensor(p + ".weight_g_idx").to(at::kLong);
    else if (scales.size(1) == 1) gi = at::zeros({in}, at::kLong);
    else {
      // Groups of group_size columns, the last one narrower when it does not divide `in`.
      const int64_t g =
          wq.contains("group_size") && wq["group_size"].is_number_integer() && wq["group_size"].get<int64_t>() > 0
              ? wq["group_size"].get<int64_t>()
              : (in + scales.size(1) - 1) / scales.size(1);
      if ((in + g - 1) / g != scales.size(1))
        throw Error(ErrorKind::data_corruption, p + ".weight_scale has " + std::to_string(scales.size(1)) +
                                                    " groups, group_size " + std::to_string(g) + " over " +
                                                    std::to_string(in) + " columns implies " +
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
    const auto zeros = (unpack_last(ckpt.tensor(p + ".qzeros"), bits, nullptr) + 1)
                           .bitwise_and(static_cast<int64_t>((1 << bits) - 1));  // [groups, out]
    const auto gi = ckpt.tensor(p + ".g_idx").to(at::kLong);
    return (codes.to(at::kFloat) - zeros.t().index_select(1, gi).to(at::kFloat)) * scales.t().index_select(1, gi);
  }
  throw Error(ErrorKind::invalid_input,
              "packed weights of quant_method '" + method + "' are not supported (awq, gptq, compressed-tensors)");
}

}  // namespace qjobs::model

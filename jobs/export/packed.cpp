#include "jobs/export/packed.hpp"

#include "common/error.hpp"
#include "jobs/quant/fp8.hpp"
#include "jobs/model/checkpoint.hpp"

namespace qjobs::exporter {
namespace {

constexpr int kAwqOrder[8] = {0, 2, 4, 6, 1, 3, 5, 7};

// Packs the last dimension of x (int32 values < 2^bits) into int32 words,
// `32 / bits` values per word; value k of word j sits at bits*k and comes
// from column (j * per + order[k]).
at::Tensor pack_last(const at::Tensor& x, int bits, const int* order) {
  const int per = 32 / bits;
  const auto v = x.to(at::kLong).contiguous();
  const int64_t rows = v.size(0), cols = v.size(1);
  if (cols % per != 0) throw Error(ErrorKind::invalid_input, "cannot pack " + std::to_string(cols) + " values in words of " + std::to_string(per));
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

std::optional<PackedFormat> packed_format(const std::string& name) {
  if (name == "awq") return PackedFormat::awq;
  if (name == "gptq") return PackedFormat::gptq;
  if (name == "compressed-tensors") return PackedFormat::compressed_tensors;
  return std::nullopt;
}

std::optional<std::string> packed_weight_suffix(const nlohmann::json& qc) {
  const std::string method = qc.is_object() ? qc.value("quant_method", "") : "";
  if (method == "awq" || method == "gptq") return "qweight";
  if (method == "compressed-tensors" && qc.value("format", "") == "pack-quantized") return "weight_packed";
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
    const int per = 32 / w.bits;
    if (in % per != 0 || out % per != 0)
      throw Error(ErrorKind::invalid_input, "compressed-tensors packing needs in and out features divisible by " + std::to_string(per));
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
    if (w.bits != any.bits || w.group_size != any.group_size)
      throw Error(ErrorKind::invalid_input, "packed formats hold one bit width and group size; " + name + " differs");
  if (format == PackedFormat::awq)
    return {{"quant_method", "awq"}, {"bits", any.bits}, {"group_size", any.group_size}, {"zero_point", true},
            {"version", "gemm"}, {"modules_to_not_convert", nullptr}};
  if (format == PackedFormat::gptq)
    return {{"quant_method", "gptq"}, {"bits", any.bits}, {"group_size", any.group_size},
            {"desc_act", params.value("DESC_ACT", false)}, {"sym", !params.value("ZERO_POINT", true)},
            {"static_groups", params.value("STATIC_GROUPS", false)}, {"true_sequential", true},
            {"damp_percent", params.value("DAMP_PERCENT", 0.01)}, {"checkpoint_format", "gptq"}};
  bool symmetric = true, act_order = false;
  for (const auto& [name, w] : weights) {
    symmetric = symmetric && at::equal(w.zeros, at::full_like(w.zeros, 1 << (w.bits - 1)));
    act_order = act_order || (w.group_size > 0 && !at::equal(w.g_idx.to(at::kLong),
                                                             at::arange(w.codes.size(1), at::kLong).div(w.group_size, "floor")));
  }
  const bool channel = any.scales.size(1) == 1;  // one group per row
  nlohmann::json wq = {{"num_bits", any.bits}, {"type", "int"}, {"symmetric", symmetric},
                       {"strategy", channel ? "channel" : "group"}, {"group_size", channel ? nlohmann::json(nullptr) : nlohmann::json(any.group_size)},
                       {"dynamic", false}, {"actorder", act_order ? nlohmann::json("group") : nlohmann::json(nullptr)},
                       {"observer", "minmax"}, {"observer_kwargs", nlohmann::json::object()}, {"block_structure", nullptr}};
  return {{"quant_method", "compressed-tensors"},
          {"format", "pack-quantized"},
          {"quantization_status", "compressed"},
          {"config_groups", {{"group_0", {{"targets", {"Linear"}}, {"weights", wq}, {"input_activations", nullptr},
                                          {"output_activations", nullptr}, {"format", "pack-quantized"}}}}},
          {"ignore", {"lm_head"}},
          {"kv_cache_scheme", nullptr},
          {"global_compression_ratio", nullptr}};
}

nlohmann::json w8a8_config(bool is_float, const std::string& weight_strategy, bool act_dynamic, bool kv_cache,
                           const std::vector<std::string>& ignore) {
  const char* type = is_float ? "float" : "int";
  const char* format = is_float ? "float-quantized" : "int-quantized";
  const nlohmann::json wq = {{"num_bits", 8}, {"type", type}, {"symmetric", true}, {"strategy", weight_strategy},
                             {"group_size", nullptr}, {"dynamic", false}, {"actorder", nullptr}, {"observer", "minmax"},
                             {"observer_kwargs", nlohmann::json::object()}, {"block_structure", nullptr}};
  const nlohmann::json aq = {{"num_bits", 8}, {"type", type}, {"symmetric", true},
                             {"strategy", act_dynamic ? "token" : "tensor"}, {"group_size", nullptr},
                             {"dynamic", act_dynamic}, {"actorder", nullptr}, {"observer", act_dynamic ? nlohmann::json(nullptr) : nlohmann::json("minmax")},
                             {"observer_kwargs", nlohmann::json::object()}, {"block_structure", nullptr}};
  nlohmann::json kv = nullptr;
  if (kv_cache)
    kv = {{"num_bits", 8}, {"type", "float"}, {"symmetric", true}, {"strategy", "tensor"}, {"group_size", nullptr},
          {"dynamic", false}, {"actorder", nullptr}, {"observer", "minmax"}, {"observer_kwargs", nlohmann::json::object()},
          {"block_structure", nullptr}};
  nlohmann::json ign = nlohmann::json::array({"lm_head"});
  for (const auto& i : ignore) ign.push_back(i);
  return {{"quant_method", "compressed-tensors"},
          {"format", format},
          {"quantization_status", "compressed"},
          {"config_groups", {{"group_0", {{"targets", {"Linear"}}, {"weights", wq}, {"input_activations", aq},
                                          {"output_activations", nullptr}, {"format", format}}}}},
          {"ignore", ign},
          {"kv_cache_scheme", kv},
          {"global_compression_ratio", nullptr}};
}

bool is_w8a8(const nlohmann::json& qc) {
  return qc.is_object() && qc.value("quant_method", "") == "compressed-tensors" &&
         (qc.value("format", "") == "float-quantized" || qc.value("format", "") == "int-quantized");
}

at::Tensor w8a8_dequantize(const model::Checkpoint& ckpt, const std::string& p) {
  const auto codes = ckpt.tensor(p + ".weight");
  if (codes.scalar_type() != at::kByte && codes.scalar_type() != at::kChar)
    throw Error(ErrorKind::data_corruption, p + ".weight is neither F8_E4M3 nor I8 in a W8A8 checkpoint");
  const auto scale = ckpt.tensor(p + ".weight_scale").to(at::kFloat);
  const auto values = codes.scalar_type() == at::kByte ? quant::fp8_e4m3_decode(codes) : codes.to(at::kFloat);
  return values * (scale.dim() == 2 ? scale : scale.reshape({1, -1}));
}

at::Tensor unpack_weight(const model::Checkpoint& ckpt, const std::string& p, const nlohmann::json& qc) {
  const std::string method = qc.value("quant_method", "");
  if (method == "compressed-tensors") {
    const auto groups = qc.value("config_groups", nlohmann::json::object());
    if (groups.size() != 1 || !groups.begin()->contains("weights"))
      throw Error(ErrorKind::invalid_input, "compressed-tensors checkpoints with other than one config group are not read");
    const auto& wq = (*groups.begin())["weights"];
    const int bits = wq.value("num_bits", 4);
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

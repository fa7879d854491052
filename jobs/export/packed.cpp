#include "jobs/export/packed.hpp"

#include "common/error.hpp"
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

std::map<std::string, at::Tensor> pack(const IntWeight& w, PackedFormat format) {
  const int64_t in = w.codes.size(1);
  std::map<std::string, at::Tensor> t;
  if (format == PackedFormat::awq) {
    if (w.bits != 4) throw Error(ErrorKind::invalid_input, "the AWQ GEMM format holds 4-bit weights only");
    if (w.group_size <= 0 || in % w.group_size != 0)
      throw Error(ErrorKind::invalid_input, "the AWQ GEMM format needs a group size dividing in_features");
    if (!at::equal(w.g_idx.to(at::kLong), at::arange(in, at::kLong).div(w.group_size, "floor")))
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

at::Tensor unpack_weight(const model::Checkpoint& ckpt, const std::string& p, const nlohmann::json& qc) {
  const std::string method = qc.value("quant_method", "");
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
  throw Error(ErrorKind::invalid_input, "packed weights of quant_method '" + method + "' are not supported (awq, gptq)");
}

}  // namespace qjobs::exporter

// EXPORT_FORMAT mlx: MLX's affine quantization as mlx-lm writes and loads it
// (mlx_lm.load on Apple silicon, and LM Studio's MLX engine). Each quantized
// Linear is `weight` (uint32, 32 / bits codes per word along the inputs, the
// first in the lowest bits), `scales` and `biases` (one per group, in the
// checkpoint's dtype; w = scales * q + biases, so biases = -scale * zero);
// config.json's `quantization` holds the most common {group_size, bits} and
// an entry per Linear packed otherwise. Embeddings, norms and the head stay
// as they are. Read back by decoding that file, so that the evaluation
// scores the weights MLX computes with.
#include <map>

#include "common/error.hpp"
#include "common/job_dir.hpp"
#include "common/strings.hpp"
#include "jobs/model/safetensors.hpp"
#include "worker/export_format.hpp"

namespace qjobs::worker {
namespace fs = std::filesystem;
using nlohmann::json;

namespace {

// codes [out, in] (0 .. 2^bits - 1) -> uint32 words [out, in * bits / 32],
// held as int32 with the same bits.
at::Tensor mlx_pack(const at::Tensor& codes, int bits) {
  const int64_t per = 32 / bits;
  const auto c = codes.to(at::kLong).reshape({codes.size(0), codes.size(1) / per, per});
  auto words = at::bitwise_left_shift(c, at::arange(per, at::kLong) * bits).sum(-1);
  words = at::where(words >= (int64_t{1} << 31), words - (int64_t{1} << 32), words);
  return words.to(at::kInt).contiguous();
}

// The inverse: words [out, in * bits / 32] -> codes int64 [out, in].
at::Tensor mlx_unpack(const at::Tensor& words, int bits) {
  const int64_t per = 32 / bits;
  const auto w = words.to(at::kLong).bitwise_and(0xFFFFFFFFLL).unsqueeze(-1);
  const auto codes =
      at::bitwise_right_shift(w, at::arange(per, at::kLong) * bits).bitwise_and((int64_t{1} << bits) - 1);
  return codes.reshape({words.size(0), words.size(1) * per});
}

// One Linear's stored group size and bits, checked against what MLX holds
// (the submission refused the rest).
std::pair<int64_t, int> mlx_scheme(const std::string& name, const numeric::IntWeight& w) {
  const int64_t in = w.codes.size(1);
  const int64_t g = w.group_size <= 0 ? in : w.group_size;
  if (g != 32 && g != 64 && g != 128)
    throw Error(ErrorKind::invalid_input,
                name + ": MLX's groups are 32, 64 or 128 inputs; this Linear has groups of " + std::to_string(g));
  if (w.bits != 2 && w.bits != 4 && w.bits != 8)
    throw Error(ErrorKind::invalid_input,
                name + ": MLX packs 2, 4 or 8 bits; this Linear has " + std::to_string(w.bits));
  if (w.g_idx.defined() && !at::equal(w.g_idx.to(at::kLong).cpu(), at::arange(in, at::kLong).div(g, "floor")))
    throw Error(ErrorKind::invalid_input, name +
                                              ": MLX's groups are consecutive columns; this weight has GPTQ's "
                                              "act-order column map (DESC_ACT without STATIC_GROUPS)");
  return {g, w.bits};
}

// config.json's `quantization`: the most common scheme, and each Linear
// packed otherwise by its path.
json mlx_quantization(const std::map<std::string, numeric::IntWeight>& weights) {
  std::map<std::pair<int64_t, int>, int> count;
  for (const auto& [name, w] : weights) ++count[mlx_scheme(name, w)];
  std::pair<int64_t, int> common{64, 4};
  int most = 0;
  for (const auto& [s, n] : count)
    if (n > most) most = n, common = s;
  json q = {{"group_size", common.first}, {"bits", common.second}};
  for (const auto& [name, w] : weights)
    if (const auto s = mlx_scheme(name, w); s != common) q[name] = {{"group_size", s.first}, {"bits", s.second}};
  return q;
}

ExportResult write_mlx(const ExportInputs& in) {
  require_int_weights(in);
  const json quantization = mlx_quantization(in.q.int_weights);
  SafetensorsLayout l;
  l.last_use = true;
  l.room_per_tensor = 3;
  l.encode = [&in](const std::string& stem, bool is_weight, const model::StTensorInfo& info, const PutTensor& put) {
    const auto it = in.q.int_weights.find(stem);
    if (!is_weight || it == in.q.int_weights.end()) return false;
    const auto w = it->second.cpu();
    const auto [g, bits] = mlx_scheme(stem, w);
    const auto dtype = model::st_to_aten(info.dtype);
    const auto scales = w.scales.to(at::kFloat);
    put(stem + ".weight", mlx_pack(w.codes, bits), model::StDtype::U32);
    put(stem + ".scales", scales.to(dtype), std::nullopt);
    put(stem + ".biases", (-scales * w.zeros.to(at::kFloat)).to(dtype), std::nullopt);
    for (const auto* t : {&it->second.codes, &it->second.scales, &it->second.zeros, &it->second.g_idx})
      model::release_mapped(*t);
    return true;
  };
  l.config_extra = {{"quantization", quantization}};
  write_safetensors_model(in, l, quantization, true);
  in.rep.event({{"type", "export"}, {"format", "mlx"}, {"quantization", quantization}});
  return ExportResult{quantization, {}};
}

// A float checkpoint of the written one: each packed Linear decoded as MLX
// does (scales * q + biases, in float32, stored in the scales' dtype), its
// bits and group size from config.json's `quantization`, as mlx-lm reads them.
fs::path read_back_mlx(const ExportInputs& in, ExportResult& written) {
  const fs::path out = in.dir.model_dir(), readback = in.dir.root() / "mlx_readback";
  fs::remove_all(readback);
  fs::create_directories(readback);
  json config = json::parse(read_file(out / "config.json"));
  const json quantization = config.at("quantization");
  std::vector<model::NamedTensor> tensors;
  for (const auto& e : fs::directory_iterator(out)) {
    if (e.path().extension() != ".safetensors") continue;
    const auto file = model::SafetensorsFile::open(e.path());
    for (const auto& t : file.tensors()) {
      const std::string& n = t.name;
      if (n.ends_with(".scales") || n.ends_with(".biases")) continue;
      const std::string stem = weight_stem(n);
      if (stem.empty() || file.find(stem + ".scales") == nullptr) {
        tensors.push_back({n, file.tensor(n), std::nullopt});
        continue;
      }
      const json& scheme = quantization.contains(stem) ? quantization[stem] : quantization;
      const int bits = scheme.at("bits").get<int>();
      const int64_t g = scheme.at("group_size").get<int64_t>();
      const auto scales = file.tensor(stem + ".scales");
      const auto codes = mlx_unpack(file.tensor(n), bits).to(at::kFloat);
      if (codes.size(1) != scales.size(1) * g)
        throw Error(ErrorKind::data_corruption, stem + ": " + std::to_string(codes.size(1)) + " inputs do not make " +
                                                    std::to_string(scales.size(1)) + " groups of " + std::to_string(g));
      const auto s = scales.to(at::kFloat).repeat_interleave(g, 1);
      const auto b = file.tensor(stem + ".biases").to(at::kFloat).repeat_interleave(g, 1);
      tensors.push_back({n, (s * codes + b).to(scales.scalar_type()), std::nullopt});
    }
  }
  model::save_safetensors(readback / "model.safetensors", tensors);
  tensors.clear();
  config.erase("quantization");
  config.erase("quantization_config");
  write_file_atomic(readback / "config.json", config.dump(2));
  for (const auto& e : fs::directory_iterator(out))
    if (!is_weights_file(e.path()) && e.path().filename() != "config.json" && e.is_regular_file())
      fs::copy_file(e.path(), readback / e.path().filename(), fs::copy_options::overwrite_existing);
  written.scratch.push_back(readback);
  return readback;
}

}  // namespace

const ExportFormat& export_mlx() {
  static const ExportFormat f{
      .name = "mlx",
      .packed = true,
      .column_order_groups = true,
      .write = write_mlx,
      .read_back = read_back_mlx,
      .report_note = [](const JobSpec&, const json& qc) {
        return "Export format mlx: model/ loads with mlx_lm.load (MLX affine quantization); the quantized "
               "numbers above are of those weights, read back. config.json's quantization:" +
               json_block(qc);
      }};
  return f;
}

}  // namespace qjobs::worker

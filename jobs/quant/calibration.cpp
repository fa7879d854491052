#include "jobs/quant/calibration.hpp"


#include <fstream>

#include "common/digest.hpp"
#include "common/error.hpp"
#include "common/job_dir.hpp"
#include "jobs/model/checkpoint.hpp"
#include "jobs/model/safetensors.hpp"

namespace qjobs::quant {
namespace fs = std::filesystem;
using nlohmann::json;

namespace {

std::vector<std::pair<std::string, at::Tensor*>> block_params(model::LlamaModel& m, int64_t layer) {
  const std::string prefix = "model.layers." + std::to_string(layer) + ".";
  std::vector<std::pair<std::string, at::Tensor*>> out;
  for (auto& [name, t] : m.parameters())
    if (name.rfind(prefix, 0) == 0) out.push_back({name, t});
  return out;
}

fs::path block_file(const fs::path& dir, int64_t layer) { return dir / ("block_" + std::to_string(layer) + ".safetensors"); }

}  // namespace

std::string calibration_fingerprint(const model::Checkpoint& ckpt, const json& params, const at::Tensor& ids) {
  Digest d;
  d.update(ckpt.config().dump());
  for (const auto& f : ckpt.files()) d.update(f->path().filename().string() + ":" + std::to_string(fs::file_size(f->path())));
  d.update(params.dump());
  const auto c = ids.contiguous().to(at::kLong);
  d.update(c.data_ptr(), static_cast<size_t>(c.numel()) * sizeof(int64_t));
  return d.hex(16);
}

const std::map<std::string, std::string>& linear_input_source() {
  static const std::map<std::string, std::string> m = {
      {"self_attn.q_proj", "self_attn.q_proj"}, {"self_attn.k_proj", "self_attn.q_proj"},
      {"self_attn.v_proj", "self_attn.q_proj"}, {"self_attn.o_proj", "self_attn.o_proj"},
      {"mlp.gate_proj", "mlp.gate_proj"},       {"mlp.up_proj", "mlp.gate_proj"},
      {"mlp.down_proj", "mlp.down_proj"}};
  return m;
}

const std::vector<std::string>& block_input_names() {
  static const std::vector<std::string> v = {"self_attn.q_proj", "self_attn.o_proj", "mlp.gate_proj", "mlp.down_proj"};
  return v;
}

double relative_output_error(const at::Tensor& x, const at::Tensor& w, const at::Tensor& w_q) {
  const auto ref = at::linear(x, w.to(at::kFloat));
  const auto got = at::linear(x, w_q.to(at::kFloat));
  return (got - ref).norm().item<double>() / std::max(ref.norm().item<double>(), 1e-30);
}

void collect_block(const model::Checkpoint& ckpt, model::LlamaModel& m, int64_t layer,
                   std::map<std::string, at::Tensor>& replaced) {
  for (auto& [name, t] : block_params(m, layer))
    replaced[name] = t->detach().to(at::kCPU).to(model::st_to_aten(ckpt.info(name).dtype)).contiguous();
}

CalibrationEngine::CalibrationEngine(model::LlamaModel& m, const at::Tensor& ids, int64_t batch, fs::path state_dir,
                                     const std::string& fingerprint)
    : model_(m) {
  at::NoGradGuard no_grad;
  const int64_t n = ids.size(0);
  for (int64_t i = 0; i < n; i += batch) inputs_.push_back(m.embed(ids.narrow(0, i, std::min(batch, n - i))));
  if (!state_dir.empty()) {
    dir_ = state_dir / fingerprint;
    fs::create_directories(dir_);
  }
}

int64_t CalibrationEngine::resume(std::vector<LayerError>& errors, std::map<std::string, exporter::IntWeight>& ints) {
  if (dir_.empty() || !fs::exists(dir_ / "inputs.safetensors")) return 0;
  int64_t next = 0;
  while (fs::exists(block_file(dir_, next))) ++next;
  if (next == 0) return 0;
  const auto inputs = model::SafetensorsFile::open(dir_ / "inputs.safetensors");
  if (inputs.metadata().count("next_block") == 0 || std::stoll(inputs.metadata().at("next_block")) != next) return 0;
  for (int64_t l = 0; l < next; ++l) {
    const auto f = model::SafetensorsFile::open(block_file(dir_, l));
    for (auto& [name, t] : block_params(model_, l)) *t = f.tensor(name).to(t->device(), t->scalar_type()).clone();
    const json error_meta = json::parse(f.metadata().at("errors"));
    for (const auto& e : error_meta)
      errors.push_back({e["name"], e["rel_fro_err"], e["max_abs_err"], e.value("rel_out_err", -1.0)});
    const json int_meta = json::parse(f.metadata().at("ints"));
    for (const auto& [name, shape] : int_meta.items()) {
      exporter::IntWeight w;
      w.codes = f.tensor(name + ".codes").clone();
      w.scales = f.tensor(name + ".scales").clone();
      w.zeros = f.tensor(name + ".zeros").clone();
      w.g_idx = f.tensor(name + ".g_idx").clone();
      w.bits = shape["bits"];
      w.group_size = shape["group_size"];
      ints[name] = w;
    }
  }
  inputs_.clear();
  for (std::size_t i = 0;; ++i) {
    const auto* info = inputs.find("batch_" + std::to_string(i));
    if (!info) break;
    inputs_.push_back(inputs.tensor(info->name).to(model_.device(), model_.dtype()).clone());
  }
  return next;
}

std::vector<at::Tensor> CalibrationEngine::forward(int64_t layer, const model::LinearHook* hook) const {
  at::NoGradGuard no_grad;
  std::vector<at::Tensor> out;
  for (const auto& x : inputs_) out.push_back(model_.layer_forward(layer, x, 0, nullptr, hook));
  return out;
}

std::map<std::string, at::Tensor> CalibrationEngine::capture_inputs(int64_t layer,
                                                                     const std::vector<std::string>& names) const {
  std::map<std::string, std::vector<at::Tensor>> parts;
  const std::string prefix = "model.layers." + std::to_string(layer) + ".";
  const model::LinearHook hook = [&](const std::string& name, const at::Tensor& x, const at::Tensor& y) {
    const std::string local = name.substr(prefix.size());
    if (std::find(names.begin(), names.end(), local) != names.end())
      parts[local].push_back(x.reshape({-1, x.size(-1)}).to(at::kFloat));
    return y;
  };
  forward(layer, &hook);
  std::map<std::string, at::Tensor> out;
  for (auto& [name, list] : parts) out[name] = at::cat(list, 0);
  return out;
}

void CalibrationEngine::advance(int64_t layer, std::vector<at::Tensor> next, const std::vector<LayerError>& errs,
                                const std::map<std::string, exporter::IntWeight>& ints) {
  inputs_ = std::move(next);
  if (dir_.empty()) return;
  json ej = json::array();
  for (const auto& e : errs)
    ej.push_back({{"name", e.name}, {"rel_fro_err", e.rel_fro_err}, {"max_abs_err", e.max_abs_err}, {"rel_out_err", e.rel_out_err}});
  std::vector<model::NamedTensor> block;
  for (auto& [name, t] : block_params(model_, layer)) block.push_back({name, t->detach().to(at::kCPU), {}});
  json ij = json::object();
  const std::string prefix = "model.layers." + std::to_string(layer) + ".";
  for (const auto& [name, w] : ints) {
    if (name.rfind(prefix, 0) != 0) continue;
    ij[name] = {{"bits", w.bits}, {"group_size", w.group_size}};
    block.push_back({name + ".codes", w.codes, {}});
    block.push_back({name + ".scales", w.scales, {}});
    block.push_back({name + ".zeros", w.zeros, {}});
    block.push_back({name + ".g_idx", w.g_idx, {}});
  }
  // Inputs first: a block file only counts when the inputs after it exist.
  std::vector<model::NamedTensor> in;
  for (std::size_t i = 0; i < inputs_.size(); ++i) in.push_back({"batch_" + std::to_string(i), inputs_[i].to(at::kCPU), {}});
  model::save_safetensors(dir_ / "inputs.safetensors", in, {{"format", "pt"}, {"next_block", std::to_string(layer + 1)}});
  model::save_safetensors(block_file(dir_, layer), block, {{"format", "pt"}, {"errors", ej.dump()}, {"ints", ij.dump()}});
}

}  // namespace qjobs::quant

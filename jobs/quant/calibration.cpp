#include "jobs/quant/calibration.hpp"

#include <chrono>
#include <fstream>

#include <spdlog/spdlog.h>
#include <ATen/core/grad_mode.h>

#include "common/digest.hpp"
#include "common/error.hpp"
#include "common/job_dir.hpp"
#include "common/strings.hpp"
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

fs::path block_file(const fs::path& dir, int64_t layer) {
  return dir / ("block_" + std::to_string(layer) + ".safetensors");
}

}  // namespace

std::string calibration_fingerprint(const model::Checkpoint& ckpt, const json& params, const at::Tensor& ids,
                                    at::ScalarType compute) {
  Digest d;
  d.update(std::string("block-state-v2 ") + at::toString(compute));
  d.update(ckpt.config().dump());
  for (const auto& f : ckpt.files())
    d.update(f->path().filename().string() + ":" + std::to_string(fs::file_size(f->path())));
  d.update(params.dump());
  if (ids.defined()) {
    const auto c = ids.contiguous().to(at::kCPU, at::kLong);
    d.update(c.data_ptr(), static_cast<size_t>(c.numel()) * sizeof(int64_t));
  }
  return d.hex(16);
}

double relative_output_error(const at::Tensor& x, const at::Tensor& w, const at::Tensor& w_q) {
  const auto ref = at::linear(x, w.to(at::kFloat));
  const auto got = at::linear(x, w_q.to(at::kFloat));
  return (got - ref).norm().item<double>() / std::max(ref.norm().item<double>(), 1e-30);
}

LayerError linear_error(const std::string& name, const at::Tensor& w, const at::Tensor& w_q, const at::Tensor& x,
                        const model::ActQuant& act) {
  double out_err = -1;
  if (x.defined()) {
    const auto y = at::linear(x, w), yq = at::linear(act.apply(x), w_q);
    out_err = (yq - y).norm().item<double>() / std::max(y.norm().item<double>(), 1e-30);
  }
  return {name, (w_q - w).norm().item<double>() / std::max(w.norm().item<double>(), 1e-30),
          (w_q - w).abs().max().item<double>(), out_err};
}

void collect_outside(const model::Checkpoint& ckpt, model::LlamaModel& m, QuantOutput& out) {
  const auto stored = [&](const std::string& name) { return ckpt.tensor(name).scalar_type(); };
  const auto embed_dtype = stored("model.embed_tokens.weight");
  out.replaced["model.embed_tokens.weight"] = m.embed_tokens().to(at::kCPU).to(embed_dtype);
  out.replaced["model.norm.weight"] = m.final_norm().to(at::kCPU).to(stored("model.norm.weight"));
  if (m.config().tie_word_embeddings) return;
  const auto head = m.lm_head().to(at::kCPU);
  if (ckpt.has("lm_head.weight")) {
    out.replaced["lm_head.weight"] = head.to(stored("lm_head.weight"));
  } else {
    out.added["lm_head.weight"] = head.to(embed_dtype);
    out.config_patch["tie_word_embeddings"] = false;
  }
}

void collect_block(const model::Checkpoint& ckpt, model::LlamaModel& m, int64_t layer,
                   std::map<std::string, at::Tensor>& replaced) {
  for (auto& [name, t] : block_params(m, layer))
    replaced[name] = t->detach().to(at::kCPU).to(model::st_to_aten(ckpt.info(name).dtype)).contiguous();
}

namespace {

const char* const kIntParts[] = {"codes", "scales", "zeros", "g_idx"};

// Restores one block file's outputs into `out` as views of the file.
void read_block_file(const model::SafetensorsFile& f, QuantOutput& out) {
  const auto meta = [&](const char* key) {
    const auto it = f.metadata().find(key);
    return it == f.metadata().end() ? json::object() : json::parse(it->second);
  };
  // Named: a range-for over meta(...).items() would outlive its temporary.
  const json errors = meta("errors"), ints = meta("ints"), w8a8 = meta("w8a8"), fp4 = meta("fp4"),
             replaced = meta("replaced");
  for (const auto& e : errors)
    out.layer_errors.push_back({e["name"], e["rel_fro_err"], e["max_abs_err"], e.value("rel_out_err", -1.0)});
  for (const auto& [name, shape] : ints.items()) {
    numeric::IntWeight w;
    if (f.find(name + ".codes") != nullptr) w.codes = f.tensor(name + ".codes");
    w.scales = f.tensor(name + ".scales");
    w.zeros = f.tensor(name + ".zeros");
    w.g_idx = f.tensor(name + ".g_idx");
    w.bits = shape["bits"];
    w.group_size = shape["group_size"];
    out.int_weights[name] = w;
  }
  for (const auto& [name, has_input_scale] : w8a8.items()) {
    numeric::W8A8Weight w{f.tensor(name + ".w8a8_codes"), f.tensor(name + ".w8a8_scale"), at::Tensor()};
    if (has_input_scale.get<bool>()) w.input_scale = f.tensor(name + ".w8a8_input_scale");
    out.w8a8_weights[name] = w;
  }
  for (const auto& [name, m] : fp4.items()) {
    numeric::Fp4Weight w;
    w.kind = m.value("kind", "nvfp4") == "mxfp4" ? numeric::Fp4Kind::mxfp4 : numeric::Fp4Kind::nvfp4;
    w.codes = f.tensor(name + ".fp4_codes");
    w.scale = f.tensor(name + ".fp4_scale");
    w.global_scale = m.value("global_scale", 1.0);
    w.input_global_scale = m.value("input_global_scale", 0.0);
    w.act = m.value("act", false);
    out.fp4_weights[name] = w;
  }
  for (const auto& name : replaced) out.replaced[name] = f.tensor(name);
  if (const auto it = f.metadata().find("experts"); it != f.metadata().end()) {
    const json e = json::parse(it->second);
    out.experts[e.at("block").get<std::string>()] = e.at("experts");
  }
}

}  // namespace

void spill_outputs(QuantOutput& out, const std::string& prefix, const fs::path& file,
                   std::map<std::string, std::string> metadata) {
  std::vector<model::NamedTensor> tensors;
  json replaced = json::array(), ints = json::object(), w8a8 = json::object(), fp4 = json::object();
  for (const auto& [name, t] : out.replaced)
    if (name.starts_with(prefix)) {
      tensors.push_back({name, t, {}});
      replaced.push_back(name);
    }
  for (const auto& [name, w] : out.int_weights) {
    if (!name.starts_with(prefix)) continue;
    // Codes of up to 8 bits are stored as bytes: a quarter of int32.
    if (w.codes.defined()) tensors.push_back({name + ".codes", w.bits <= 8 ? w.codes.to(at::kByte) : w.codes, {}});
    tensors.push_back({name + ".scales", w.scales, {}});
    tensors.push_back({name + ".zeros", w.zeros, {}});
    tensors.push_back({name + ".g_idx", w.g_idx, {}});
    ints[name] = {{"bits", w.bits}, {"group_size", w.group_size}};
  }
  for (const auto& [name, w] : out.w8a8_weights) {
    if (!name.starts_with(prefix)) continue;
    tensors.push_back({name + ".w8a8_codes", w.codes, {}});
    tensors.push_back({name + ".w8a8_scale", w.scale, {}});
    if (w.input_scale.defined()) tensors.push_back({name + ".w8a8_input_scale", w.input_scale, {}});
    w8a8[name] = w.input_scale.defined();
  }
  for (const auto& [name, w] : out.fp4_weights) {
    if (!name.starts_with(prefix)) continue;
    tensors.push_back({name + ".fp4_codes", w.codes, {}});
    tensors.push_back({name + ".fp4_scale", w.scale, {}});
    fp4[name] = {{"kind", w.kind == numeric::Fp4Kind::mxfp4 ? "mxfp4" : "nvfp4"},
                 {"global_scale", w.global_scale},
                 {"input_global_scale", w.input_global_scale},
                 {"act", w.act}};
  }
  metadata["format"] = "pt";
  metadata["replaced"] = replaced.dump();
  metadata["ints"] = ints.dump();
  metadata["w8a8"] = w8a8.dump();
  metadata["fp4"] = fp4.dump();
  if (!metadata.count("errors")) metadata["errors"] = "[]";
  model::save_safetensors(file, tensors, metadata);
  // The in-memory copies go; views of the file take their place.
  const auto under = [&](const auto& entry) { return entry.first.starts_with(prefix); };
  std::erase_if(out.replaced, under);
  std::erase_if(out.int_weights, under);
  std::erase_if(out.w8a8_weights, under);
  std::erase_if(out.fp4_weights, under);
  QuantOutput back;
  read_block_file(model::SafetensorsFile::open(file), back);
  for (auto& [k, v] : back.replaced) out.replaced[k] = v;
  for (auto& [k, v] : back.int_weights) out.int_weights[k] = v;
  for (auto& [k, v] : back.w8a8_weights) out.w8a8_weights[k] = v;
  for (auto& [k, v] : back.fp4_weights) out.fp4_weights[k] = v;
}

CalibrationEngine::CalibrationEngine(model::LlamaModel& m, const at::Tensor& ids, int64_t batch, fs::path state_dir,
                                     const std::string& fingerprint, bool resumable)
    : model_(m), resumable_(resumable) {
  at::NoGradGuard no_grad;
  const int64_t n = ids.defined() ? ids.size(0) : 0;
  for (int64_t i = 0; i < n; i += batch) inputs_.push_back(m.embed(ids.narrow(0, i, std::min(batch, n - i))));
  if (!state_dir.empty()) {
    dir_ = state_dir / (resumable ? fingerprint : std::string("scratch"));
    if (!resumable) fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
}

int64_t CalibrationEngine::resume(QuantOutput& out) {
  if (!resumable_ || dir_.empty() || !fs::exists(dir_ / "inputs.safetensors")) return 0;
  int64_t next = 0;
  while (fs::exists(block_file(dir_, next))) ++next;
  if (next == 0) return 0;
  const auto inputs = model::SafetensorsFile::open(dir_ / "inputs.safetensors");
  if (inputs.metadata().count("next_block") == 0 || std::stoll(inputs.metadata().at("next_block")) != next) return 0;
  for (int64_t l = 0; l < next; ++l) {
    const auto f = model::SafetensorsFile::open(block_file(dir_, l));
    read_block_file(f, out);
    // A resident model gets the block's weights back (a streamed one reads
    // nothing of finished blocks again).
    if (model_.resident(l) && !model_.streamed())
      for (auto& [name, t] : block_params(model_, l))
        if (f.find(name)) *t = f.tensor(name).to(t->device(), t->scalar_type()).clone();
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

std::vector<int64_t> CalibrationEngine::expert_tokens(int64_t layer) const {
  auto& L = model_.layers()[static_cast<std::size_t>(layer)];
  if (!L.sparse) return {};
  std::map<std::string, int64_t> index;
  for (auto& s : L.slots())
    if (s.role == model::LinearRole::expert_gate && s.expert >= 0) index[s.name] = s.expert;
  std::vector<int64_t> counts(L.experts.size(), 0);
  const std::string prefix = "model.layers." + std::to_string(layer) + ".";
  const model::LinearHook hook = [&](const std::string& name, const at::Tensor& x, const at::Tensor& y) {
    const auto it = index.find(name.substr(prefix.size()));
    if (it != index.end()) counts[static_cast<std::size_t>(it->second)] += x.numel() / x.size(-1);
    return y;
  };
  forward(layer, &hook);
  return counts;
}

std::map<std::string, at::Tensor> CalibrationEngine::capture_inputs(int64_t layer,
                                                                    const std::vector<std::string>& names) const {
  auto& L = model_.layers()[static_cast<std::size_t>(layer)];
  std::vector<std::string> want = names;
  if (L.sparse) want.push_back(L.family->names.router);  // the full MLP input, for starved experts
  std::map<std::string, std::vector<at::Tensor>> parts;
  const std::string prefix = "model.layers." + std::to_string(layer) + ".";
  const model::LinearHook hook = [&](const std::string& name, const at::Tensor& x, const at::Tensor& y) {
    const std::string local = name.substr(prefix.size());
    if (std::find(want.begin(), want.end(), local) != want.end())
      parts[local].push_back(x.reshape({-1, x.size(-1)}).to(at::kFloat));
    return y;
  };
  forward(layer, &hook);
  std::map<std::string, at::Tensor> out;
  for (auto& [name, list] : parts) out[name] = at::cat(list, 0);
  if (!L.sparse) return out;
  const auto& all = out.at(L.family->names.router);
  for (auto& s : L.slots()) {
    if (s.expert < 0 || !out.count(s.name) || out.at(s.name).size(0) >= min_expert_tokens()) continue;
    auto& e = L.experts[static_cast<std::size_t>(s.expert)];
    out[s.name] = s.role == model::LinearRole::expert_down
                      ? model_.expert_hidden(e, all.to(e.gate_proj.weight.scalar_type())).to(at::kFloat)
                      : all;
  }
  if (std::find(names.begin(), names.end(), L.family->names.router) == names.end()) out.erase(L.family->names.router);
  return out;
}

void CalibrationEngine::advance(int64_t layer, std::vector<at::Tensor> next, const std::vector<LayerError>& errs,
                                QuantOutput& out) {
  inputs_ = std::move(next);
  if (dir_.empty()) return;
  json ej = json::array();
  for (const auto& e : errs)
    ej.push_back({{"name", e.name},
                  {"rel_fro_err", e.rel_fro_err},
                  {"max_abs_err", e.max_abs_err},
                  {"rel_out_err", e.rel_out_err}});
  // Inputs first: a block file only counts when the inputs after it exist.
  if (resumable_) {
    std::vector<model::NamedTensor> in;
    for (std::size_t i = 0; i < inputs_.size(); ++i) in.push_back({"batch_" + std::to_string(i), inputs_[i], {}});
    model::save_safetensors(dir_ / "inputs.safetensors", in,
                            {{"format", "pt"}, {"next_block", std::to_string(layer + 1)}});
  }
  const std::string prefix = "model.layers." + std::to_string(layer) + ".";
  std::map<std::string, std::string> meta = {{"errors", ej.dump()}};
  if (out.experts.contains(prefix)) meta["experts"] = json{{"block", prefix}, {"experts", out.experts[prefix]}}.dump();
  spill_outputs(out, prefix, block_file(dir_, layer), meta);
}

namespace {

// "model.layers.3." of a decoder tensor's name, or "".
std::string layer_prefix(const std::string& name) {
  const std::string head = "model.layers.";
  if (!name.starts_with(head)) return "";
  const auto dot = name.find('.', head.size());
  return dot == std::string::npos ? "" : name.substr(0, dot + 1);
}

}  // namespace

LayerSpill::LayerSpill(const fs::path& state_dir, QuantOutput& out, bool keep_int_codes)
    : out_(out), keep_int_codes_(keep_int_codes) {
  if (state_dir.empty()) return;
  dir_ = state_dir / "scratch";
  fs::remove_all(dir_);
  fs::create_directories(dir_);
}

void LayerSpill::after(const std::string& name, const std::string& next) {
  // One file per tensor: memory holds one Linear's outputs at a time.
  if (dir_.empty() || layer_prefix(name).empty()) return;
  std::string stem = weight_stem(name);
  if (stem.empty()) stem = name;
  if (!keep_int_codes_) drop_int_codes(out_, stem);
  spill_outputs(out_, stem, dir_ / (stem + ".safetensors"));
}

void drop_int_codes(QuantOutput& out, const std::string& prefix) {
  for (auto& [name, w] : out.int_weights)
    if (name.starts_with(prefix) && out.replaced.count(name + ".weight")) w.codes = at::Tensor();
}

void drop_float_copies(QuantOutput& out, const std::string& prefix) {
  for (auto it = out.replaced.begin(); it != out.replaced.end();) {
    const auto& name = it->first;
    const std::string stem = weight_stem(name);
    const bool has_form =
        !stem.empty() && (out.int_weights.count(stem) || out.w8a8_weights.count(stem) || out.fp4_weights.count(stem));
    it = name.starts_with(prefix) && has_form ? out.replaced.erase(it) : std::next(it);
  }
}

void release_written(QuantOutput& out, const std::string& name) {
  out.replaced.erase(name);
  out.added.erase(name);
  const std::string stem = weight_stem(name);
  if (stem.empty()) return;
  const auto own = [](at::Tensor& t) {
    if (t.defined()) t = t.clone();
  };
  if (auto it = out.int_weights.find(stem); it != out.int_weights.end()) {
    it->second.codes = at::Tensor();
    own(it->second.scales), own(it->second.zeros), own(it->second.g_idx);
  }
  if (auto it = out.w8a8_weights.find(stem); it != out.w8a8_weights.end()) {
    it->second.codes = at::Tensor();
    own(it->second.scale), own(it->second.input_scale);
  }
  if (auto it = out.fp4_weights.find(stem); it != out.fp4_weights.end()) {
    it->second.codes = at::Tensor();
    own(it->second.scale);
  }
}

void run_blocks(const QuantInputs& in, model::LlamaModel& model, const at::Tensor& ids, QuantOutput& out,
                const BlockLoopOptions& o, const std::function<void(BlockStep&)>& step) {
  at::NoGradGuard no_grad;
  const std::string fp =
      in.state_dir.empty() || !o.resumable ? "" : calibration_fingerprint(*in.ckpt, in.params, ids, model.dtype());
  CalibrationEngine engine(model, ids, o.batch, in.state_dir, fp, o.resumable);
  const int64_t L = model.config().layers;
  const int64_t first = engine.resume(out);
  out.resumed_blocks = first;
  if (o.on_resumed)
    for (int64_t l = 0; l < first; ++l) o.on_resumed(l);
  in.progress(first, L, "");
  const auto loop_start = std::chrono::steady_clock::now();
  for (int64_t l = first; l < L; ++l) {
    const auto block_start = std::chrono::steady_clock::now();
    model.onload(l);
    BlockStep s{
        l, "model.layers." + std::to_string(l) + ".", model.layers()[static_cast<std::size_t>(l)], engine, out, {}, {}};
    if (s.layer.sparse) {
      // Tokens per expert, and which experts take the all-tokens fallback.
      const auto counts = engine.expert_tokens(l);
      json fallback = json::array();
      for (std::size_t e = 0; e < counts.size(); ++e)
        if (counts[e] < engine.min_expert_tokens()) fallback.push_back(e);
      out.experts[s.prefix] = {{"tokens", counts}, {"min_tokens", engine.min_expert_tokens()}, {"fallback", fallback}};
      spdlog::info("block {}: tokens per expert {}; {} expert(s) under {} tokens calibrated on all tokens", l,
                   json(counts).dump(), fallback.size(), engine.min_expert_tokens());
    }
    step(s);
    auto next = s.next ? std::move(*s.next) : engine.forward(l);
    collect_block(*in.ckpt, model, l, out.replaced);
    if (!in.keep_float_weights) drop_float_copies(out, s.prefix);
    if (!in.keep_int_codes) drop_int_codes(out, s.prefix);
    engine.advance(l, std::move(next), s.errors, out);
    out.layer_errors.insert(out.layer_errors.end(), s.errors.begin(), s.errors.end());
    model.offload(l);
    // One line per block at info level: a 7-minute AWQ is not silent.
    const auto now = std::chrono::steady_clock::now();
    const double took = std::chrono::duration<double>(now - block_start).count();
    const double per_block =
        std::chrono::duration<double>(now - loop_start).count() / static_cast<double>(l + 1 - first);
    double err = 0;
    for (const auto& e : s.errors) err += e.rel_fro_err;
    spdlog::info("block {}/{} done in {:.1f} s: mean weight relative error {:.4g} over {} Linears; ETA {:.0f} s", l + 1,
                 L, took, s.errors.empty() ? 0.0 : err / static_cast<double>(s.errors.size()), s.errors.size(),
                 per_block * static_cast<double>(L - l - 1));
    in.progress(l + 1, L, "block " + std::to_string(l));
  }
}

}  // namespace qjobs::quant

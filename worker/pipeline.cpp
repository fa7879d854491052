#include "worker/pipeline.hpp"

#include <chrono>
#include <cerrno>
#include <cstdlib>
#include <fstream>
#include <new>
#include <system_error>
#include <thread>

#include <ATen/Context.h>
#include <c10/util/Exception.h>
#include <spdlog/spdlog.h>

#include "common/error.hpp"
#include "common/job_dir.hpp"
#include "common/job_spec.hpp"
#include "common/job_state.hpp"
#include "common/linear_rule.hpp"
#include "common/logging.hpp"
#include "common/algorithm_catalog.hpp"
#include "common/strings.hpp"
#include "jobs/data/dataset.hpp"
#include "jobs/eval/baseline_cache.hpp"
#include "jobs/eval/tasks.hpp"
#include "jobs/export/gguf_llama.hpp"
#include "jobs/export/onnx_llama.hpp"
#include "jobs/export/packed.hpp"
#include "jobs/model/checkpoint.hpp"
#include "jobs/model/device.hpp"
#include "jobs/model/mapped_file.hpp"
#include "jobs/model/llama_model.hpp"
#include "jobs/model/model_source.hpp"
#include "jobs/model/safetensors.hpp"
#include "jobs/quant/layer_plan.hpp"
#include "jobs/quant/registry.hpp"
#include "jobs/tokenizer/tokenizer.hpp"
#include "worker/status_reporter.hpp"

namespace qjobs::worker {
namespace fs = std::filesystem;
using nlohmann::json;

namespace {

// Raised inside a stage to carry the failure type the stage stands for.
struct StageFailure {
  ErrorType type;
  std::string message;
};

// Which failure type an error in `stage` means: a file problem while loading
// is MODEL_LOAD, while reading data it is DATA; bad input is VALIDATION
// everywhere; a bug is INTERNAL.
ErrorType classify(const std::string& stage, ErrorKind kind) {
  // Whatever stops the model from loading (missing, gated, corrupt,
  // unsupported) is MODEL_LOAD.
  if (stage == "load" && kind != ErrorKind::oom && kind != ErrorKind::cancelled && kind != ErrorKind::internal)
    return ErrorType::model_load;
  if (kind == ErrorKind::no_space) return ErrorType::no_space;
  switch (kind) {
    case ErrorKind::invalid_input: return ErrorType::validation;
    case ErrorKind::oom: return ErrorType::oom;
    case ErrorKind::not_found:
    case ErrorKind::io:
    case ErrorKind::data_corruption:
      if (stage == "load") return ErrorType::model_load;
      if (stage == "data" || stage == "baseline" || stage == "evaluate") return ErrorType::data;
      return ErrorType::internal;
    default: return ErrorType::internal;
  }
}

uint64_t dir_size(const fs::path& p) {
  uint64_t total = 0;
  for (const auto& e : fs::recursive_directory_iterator(p))
    if (e.is_regular_file()) total += e.file_size();
  return total;
}

uint64_t checkpoint_size(const model::Checkpoint& ckpt) {
  uint64_t total = 0;
  for (const auto& f : ckpt.files()) total += fs::file_size(f->path());
  return total;
}

// A test hook: QJOBS_TEST_STEP_DELAY_MS slows every progress step so that a
// test can kill or cancel a worker in the middle of its work.
int step_delay_ms() {
  const char* v = std::getenv("QJOBS_TEST_STEP_DELAY_MS");
  return v ? std::atoi(v) : 0;
}

// The output is always safetensors: pytorch_model-00001-of-00002.bin is
// written as model-00001-of-00002.safetensors, as transformers names shards.
std::string safetensors_name(const std::string& input) {
  std::string stem = input;
  if (stem.size() > 4 && stem.compare(stem.size() - 4, 4, ".bin") == 0) {
    stem = stem.substr(0, stem.size() - 4);
    if (stem.rfind("pytorch_model", 0) == 0) stem = "model" + stem.substr(13);
    return stem + ".safetensors";
  }
  return input;
}

// A safetensors shard or its index: what the GGUF and ONNX exports replace.
bool is_weights_file(const fs::path& p) {
  return p.extension() == ".safetensors" || p.filename() == "model.safetensors.index.json";
}

// EXPORT_FORMAT gguf, after package() wrote the job's weights as floats in
// model/: encodes them as llama.cpp's GGUF (W_BIT 4: Q4_0, 8: Q8_0) into
// model/<name>-<TYPE>.gguf, reads that file back into `readback` (a
// float checkpoint of exactly the GGUF's weights, which the evaluation then
// scores), and leaves in model/ the .gguf beside config.json and the
// tokenizer files. Returns what report.json records of it.
json package_gguf(const JobSpec& spec, const JobDir& dir, const fs::path& readback, StatusReporter& rep) {
  const fs::path out = dir.model_dir();
  const bool q8 = spec.params.value("W_BIT", 4) == 8;
  const auto type = q8 ? exporter::gguf::TensorType::q8_0 : exporter::gguf::TensorType::q4_0;
  std::string name = fs::path(spec.model).filename().string();
  if (name.empty()) name = "model";
  const std::string file = name + "-" + std::string(exporter::gguf::type_name(type)) + ".gguf";
  const fs::path staged = dir.root() / ("export-" + file);
  {
    const auto floats = model::Checkpoint::open(out);
    exporter::write_llama_gguf(floats.config(), out, [&](const std::string& n) { return floats.tensor(n).to(at::kFloat); },
                               type, name, staged);
  }
  fs::remove_all(readback);
  fs::create_directories(readback);
  std::vector<model::NamedTensor> tensors;
  for (auto& [n, t] : exporter::read_llama_gguf(staged)) tensors.push_back({n, t, std::nullopt});
  model::save_safetensors(readback / "model.safetensors", tensors);
  tensors.clear();
  for (const auto& e : fs::directory_iterator(out)) {
    if (is_weights_file(e.path())) fs::remove(e.path());
    else fs::copy_file(e.path(), readback / e.path().filename(), fs::copy_options::overwrite_existing);
  }
  fs::rename(staged, out / file);
  rep.event({{"type", "export"}, {"format", "gguf"}, {"file", file}});
  return {{"format", "gguf"}, {"file", file}, {"type", exporter::gguf::type_name(type)},
          {"note", "decoder Linears in " + std::string(exporter::gguf::type_name(type)) +
                       "; embeddings, norms and the head in F32; read by llama.cpp's llama architecture"}};
}

// EXPORT_FORMAT onnx, after package() wrote the job's weights as floats in
// model/: the float graph with the job's weights (model_<shape>.onnx +
// .data), AIMET's encodings of their grid and of the Linears' static input
// quantizers (model_<shape>.encodings), and the QDQ graph that simulates
// them (model_<shape>_qdq.onnx + .data). The float checkpoint moves to
// `scored`, which the evaluation scores: the QDQ graph computes it (the
// ONNX test checks this in onnxruntime). Returns what report.json records.
json package_onnx(const JobSpec& spec, const quant::QuantOutput& q, const JobDir& dir, const fs::path& scored,
                  StatusReporter& rep) {
  const fs::path out = dir.model_dir();
  const fs::path staged = dir.root() / "export-onnx";
  fs::remove_all(staged);
  fs::create_directories(staged);
  exporter::onnx::GraphShape shape;
  exporter::onnx::Quantization qz;
  qz.int_weights = &q.int_weights;
  qz.activations = q.quantization_config.value("activations", json::object());
  qz.lpbq = q.quantization_config.value("lpbq", false);
  json config;
  {
    const auto floats = model::Checkpoint::open(out);
    config = floats.config();
    const int64_t max_pos = config.value("max_position_embeddings", int64_t{2048});
    // The default context is cut to the model's; a written one was checked at submission.
    shape.context_len = std::min<int64_t>(spec.onnx_context_len, max_pos);
    shape.seq_len = std::min<int64_t>(spec.onnx_seq_len, shape.context_len - 1);
    config.erase("qjobs_quantization");
    const exporter::onnx::WeightSource weight = [&](const std::string& n) { return floats.tensor(n).to(at::kFloat); };
    const std::string stem = "model_" + shape.name();
    exporter::onnx::write_llama_onnx(config, weight, shape, nullptr, staged / (stem + ".onnx"));
    write_file_atomic(staged / (stem + ".encodings"), exporter::onnx::aimet_encodings(config, qz).dump(1));
    exporter::onnx::write_llama_onnx(config, weight, shape, &qz, staged / (stem + "_qdq.onnx"));
  }
  fs::remove_all(scored);
  fs::rename(out, scored);
  fs::create_directories(out);
  for (const auto& e : fs::directory_iterator(scored))
    if (!is_weights_file(e.path())) fs::copy_file(e.path(), out / e.path().filename(), fs::copy_options::overwrite_existing);
  // config.json beside the graphs: the architecture, without the simulated-quantization key
  // (the encodings carry it).
  write_file_atomic(out / "config.json", config.dump(2));
  json files = json::array();
  for (const auto& e : fs::directory_iterator(staged)) {
    files.push_back(e.path().filename().string());
    fs::rename(e.path(), out / e.path().filename());
  }
  fs::remove_all(staged);
  std::sort(files.begin(), files.end());
  rep.event({{"type", "export"}, {"format", "onnx"}, {"files", files}});
  return {{"format", "onnx"},
          {"graph", shape.name()},
          {"opset", exporter::onnx::kOpset},
          {"files", files},
          {"note", "the float graph with the job's weights and AIMET encodings (1.0.0) for device compilers; the _qdq graph "
                   "simulates the quantization (DequantizeLinear weights, QuantizeLinear/DequantizeLinear inputs) in any "
                   "ONNX runtime; prefill of " + std::to_string(shape.seq_len) + " tokens over a context of " +
                   std::to_string(shape.context_len) + " with a KV-cache input/output pair"}};
}

// Writes the quantized model; returns the quantization config its
// config.json records.
json package(const model::Checkpoint& ckpt, const quant::QuantOutput& q, const JobDir& dir, const JobSpec& spec,
             StatusReporter& rep) {
  const fs::path out = dir.model_dir();
  fs::remove_all(out);
  fs::create_directories(out);
  const auto format = exporter::packed_format(spec.export_format);
  const bool packed = format.has_value();
  const bool ct = packed && *format == exporter::PackedFormat::compressed_tensors;
  if (packed && q.int_weights.empty() && q.w8a8_weights.empty() && q.fp4_weights.empty())
    throw Error(ErrorKind::invalid_input, "ALGORITHM " + spec.algorithm + " has no quantized form for EXPORT_FORMAT " + spec.export_format);
  if (packed && !ct && (!q.w8a8_weights.empty() || !q.fp4_weights.empty()))
    throw Error(ErrorKind::invalid_input, "ALGORITHM " + spec.algorithm + " is exported as compressed-tensors (or fake_quant), not " +
                                              spec.export_format);
  // Scales stored in the model's dtype (that of its embedding).
  const auto scale_dtype = ckpt.tensor("model.embed_tokens.weight").scalar_type();
  // The simulated input quantizer of each Linear, as the algorithm recorded it.
  const json acts = q.quantization_config.value("activations", json::object());
  const auto act_of = [&](const std::string& name) {
    return acts.contains(name) ? model::ActQuant::from_json(acts[name]) : model::ActQuant{};
  };
  std::map<std::string, exporter::LinearScheme> schemes;
  json kv_scheme = nullptr;
  if (ct) {
    for (const auto& [name, w] : q.int_weights) {
      auto s = exporter::int_scheme(w);
      s.input_activations = exporter::activation_args(act_of(name));
      schemes[name] = s;
    }
    for (const auto& [name, w] : q.w8a8_weights) {
      auto s = exporter::w8a8_scheme(q.w8a8_float, w.scale.numel() == 1 ? "tensor" : "channel");
      s.input_activations = exporter::activation_args(act_of(name));
      schemes[name] = s;
    }
    for (const auto& [name, w] : q.fp4_weights) schemes[name] = exporter::fp4_scheme(w);
    const json kv = q.quantization_config.value("kv_cache", json::object());
    if (!q.k_scales.empty()) {
      kv_scheme = exporter::fp8_kv_cache_args();
    } else if (kv.value("kind", "none") == "int") {
      kv_scheme = exporter::int_kv_cache_args(kv.value("bits", 4), kv.value("group", int64_t{0}));
      rep.warn("kv_cache_scheme records the " + std::to_string(kv.value("bits", 4)) +
               "-bit integer KV cache this job was evaluated with; vLLM serves FP8 KV caches only and refuses the "
               "checkpoint while it is there: remove kv_cache_scheme from config.json to serve it with a 16-bit cache");
    }
    bool asym_w4a8 = false;
    for (const auto& [name, s] : schemes)
      asym_w4a8 = asym_w4a8 || (s.format == "pack-quantized" && !s.input_activations.is_null() && !s.weights.value("symmetric", true));
    if (asym_w4a8)
      rep.warn("the W4A8 Linears keep QoQ's asymmetric 4-bit weights (weight_zero_point); vLLM's W4A8 integer kernels "
               "read symmetric weights only");
  }
  json config = ckpt.config();
  // Routers stay in full precision: named in ignore, since the groups target every Linear.
  auto ignored = q.ignored;
  for (const auto& name : model::full_precision_linears(model::ModelConfig::from_json(ckpt.config()))) ignored.push_back(name);
  json qc = ct ? exporter::compressed_tensors_config(schemes, ignored, kv_scheme)
        : packed ? exporter::packed_quantization_config(q.int_weights, *format, spec.params)
                 : q.quantization_config;
  const auto total = static_cast<int64_t>(ckpt.files().size()) + 1;
  int64_t done = 0;
  json weight_map = json::object();
  uint64_t total_bytes = 0;
  for (const auto& file_ptr : ckpt.files()) {
    const auto& file = *file_ptr;
    const std::string out_name = safetensors_name(file.path().filename().string());
    const bool last = file_ptr == ckpt.files().back();
    // One tensor in memory at a time: each is written as soon as it is made,
    // and the mapped pages it came from (checkpoint, spilled blocks) go back.
    std::size_t max_name = 64;
    for (const auto& info : file.tensors()) max_name = std::max(max_name, info.name.size() + 32);
    for (const auto& [name, t] : q.added) max_name = std::max(max_name, name.size());
    const std::size_t count = file.tensors().size() * 6 + (last ? q.added.size() + 2 * q.k_scales.size() : 0);
    model::SafetensorsWriter writer(out / out_name, model::SafetensorsWriter::room_for(count, max_name));
    const auto put = [&](const std::string& name, const at::Tensor& t, std::optional<model::StDtype> as = std::nullopt) {
      writer.add({name, t, as});
      weight_map[name] = out_name;
    };
    for (const auto& info : file.tensors()) {
      const std::string stem = info.name.size() > 7 ? info.name.substr(0, info.name.size() - 7) : info.name;
      const bool is_weight = info.name.size() > 7 && info.name.compare(info.name.size() - 7, 7, ".weight") == 0;
      // A static input scale (per tensor) beside a packed integer weight.
      const auto input_scale = [&] {
        const auto a = act_of(stem);
        if (a.kind == model::ActQuant::Kind::int_tensor || a.kind == model::ActQuant::Kind::fp8_tensor)
          put(stem + ".input_scale", at::full({1}, a.scale, at::kDouble).to(scale_dtype));
      };
      const auto f4 = q.fp4_weights.find(stem);
      if (ct && is_weight && f4 != q.fp4_weights.end()) {
        for (auto& [suffix, t] : exporter::pack(f4->second))
          put(stem + "." + suffix, t,
              suffix == "weight_scale" && f4->second.kind == numeric::Fp4Kind::nvfp4 ? std::optional<model::StDtype>(model::StDtype::F8_E4M3)
                                                                                   : std::nullopt);
        model::release_mapped(f4->second.codes);
        continue;
      }
      const auto fw = q.w8a8_weights.find(stem);
      if (ct && is_weight && fw != q.w8a8_weights.end()) {
        put(info.name, fw->second.codes, q.w8a8_float ? std::optional<model::StDtype>(model::StDtype::F8_E4M3) : std::nullopt);
        put(stem + ".weight_scale", fw->second.scale.to(scale_dtype));
        if (fw->second.input_scale.defined()) put(stem + ".input_scale", fw->second.input_scale.to(scale_dtype));
        model::release_mapped(fw->second.codes);
        continue;
      }
      const auto iw = q.int_weights.find(stem);
      if (packed && is_weight && iw != q.int_weights.end()) {
        for (auto& [suffix, t] : exporter::pack(iw->second, *format, model::st_to_aten(info.dtype))) put(stem + "." + suffix, t);
        if (ct) input_scale();
        for (const auto* t : {&iw->second.codes, &iw->second.scales, &iw->second.zeros, &iw->second.g_idx}) model::release_mapped(*t);
        continue;
      }
      const auto it = q.replaced.find(info.name);
      const at::Tensor t = it != q.replaced.end() ? it->second : file.tensor(info.name);
      put(info.name, t,
          info.dtype == model::StDtype::F8_E4M3 || info.dtype == model::StDtype::F8_E5M2 ? std::optional<model::StDtype>(info.dtype)
                                                                                       : std::nullopt);
      model::release_mapped(t);
    }
    if (last) {
      for (const auto& [name, t] : q.added) put(name, t);
      for (std::size_t i = 0; ct && i < q.k_scales.size(); ++i) {
        const std::string p = "model.layers." + std::to_string(i) + ".self_attn.";
        // Shape [1], as compressed-tensors writes them (not 0-dim).
        put(p + "k_scale", at::full({1}, q.k_scales[i], at::kDouble).to(scale_dtype));
        put(p + "v_scale", at::full({1}, q.v_scales[i], at::kDouble).to(scale_dtype));
      }
    }
    total_bytes += writer.data_bytes();
    writer.finish();
    rep.progress(++done, total, out_name);
  }
  if (ckpt.sharded())
    write_file_atomic(out / "model.safetensors.index.json",
                      json{{"metadata", {{"total_size", total_bytes}}}, {"weight_map", weight_map}}.dump(2));
  // A fake-quant model is a plain float checkpoint: transformers and vLLM
  // would refuse a quantization_config whose quant_method they do not know,
  // so the recipe is recorded under qjobs' own key instead.
  config.merge_patch(q.config_patch);
  config.erase("quantization_config");
  config[packed ? "quantization_config" : "qjobs_quantization"] = qc;
  write_file_atomic(out / "config.json", config.dump(2));
  if (packed && *format == exporter::PackedFormat::gptq) {
    // AutoGPTQ's and GPTQModel's from_quantized read the recipe from
    // quantize_config.json, not config.json.
    json qcfg = qc;
    qcfg["model_name_or_path"] = nullptr;
    qcfg["model_file_base_name"] = "model";
    write_file_atomic(out / "quantize_config.json", qcfg.dump(2));
    if (!qc.value("sym", true))
      rep.warn("asymmetric GPTQ (ZERO_POINT: true): vLLM's Marlin kernels serve symmetric GPTQ only, so vLLM uses its "
               "slower GPTQ kernels for this checkpoint; set ZERO_POINT: false for Marlin. The GPTQ v1 layout stores "
               "each zero point minus 1 (a zero of 0 is stored as 15 at 4 bits), as AutoGPTQ expects");
  }
  for (const auto& f : ckpt.companion_files())
    fs::copy_file(f, out / f.filename(), fs::copy_options::overwrite_existing);
  rep.progress(++done, total, "config.json");
  return qc;
}

model::LoadOptions load_options(const model::Placement& place, bool stream) {
  model::LoadOptions lo;
  lo.dtype = place.dtype;
  lo.device = place.device;
  lo.devices = place.devices;
  lo.stream_layers = stream;
  return lo;
}

// Whether evaluation keeps the whole model on the device: on the CPU when
// the weights are mapped in the compute dtype already (no copy at all), on
// GPUs when the model in the compute dtype takes at most 80% of their free
// memory. Otherwise it is streamed, block by block.
bool fits_resident(const model::Checkpoint& ckpt, const model::Placement& place) {
  int64_t elements = 0;
  // A packed checkpoint is dequantized on reading: never a free view.
  bool same_dtype = !ckpt.config().contains("quantization_config");
  for (const auto& name : ckpt.tensor_names()) {
    const auto& info = ckpt.info(name);
    int64_t n = 1;
    for (auto d : info.shape) n *= d;
    elements += n;
    same_dtype = same_dtype && model::st_to_aten(info.dtype) == place.dtype;
  }
  if (place.device.is_cpu()) return same_dtype;
  int64_t free_bytes = 0;
  for (const auto& d : place.devices)
    if (auto m = model::device_memory(d)) free_bytes += m->first;
  return static_cast<double>(elements) * static_cast<double>(c10::elementSize(place.dtype)) <= 0.8 * static_cast<double>(free_bytes);
}

// Runs every eval task on `model_dir`'s model; results keyed by task name.
// With `use_cache` (the unquantized model), each task's result is taken from
// the baseline cache when its fingerprint is there, and stored otherwise;
// the model is only loaded when some task must run.
json evaluate(const JobSpec& spec, const fs::path& model_dir, const std::string& which, const JobDir& dir,
              StatusReporter& rep, bool use_cache, const model::Placement& place) {
  const auto ckpt = model::Checkpoint::open(model_dir);
  model::LoadOptions lo = load_options(place, false);  // evaluation
  lo.stream_layers = !fits_resident(ckpt, place);
  if (lo.stream_layers) rep.event({{"type", "streamed"}, {"stage", which}, {"why", "the model does not fit " + place.device.str() + " in " + std::string(c10::toString(place.dtype)) + " at once"}});
  std::optional<model::LlamaModel> m;
  std::optional<tokenizer::Tokenizer> tok;
  const auto& tasks = spec.eval["tasks"];
  json results = json::object();
  for (std::size_t i = 0; i < tasks.size(); ++i) {
    const auto& task = tasks[i];
    const std::string name = task.value("name", task.value("type", "task"));
    const std::string fp = use_cache ? eval::eval_fingerprint(ckpt, task, at::toString(lo.dtype)) : "";
    json r;
    if (auto hit = use_cache ? eval::load_baseline(fp) : std::nullopt) {
      r = std::move(*hit);
      r["cached"] = {{"fingerprint", fp}};
      rep.event({{"type", "baseline_cached"}, {"task", name}, {"fingerprint", fp}});
      rep.progress(1, 1, name + " (cached)");
    } else {
      if (!m) {
        m.emplace(model::LlamaModel::load(ckpt, lo));
        tok.emplace(tokenizer::Tokenizer::load(model_dir));
      }
      r = eval::run_task(*m, *tok, task, [&](int64_t d, int64_t t) { rep.progress(d, t, name); });
      if (use_cache && eval::store_baseline(fp, r)) rep.event({{"type", "baseline_stored"}, {"task", name}, {"fingerprint", fp}});
    }
    if (r.contains("ppl")) rep.metric("ppl_" + which + "_" + name, r["ppl"]);
    if (r.contains("acc")) rep.metric("acc_" + which + "_" + name, r["acc"]);
    write_file_atomic(dir.eval_dir() / (which + "-" + name + ".json"), r.dump(2));
    results[name] = std::move(r);
  }
  return results;
}

// Peak memory per stage: the host's VmHWM (peak RSS, mapped checkpoint
// pages included) as it stands at the end of each stage, and the device's
// peak allocation within each stage.
struct MemoryMeter {
  const model::Placement* place = nullptr;
  std::string current;
  json host = json::object(), device = json::object();

  static double mib(int64_t b) { return static_cast<double>(b) / (1024.0 * 1024.0); }
  json start = json::object();  // RSS as each stage begins
  void begin(const std::string& stage) {
    close();
    current = stage;
    start[stage] = mib(model::host_rss_bytes());
  }
  void close() {
    if (current.empty()) return;
    host[current] = mib(model::host_peak_bytes());
    if (place != nullptr)
      if (const auto d = model::device_peak_bytes(place->devices)) {
        device[current] = mib(*d);
        model::reset_device_peak(place->devices);
      }
    current.clear();
  }
  json to_json(uint64_t checkpoint_bytes) const {
    double host_max = 0, device_max = 0;
    for (const auto& [k, v] : host.items()) host_max = std::max(host_max, v.get<double>());
    for (const auto& [k, v] : device.items()) device_max = std::max(device_max, v.get<double>());
    return {{"placement", place ? json(place->describe()) : json(nullptr)},
            {"checkpoint_mib", mib(static_cast<int64_t>(checkpoint_bytes))},
            {"host_peak_mib", host_max},
            {"host_peak_mib_by_stage", host},
            {"host_rss_mib_at_stage_start", start},
            {"device_peak_mib", device.empty() ? json(nullptr) : json(device_max)},
            {"device_peak_mib_by_stage", device.empty() ? json(nullptr) : device}};
  }
};

std::string num(const char* f, double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, f, v);
  return buf;
}

std::string xml_escape(const std::string& s) {
  std::string out;
  for (char c : s) {
    if (c == '<') out += "&lt;";
    else if (c == '>') out += "&gt;";
    else if (c == '&') out += "&amp;";
    else if (c == '"') out += "&quot;";
    else out += c;
  }
  return out;
}

// A horizontal bar chart of the per-layer relative weight and output errors.
std::string layer_error_svg(const std::vector<quant::LayerError>& errs) {
  double top = 1e-12;
  for (const auto& e : errs) top = std::max({top, e.rel_fro_err, e.rel_out_err});
  const int label_w = 300, bar_w = 420, row_h = 16, head = 40;
  const int height = head + row_h * static_cast<int>(errs.size()) + 30;
  std::string svg = "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" + std::to_string(label_w + bar_w + 80) +
                    "\" height=\"" + std::to_string(height) + "\" font-family=\"sans-serif\" font-size=\"11\">\n";
  svg += "<text x=\"4\" y=\"14\" font-size=\"13\">Relative error per layer: weight (blue), output on calibration inputs (orange)</text>\n";
  svg += "<rect x=\"" + std::to_string(label_w) + "\" y=\"22\" width=\"10\" height=\"8\" fill=\"#4878d0\"/><text x=\"" +
         std::to_string(label_w + 14) + "\" y=\"30\">weight ||W-Q||/||W||</text>\n";
  svg += "<rect x=\"" + std::to_string(label_w + 160) + "\" y=\"22\" width=\"10\" height=\"8\" fill=\"#ee854a\"/><text x=\"" +
         std::to_string(label_w + 174) + "\" y=\"30\">output ||XW-XQ||/||XW||</text>\n";
  for (std::size_t i = 0; i < errs.size(); ++i) {
    const auto& e = errs[i];
    const int y = head + row_h * static_cast<int>(i);
    svg += "<text x=\"" + std::to_string(label_w - 6) + "\" y=\"" + std::to_string(y + 11) + "\" text-anchor=\"end\">" +
           xml_escape(e.name) + "</text>\n";
    const int w1 = static_cast<int>(bar_w * e.rel_fro_err / top);
    svg += "<rect x=\"" + std::to_string(label_w) + "\" y=\"" + std::to_string(y + 2) + "\" width=\"" + std::to_string(std::max(w1, 1)) +
           "\" height=\"6\" fill=\"#4878d0\"><title>" + num("%.5f", e.rel_fro_err) + "</title></rect>\n";
    if (e.rel_out_err >= 0) {
      const int w2 = static_cast<int>(bar_w * e.rel_out_err / top);
      svg += "<rect x=\"" + std::to_string(label_w) + "\" y=\"" + std::to_string(y + 8) + "\" width=\"" + std::to_string(std::max(w2, 1)) +
             "\" height=\"6\" fill=\"#ee854a\"><title>" + num("%.5f", e.rel_out_err) + "</title></rect>\n";
    }
    svg += "<text x=\"" + std::to_string(label_w + std::max(w1, 1) + 4) + "\" y=\"" + std::to_string(y + 9) + "\">" +
           num("%.4f", e.rel_fro_err) + "</text>\n";
  }
  svg += "<text x=\"" + std::to_string(label_w) + "\" y=\"" + std::to_string(height - 8) + "\">scale: full bar = " + num("%.4f", top) +
         "</text>\n</svg>\n";
  return svg;
}

// The rows of the before/after table: label, value before, value after,
// and how to show the change.
struct ReportRow {
  std::string label;
  std::optional<double> before, after;
  bool relative = true;  // change in % (else an absolute difference)
  const char* format = "%.4f";
  bool before_cached = false;  // the original's number came from the baseline cache
};

std::vector<ReportRow> metric_rows(const json& before, const json& after) {
  std::vector<ReportRow> rows;
  const auto value = [](const json& results, const std::string& task, const char* key) -> std::optional<double> {
    if (!results.contains(task) || !results[task].contains(key)) return std::nullopt;
    return results[task][key].get<double>();
  };
  std::vector<std::string> names;
  for (auto& [name, r] : before.items()) names.push_back(name);
  for (auto& [name, r] : after.items())
    if (!before.contains(name)) names.push_back(name);
  for (const auto& name : names) {
    const json& r = before.contains(name) ? before[name] : after[name];
    if (r.contains("ppl")) {
      rows.push_back({name + " perplexity (seqlen " + std::to_string(r.value("seqlen", 0)) + ", " +
                          std::to_string(r.value("windows", 0)) + " windows)",
                      value(before, name, "ppl"), value(after, name, "ppl")});
      // tokens/s is left out of the table: the quantized model runs here with
      // dequantized float weights (simulated quantization), so its speed says
      // nothing about a serving engine's; write_report notes it apart.
    } else if (r.contains("acc")) {
      const std::string what = name + " (" + r.value("format", std::string("mc")) + ", " +
                               std::to_string(r.value("num_fewshot", 0)) + "-shot, n=" + std::to_string(r.value("n", 0)) + ")";
      rows.push_back({what + " acc", value(before, name, "acc"), value(after, name, "acc"), false});
      rows.push_back({what + " acc_norm", value(before, name, "acc_norm"), value(after, name, "acc_norm"), false});
    }
  }
  for (auto& row : rows)
    for (auto& [name, r] : before.items())
      if (row.label.rfind(name + " ", 0) == 0 && r.is_object() && r.contains("cached")) row.before_cached = true;
  return rows;
}

void write_report(const JobSpec& spec, const fs::path& model_dir, uint64_t size_before,
                  std::optional<uint64_t> size_after, const quant::QuantOutput* q, const json& written_qc,
                  const JobDir& dir, StatusReporter& rep, const json& before, const json& after, const json& memory) {
  const bool evaluate_only = q == nullptr;
  json layers = json::array();
  double worst = 0;
  if (q)
    for (const auto& e : q->layer_errors) {
      layers.push_back({{"name", e.name}, {"rel_fro_err", e.rel_fro_err}, {"max_abs_err", e.max_abs_err},
                        {"rel_out_err", e.rel_out_err < 0 ? json(nullptr) : json(e.rel_out_err)}});
      worst = std::max(worst, e.rel_fro_err);
    }
  const double mib = 1024.0 * 1024.0;
  json report = {
      {"spec", to_json(spec)},
      {"model", {{"source", spec.model}, {"resolved", model_dir.string()}}},
      {"algorithm", spec.algorithm},
      {"export_format", evaluate_only ? json(nullptr) : json(spec.export_format)},
      {"recipe", q ? q->quantization_config : json(nullptr)},
      {"quantization_config", written_qc},
      {"size_mib", {{"before", size_before / mib}, {"after", size_after ? json(*size_after / mib) : json(nullptr)}}},
      {"metrics", rep.metrics()},
      {"layers", layers},
      {"stage_seconds", rep.stage_seconds()},
      {"memory", memory},
      {"eval", evaluate_only ? json{{"model", before}} : json{{"original", before}, {"quantized", after}}},
  };
  if (q && !q->experts.empty()) report["experts"] = q->experts;
  write_file_atomic(dir.report_json(), report.dump(2));

  std::string md = "# qjobs report: " + spec.algorithm + " on " + spec.model + "\n\n";
  const auto rows = metric_rows(before, after);
  if (evaluate_only) {
    md += "| | value |\n|---|---|\n";
    md += "| size on disk (MiB) | " + num("%.2f", size_before / mib) + " |\n";
    for (const auto& r : rows)
      md += "| " + r.label + " | " + (r.before ? num(r.format, *r.before) + (r.before_cached ? " (cached)" : "") : "-") + " |\n";
  } else {
    md += "| | original | quantized | change |\n|---|---|---|---|\n";
    md += "| size on disk (MiB) | " + num("%.2f", size_before / mib) + " | " + num("%.2f", *size_after / mib) + " | " +
          num("%+.1f%%", 100.0 * (static_cast<double>(*size_after) / static_cast<double>(size_before) - 1)) + " |\n";
    for (const auto& r : rows) {
      std::string change = "-";
      if (r.before && r.after)
        change = r.relative ? num("%+.2f%%", 100.0 * (*r.after / *r.before - 1)) : num("%+.4f", *r.after - *r.before);
      md += "| " + r.label + " | " + (r.before ? num(r.format, *r.before) + (r.before_cached ? " (cached)" : "") : "-") + " | " +
            (r.after ? num(r.format, *r.after) : "-") + " | " + change + " |\n";
    }
  }
  bool any_cached = false;
  for (auto& [name, r] : before.items()) any_cached = any_cached || r.contains("cached");
  if (any_cached)
    md += std::string("\nNumbers marked (cached) were not computed by this job: they were reused from an earlier job on "
                      "the same model files, task and data (user_data/.cache/baselines).\n");
  // Throughput, apart from the table and said for what it is.
  std::string speed;
  for (const auto* results : {&before, &after})
    for (auto& [name, r] : results->items())
      if (r.is_object() && r.contains("tokens_per_s") && r["tokens_per_s"].is_number() && !r.contains("cached"))
        speed += (speed.empty() ? "" : "; ") + name + (evaluate_only ? "" : results == &before ? " original " : " quantized ") +
                 num("%.0f", r["tokens_per_s"].get<double>());
  if (!speed.empty())
    md += "\nEvaluation throughput in tokens/s (" + speed + ") is qjobs' float reference forward on this machine" +
          (evaluate_only ? std::string("") : std::string(", the quantized model simulated with dequantized weights")) +
          ", measured while other work may share the machine: it is not the speed of a serving engine.\n";
  md += "\nProtocols:\n";
  for (const auto* results : {&before, &after})
    for (auto& [name, r] : results->items())
      if (r.contains("protocol") && (results == &before || !before.contains(name)))
        md += "- " + name + ": " + r["protocol"].get<std::string>() + (r.contains("data") ? " (data: " + r["data"].get<std::string>() + ")" : "") + "\n";
  if (q && spec.export_format == "gguf")
    md += "\nExport format gguf: model/" + written_qc.value("file", std::string()) + " for llama.cpp (" +
          written_qc.value("note", std::string()) + "); the quantized numbers above are of that file's weights, read back.\n";
  else if (spec.export_format == "onnx") {
    std::string files;
    for (const auto& f : written_qc.value("files", json::array())) files += (files.empty() ? "model/" : ", model/") + f.get<std::string>();
    md += "\nExport format onnx (graph " + written_qc.value("graph", std::string()) + ", opset " +
          std::to_string(written_qc.value("opset", 0)) + "): " + files + "; " + written_qc.value("note", std::string()) +
          ". The quantized numbers above are of the model the QDQ graph computes.\n";
  } else if (q)
    md += "\nExport format " + spec.export_format + "; config.json records `" + written_qc.dump() + "`" +
          (spec.export_format == "fake_quant" ? " under qjobs_quantization" : " as quantization_config") + "\n";
  for (auto& [name, b] : before.items()) {
    if (!b.contains("answers")) continue;
    md += "\n## " + name + "\n\n";
    for (std::size_t i = 0; i < b["answers"].size(); ++i) {
      md += "**Prompt:** " + b["answers"][i]["prompt"].get<std::string>() + "\n\n";
      md += std::string(evaluate_only ? "- answer: " : "- original: ") + b["answers"][i]["response"].get<std::string>() + "\n";
      if (after.contains(name)) md += "- quantized: " + after[name]["answers"][i]["response"].get<std::string>() + "\n";
      md += "\n";
    }
  }
  if (q && !q->experts.empty()) {
    // Mixture of experts: how the calibration tokens were routed.
    md += "\n## Calibration tokens per expert\n\n| block | tokens per expert (top-k picks) | calibrated on all tokens |\n|---|---|---|\n";
    for (const auto& [block, e] : q->experts.items()) {
      std::string tokens, fallback;
      for (const auto& t : e["tokens"]) tokens += (tokens.empty() ? "" : " ") + t.dump();
      for (const auto& f : e["fallback"]) fallback += (fallback.empty() ? "expert " : ", ") + f.dump();
      md += "| " + block.substr(0, block.size() - 1) + " | " + tokens + " | " +
            (fallback.empty() ? std::string("none") : fallback + " (fewer than " + e["min_tokens"].dump() + " tokens)") + " |\n";
    }
    md += "\nAn expert routed fewer tokens than the hidden size is calibrated on every token of its block "
          "(llm-compressor's calibrate-all-experts), as its Hessian would be rank-deficient.\n";
  }
  if (q && !q->layer_errors.empty()) {
    write_file_atomic(dir.report_md().parent_path() / "layer_errors.svg", layer_error_svg(q->layer_errors));
    md += "\n## Per-layer error\n\n![relative error per layer](layer_errors.svg)\n\n";
    md += std::to_string(q->layer_errors.size()) + " layers, worst relative weight error " + num("%.4f", worst) + "\n\n";
    md += "| layer | rel. weight error | max abs error | rel. output error |\n|---|---|---|---|\n";
    for (const auto& e : q->layer_errors)
      md += "| " + e.name + " | " + num("%.5f", e.rel_fro_err) + " | " + num("%.5f", e.max_abs_err) + " | " +
            (e.rel_out_err < 0 ? std::string("-") : num("%.5f", e.rel_out_err)) + " |\n";
  }
  if (memory.is_object() && memory.contains("host_peak_mib")) {
    md += "\nComputed on " + memory.value("placement", std::string("?")) + "; peak host memory " +
          num("%.0f", memory["host_peak_mib"].get<double>()) + " MiB (checkpoint " +
          num("%.0f", memory["checkpoint_mib"].get<double>()) + " MiB)";
    if (memory["device_peak_mib"].is_number()) md += ", peak device memory " + num("%.0f", memory["device_peak_mib"].get<double>()) + " MiB";
    md += ".\n";
  }
  md += "\n## Time per stage\n\n| stage | seconds |\n|---|---|\n";
  const json secs = rep.stage_seconds();
  for (const char* st : {"load", "baseline", "quantize", "package", "evaluate", "report"})
    if (secs.contains(st)) md += std::string("| ") + st + " | " + num("%.2f", secs[st].get<double>()) + " |\n";
  write_file_atomic(dir.report_md(), md);
}

}  // namespace

int run_job(const fs::path& spec_path, const fs::path& job_dir) {
  const JobDir dir(job_dir);
  dir.create_layout();
  setup_logging("worker", dir.worker_log());
  const char* attempt_env = std::getenv("QJOBS_ATTEMPT");
  const int attempt = attempt_env ? std::max(1, std::atoi(attempt_env)) : 1;
  spdlog::info("qjobs-worker pid {} attempt {} spec {} job dir {}", ::getpid(), attempt,
               spec_path.string(), job_dir.string());

  std::vector<std::string> stages = {"load", "quantize", "package", "report"};
  std::string yaml_early;
  try {
    yaml_early = read_file(spec_path);
  } catch (const Error&) {
  }
  const auto early = parse_job_spec(yaml_early);
  const bool has_eval = early.spec && early.spec->eval.contains("tasks") && !early.spec->eval["tasks"].empty();
  const bool evaluate_only = early.spec && early.spec->algorithm == "Evaluate";
  if (evaluate_only) stages = {"load", "evaluate", "report"};
  else if (has_eval) stages = {"load", "baseline", "quantize", "package", "evaluate", "report"};
  StatusReporter rep(dir, stages, attempt);
  std::string stage = "validate";
  MemoryMeter memory;
  const auto begin = [&](int64_t total = 0) {
    memory.begin(stage);
    rep.begin_stage(stage, total);
  };
  try {
    std::string yaml;
    try {
      yaml = read_file(spec_path);
    } catch (const Error& e) {
      throw StageFailure{ErrorType::validation, e.what()};
    }
    auto parsed = parse_job_spec(yaml);
    if (!parsed.spec) {
      std::string msg = "invalid spec:";
      for (const auto& i : parsed.issues)
        msg += " " + i.path + " (line " + std::to_string(i.line) + ", column " +
               std::to_string(i.column) + "): " + i.message + ";";
      throw StageFailure{ErrorType::validation, msg};
    }
    const JobSpec spec = *parsed.spec;
    if (attempt == 1)
      for (const auto& w : spec.warnings) rep.warn(w);
    // GPUs handed to a worker that cannot use them: say so and stop, rather
    // than compute on the CPU behind the user's back.
    if (const char* visible = std::getenv("CUDA_VISIBLE_DEVICES"); visible && *visible && !at::hasCUDA())
      throw StageFailure{ErrorType::internal,
                         std::string("this qjobs-worker is built with a libtorch without CUDA, but it was given GPUs "
                                     "(CUDA_VISIBLE_DEVICES=") +
                             excerpt(visible, 64) +
                             "); build the worker against a CUDA libtorch (-DTorch_DIR=...), or run the server "
                             "with --slots instead of --gpus"};
    // The one place that picks the device and the compute dtype.
    model::Placement place;
    try {
      place = model::choose_placement(spec.dtype, std::getenv("CUDA_VISIBLE_DEVICES"));
    } catch (const Error& e) {
      throw StageFailure{ErrorType::validation, e.what()};
    }
    spdlog::info("computing on {}", place.describe());
    if (attempt == 1) rep.event({{"type", "placement"}, {"device", place.device.str()}, {"devices", place.devices.size()},
                                 {"dtype", c10::toString(place.dtype)}});
    memory.place = &place;
    auto algorithm = spec.algorithm == "Evaluate" ? nullptr : quant::make_algorithm(spec.algorithm);
    if (!algorithm && spec.algorithm != "Evaluate")
      throw StageFailure{ErrorType::validation,
                         "algorithm '" + spec.algorithm + "' has no implementation in this worker"};
    const int delay = step_delay_ms();

    stage = "load";
    begin(1);
    const fs::path model_dir = model::resolve_model_dir(spec.model, [&](uint64_t done, uint64_t total) {
      rep.progress(static_cast<int64_t>(done >> 20), static_cast<int64_t>(total >> 20), "download MiB");
    });
    const auto ckpt = model::Checkpoint::open(model_dir);
    // The submission checked the export against config.json when the model
    // was on the server's machine; a model downloaded just now is checked here.
    for (const auto& f : check_export_shapes(spec.algorithm, spec.export_format, spec.params, ckpt.config()))
      if (f.error) throw StageFailure{ErrorType::validation, "EXPORT_FORMAT " + spec.export_format + ": " + f.message};
    const uint64_t size_before = checkpoint_size(ckpt);
    rep.metric("model_size_mib", size_before / (1024.0 * 1024.0));
    if (has_eval) tokenizer::Tokenizer::load(model_dir);  // fail now, not after quantizing
    rep.progress(1, 1);

    json before = json::object(), after = json::object();
    if (spec.algorithm == "Evaluate") {
      // Any checkpoint the project reads: full precision or packed.
      stage = "evaluate";
      begin();
      before = evaluate(spec, model_dir, "model", dir, rep, !ckpt.config().contains("quantization_config"), place);
      stage = "report";
      begin(1);
      memory.close();
      write_report(spec, model_dir, size_before, std::nullopt, nullptr, nullptr, dir, rep, before, after, memory.to_json(size_before));
      rep.progress(1, 1);
      rep.succeed();
      return worker_exit::ok;
    }
    if (has_eval) {
      stage = "baseline";
      begin();
      before = evaluate(spec, model_dir, "original", dir, rep, true, place);
    }

    stage = "quantize";
    begin();
    quant::QuantInputs qin;
    qin.ckpt = &ckpt;
    qin.params = spec.params;
    // Calibration always streams: one block on the device at a time.
    qin.compute = load_options(place, true);
    qin.state_dir = job_dir / "calib_state";
    qin.keep_float_weights = !exporter::packed_format(spec.export_format).has_value();
    qin.packed_export = !qin.keep_float_weights;
    if (spec.export_format == "compressed-tensors" || spec.export_format == "onnx") {
      // compressed-tensors (and the ONNX graph's groups) hold no ragged last group: such Linears get their
      // own per-channel scheme (the submission warned about them).
      std::map<std::string, int64_t> widths;
      for (const auto& name : model::quantized_linear_weights(model::ModelConfig::from_json(ckpt.config())))
        if (ckpt.has(name)) widths[name.substr(0, name.size() - 7)] = ckpt.info(name).shape.back();
      const auto ragged = quant::ragged_linears(widths, qin.params);
      if (!ragged.empty()) {
        qin.params["PER_CHANNEL_LINEARS"] = ragged;
        spdlog::info("{} Linears quantized per output channel: their width is not a multiple of the group size (first: {})",
                     ragged.size(), ragged.front());
      }
    }
    qin.progress = [&](int64_t d, int64_t t, const std::string& what) {
      if (delay > 0 && d > 0) std::this_thread::sleep_for(std::chrono::milliseconds(delay));
      rep.progress(d, t, what);
    };
    qin.calibration = [&]() -> at::Tensor {
      const AlgorithmInfo* info = find_algorithm(spec.algorithm);
      const json& c = spec.calibration;
      data::DatasetSpec ds;
      ds.path = c.value("data_path", spec.data_path);
      ds.name = c.value("dataset", spec.dataset_name);
      ds.subname = c.value("subset", spec.dataset_subname);
      ds.split = c.value("split", spec.split.empty() ? std::string("train") : spec.split);
      ds.format_string = spec.format_string;
      ds.text_columns = spec.text_columns;
      if (c.contains("text_column")) {
        ds.text_columns.clear();
        for (const auto& col : split(c["text_column"].get<std::string>(), ','))
          if (auto t = trim(col); !t.empty()) ds.text_columns.push_back(t);
      }
      const int64_t n = c.value("n_samples", info ? info->calib_samples : 128);
      const int64_t seqlen = c.value("seqlen", info ? info->calib_seqlen : 512);
      try {
        if (ds.path.empty() && ds.name.empty())
          throw Error(ErrorKind::not_found, spec.algorithm + " needs calibration data: set calibration.data_path, "
                                            "DATA_PATH or DATASET_NAME");
        const auto ids = data::calibration_windows(tokenizer::Tokenizer::load(model_dir), data::load_rows(ds), n, seqlen,
                                                   c.value("seed", uint64_t{0}));
        rep.event({{"type", "calibration"}, {"samples", n}, {"seqlen", seqlen},
                   {"data", ds.path.empty() ? ds.name + ":" + ds.split : ds.path}});
        return ids;
      } catch (const Error& e) {
        throw StageFailure{ErrorType::data, std::string("calibration data: ") + e.what()};
      }
    };
    const auto q = algorithm->run(qin);
    if (q.resumed_blocks > 0) rep.event({{"type", "resumed"}, {"blocks", q.resumed_blocks}});
    double mean_err = 0;
    for (const auto& e : q.layer_errors) mean_err += e.rel_fro_err;
    if (!q.layer_errors.empty()) rep.metric("weight_rel_err_mean", mean_err / q.layer_errors.size());

    stage = "package";
    begin();
    json written_qc = package(ckpt, q, dir, spec, rep);
    // What the evaluation scores: the packaged model, or for GGUF the
    // weights as read back from the .gguf file.
    fs::path scored = dir.model_dir();
    if (spec.export_format == "gguf") {
      scored = job_dir / "gguf_readback";
      written_qc = package_gguf(spec, dir, scored, rep);
    } else if (spec.export_format == "onnx") {
      scored = job_dir / "onnx_source";
      written_qc = package_onnx(spec, q, dir, scored, rep);
    }
    const uint64_t size_after = dir_size(dir.model_dir());
    rep.metric("packaged_size_mib", size_after / (1024.0 * 1024.0));

    if (has_eval) {
      stage = "evaluate";
      begin();
      after = evaluate(spec, scored, "quantized", dir, rep, false, place);
    }

    std::error_code ec;
    fs::remove_all(job_dir / "calib_state", ec);  // only needed to resume this run
    if (scored != dir.model_dir()) fs::remove_all(scored, ec);

    stage = "report";
    begin(1);
    memory.close();
    write_report(spec, model_dir, size_before, size_after, &q, written_qc, dir, rep, before, after, memory.to_json(size_before));
    rep.progress(1, 1);
    rep.succeed();
    spdlog::info("job done: {}", dir.model_dir().string());
    return worker_exit::ok;
  } catch (const StageFailure& f) {
    spdlog::error("{}: {}", stage, f.message);
    rep.fail(f.type, f.message);
    return exit_code_for(f.type);
  } catch (const Error& e) {
    if (e.kind() == ErrorKind::cancelled) {
      spdlog::warn("{}: cancelled", stage);
      rep.event({{"type", "cancelled"}, {"stage", stage}});
      return worker_exit::cancelled;
    }
    const auto type = classify(stage, e.kind());
    spdlog::error("{}: {}", stage, e.what());
    rep.fail(type, stage + ": " + e.what());
    return exit_code_for(type);
  } catch (const std::bad_alloc&) {
    spdlog::error("{}: out of memory", stage);
    rep.fail(ErrorType::oom, stage + ": out of memory");
    return worker_exit::oom;
  } catch (const std::system_error& e) {
    // std::filesystem and iostreams report errno through the error code.
    const bool full = e.code() == std::errc::no_space_on_device || e.code().value() == EDQUOT;
    const auto type = full ? ErrorType::no_space : classify(stage, ErrorKind::io);
    spdlog::error("{}: {}", stage, e.what());
    rep.fail(type, stage + ": " + e.what());
    return exit_code_for(type);
  } catch (const c10::Error& e) {
    const std::string msg = e.what_without_backtrace();
    const bool oom = msg.find("out of memory") != std::string::npos;
    spdlog::error("{}: {}", stage, msg);
    rep.fail(oom ? ErrorType::oom : ErrorType::internal, stage + ": " + msg);
    return oom ? worker_exit::oom : worker_exit::internal;
  } catch (const std::exception& e) {
    spdlog::error("{}: {}", stage, e.what());
    rep.fail(ErrorType::internal, stage + ": " + e.what());
    return worker_exit::internal;
  }
}

}  // namespace qjobs::worker

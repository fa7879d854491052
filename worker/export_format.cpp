#include "worker/export_format.hpp"

#include <spdlog/spdlog.h>

#include "common/error.hpp"
#include "common/job_dir.hpp"
#include "common/strings.hpp"
#include "jobs/model/mapped_file.hpp"

namespace qjobs::worker {
namespace fs = std::filesystem;
using nlohmann::json;

namespace {

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

}  // namespace

const std::vector<const ExportFormat*>& export_formats() {
#define QJOBS_EXPORT_FORMAT_ROW(name) &export_##name(),
  static const std::vector<const ExportFormat*> all = {QJOBS_EXPORT_FORMATS(QJOBS_EXPORT_FORMAT_ROW)};
#undef QJOBS_EXPORT_FORMAT_ROW
  return all;
}

const ExportFormat& export_format(std::string_view name) {
  std::string known;
  for (const auto* f : export_formats()) {
    if (f->name == name) return *f;
    known += (known.empty() ? "" : ", ") + std::string(f->name);
  }
  throw Error(ErrorKind::invalid_input,
              "EXPORT_FORMAT " + std::string(name) + " is not written by this worker (" + known + ")");
}

void write_safetensors_model(const ExportInputs& in, const SafetensorsLayout& layout, const json& qc, bool packed) {
  const auto& ckpt = in.ckpt;
  const auto& q = in.q;
  const fs::path out = in.dir.model_dir();
  fs::remove_all(out);
  fs::create_directories(out);
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
    const std::size_t count = file.tensors().size() * layout.room_per_tensor +
                              (last ? q.added.size() + (layout.finish_count ? layout.finish_count() : 0) : 0);
    model::SafetensorsWriter writer(out / out_name, model::SafetensorsWriter::room_for(count, max_name));
    const PutTensor put = [&](const std::string& name, const at::Tensor& t, std::optional<model::StDtype> as) {
      writer.add({name, t, as});
      weight_map[name] = out_name;
    };
    const auto done_with = [&](const std::string& name) {
      if (layout.last_use && in.written) in.written(name);
    };
    for (const auto& info : file.tensors()) {
      std::string stem = weight_stem(info.name);
      const bool is_weight = !stem.empty();
      if (!is_weight) stem = info.name;
      if (!(layout.encode && layout.encode(stem, is_weight, info, put))) {
        const auto it = q.replaced.find(info.name);
        const at::Tensor t = it != q.replaced.end() ? it->second : file.tensor(info.name);
        put(info.name, t,
            info.dtype == model::StDtype::F8_E4M3 || info.dtype == model::StDtype::F8_E5M2
                ? std::optional<model::StDtype>(info.dtype)
                : std::nullopt);
        model::release_mapped(t);
      }
      done_with(info.name);
    }
    if (last) {
      std::vector<std::string> added;
      for (const auto& [name, t] : q.added) {
        put(name, t, std::nullopt);
        added.push_back(name);
      }
      for (const auto& name : added) done_with(name);
      if (layout.finish) layout.finish(put);
    }
    total_bytes += writer.data_bytes();
    writer.finish();
    in.rep.progress(++done, total, out_name);
  }
  if (ckpt.sharded())
    write_file_atomic(out / "model.safetensors.index.json",
                      json{{"metadata", {{"total_size", total_bytes}}}, {"weight_map", weight_map}}.dump(2));
  // A fake-quant model is a plain float checkpoint: transformers and vLLM
  // would refuse a quantization_config whose quant_method they do not know,
  // so the recipe is recorded under qjobs' own key instead.
  json config = ckpt.config();
  config.merge_patch(q.config_patch);
  // A recipe the source checkpoint carried is not this model's.
  config.erase("quantization_config");
  config.erase("qjobs_quantization");
  config.merge_patch(layout.config_extra);
  config[packed ? "quantization_config" : "qjobs_quantization"] = qc;
  write_file_atomic(out / "config.json", config.dump(2));
  for (const auto& f : ckpt.companion_files())
    fs::copy_file(f, out / f.filename(), fs::copy_options::overwrite_existing);
  in.rep.progress(++done, total, "config.json");
}

// The integer Linears of q packed in `format`; everything else as floats.
SafetensorsLayout int_layout(const ExportInputs& in, exporter::PackedFormat format) {
  SafetensorsLayout l;
  l.last_use = true;
  l.room_per_tensor = 6;
  l.encode = [&in, format](const std::string& stem, bool is_weight, const model::StTensorInfo& info,
                           const PutTensor& put) {
    const auto iw = in.q.int_weights.find(stem);
    if (!is_weight || iw == in.q.int_weights.end()) return false;
    for (auto& [suffix, t] : exporter::pack(iw->second, format, model::st_to_aten(info.dtype)))
      put(stem + "." + suffix, t, std::nullopt);
    for (const auto* t : {&iw->second.codes, &iw->second.scales, &iw->second.zeros, &iw->second.g_idx})
      model::release_mapped(*t);
    return true;
  };
  return l;
}

fs::path read_written_model(const ExportInputs& in, ExportResult&) { return in.dir.model_dir(); }

// The weight settings every quantized Linear shares in a format that holds
// one (awq, gptq, GGUF: the submission refused overrides for them).
LinearScheme uniform_scheme(const LinearPlan& plan) {
  for (const auto& [name, s] : plan.linears())
    if (!s.skip) return s;
  throw Error(ErrorKind::invalid_input, "no quantized Linears to export");
}

ExportResult write_int_format(const ExportInputs& in, exporter::PackedFormat format) {
  require_int_weights(in);
  const auto qc = exporter::packed_quantization_config(in.q.int_weights, format, in.q.quantization_config,
                                                       !uniform_scheme(in.plan).zero_point);
  write_safetensors_model(in, int_layout(in, format), qc, true);
  return ExportResult{qc, {}};
}

std::string json_block(const nlohmann::json& j) { return "\n\n```json\n" + j.dump(2) + "\n```"; }

std::string packed_report_note(const JobSpec& spec, const nlohmann::json& qc) {
  return "Export format " + spec.export_format + "; config.json's quantization_config:" + json_block(qc);
}

void require_quantized_form(const ExportInputs& in) {
  const auto& q = in.q;
  if (q.int_weights.empty() && q.w8a8_weights.empty() && q.fp4_weights.empty())
    throw Error(ErrorKind::invalid_input,
                "ALGORITHM " + in.spec.algorithm + " has no quantized form for EXPORT_FORMAT " + in.spec.export_format);
}

void require_int_weights(const ExportInputs& in) {
  require_quantized_form(in);
  const auto& q = in.q;
  if (!q.w8a8_weights.empty() || !q.fp4_weights.empty())
    throw Error(ErrorKind::invalid_input, "ALGORITHM " + in.spec.algorithm +
                                              " is exported as compressed-tensors (or fake_quant), not " +
                                              in.spec.export_format);
}

bool is_weights_file(const fs::path& p) {
  return p.extension() == ".safetensors" || p.filename() == "model.safetensors.index.json";
}

void move_weights_out(const JobDir& dir, const fs::path& to) {
  const fs::path out = dir.model_dir();
  fs::remove_all(to);
  fs::rename(out, to);
  fs::create_directories(out);
  for (const auto& e : fs::directory_iterator(to))
    if (!is_weights_file(e.path()))
      fs::copy_file(e.path(), out / e.path().filename(), fs::copy_options::overwrite_existing);
}

void check_llama_layout(const JobSpec& spec, const model::ModelConfig& config) {
  if (const auto problem = model::export_layout_problem(config, spec.export_format))
    throw Error(ErrorKind::invalid_input, "EXPORT_FORMAT " + spec.export_format + ": " + *problem);
}

}  // namespace qjobs::worker

// EXPORT_FORMAT gguf: llama.cpp's GGUF of the job's weights (W_BIT 4: Q4_0,
// 8: Q8_0; embeddings, norms and the head in F32), beside config.json and the
// tokenizer files in model/. Read back by decoding that file, so that the
// evaluation scores exactly the weights llama.cpp will load.
#include "worker/export_format.hpp"

#include "common/job_dir.hpp"
#include "jobs/export/gguf.hpp"
#include "jobs/export/gguf_llama.hpp"

namespace qjobs::worker {
namespace fs = std::filesystem;
using nlohmann::json;

const ExportFormat& export_gguf() {
  static const ExportFormat f{
      .name = "gguf",
      .float_only = true,
      .check = check_llama_layout,
      .write =
          [](const ExportInputs& in) {
            // The job's weights as floats first (what the GGUF encoder reads).
            write_safetensors_model(in, {}, in.q.quantization_config, false);
            const fs::path out = in.dir.model_dir();
            const bool q8 = uniform_scheme(in.plan).bits == 8;
            const auto type = q8 ? exporter::gguf::TensorType::q8_0 : exporter::gguf::TensorType::q4_0;
            std::string name = fs::path(in.spec.model).filename().string();
            if (name.empty()) name = "model";
            const std::string file = name + "-" + std::string(exporter::gguf::type_name(type)) + ".gguf";
            const fs::path staged = in.dir.root() / ("export-" + file);
            {
              const auto floats = model::Checkpoint::open(out);
              exporter::write_llama_gguf(
                  floats.config(), out, [&](const std::string& n) { return floats.tensor(n).to(at::kFloat); }, type,
                  name, staged);
            }
            for (const auto& e : fs::directory_iterator(out))
              if (is_weights_file(e.path())) fs::remove(e.path());
            fs::rename(staged, out / file);
            in.rep.event({{"type", "export"}, {"format", "gguf"}, {"file", file}});
            return ExportResult{
                {{"format", "gguf"},
                 {"file", file},
                 {"type", exporter::gguf::type_name(type)},
                 {"note", "decoder Linears in " + std::string(exporter::gguf::type_name(type)) +
                              "; embeddings, norms and the head in F32; read by llama.cpp's llama architecture"}},
                {}};
          },
      .read_back =
          [](const ExportInputs& in, ExportResult& written) {
            const fs::path readback = in.dir.root() / "gguf_readback";
            fs::remove_all(readback);
            fs::create_directories(readback);
            const fs::path out = in.dir.model_dir();
            const fs::path file = out / written.quantization_config.at("file").get<std::string>();
            std::vector<model::NamedTensor> tensors;
            for (auto& [n, t] : exporter::read_llama_gguf(file)) tensors.push_back({n, t, std::nullopt});
            model::save_safetensors(readback / "model.safetensors", tensors);
            tensors.clear();
            for (const auto& e : fs::directory_iterator(out))
              if (e.path() != file)
                fs::copy_file(e.path(), readback / e.path().filename(), fs::copy_options::overwrite_existing);
            written.scratch.push_back(readback);
            return readback;
          },
      .report_note =
          [](const JobSpec&, const json& qc) {
            return "Export format gguf: model/" + qc.value("file", std::string()) + " for llama.cpp (" +
                   qc.value("note", std::string()) +
                   "); the quantized numbers above are of that file's weights, read back.";
          }};
  return f;
}

}  // namespace qjobs::worker

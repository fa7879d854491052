// EXPORT_FORMAT onnx: the float graph with the job's weights
// (model_<shape>.onnx + .data), AIMET's encodings of their grid and of the
// Linears' static input quantizers (model_<shape>.encodings), and the QDQ
// graph that simulates them (model_<shape>_qdq.onnx + .data). Read back as
// the float checkpoint the graphs were built from, kept beside the job: the
// QDQ graph computes it (the ONNX test checks this in onnxruntime).
#include "worker/export_format.hpp"

#include <algorithm>

#include "common/job_dir.hpp"
#include "jobs/export/onnx_llama.hpp"

namespace qjobs::worker {
namespace fs = std::filesystem;
using nlohmann::json;

namespace {

fs::path float_source(const JobDir& dir) { return dir.root() / "onnx_source"; }

std::string stem_of(const exporter::onnx::GraphShape& shape) { return "model_" + shape.name(); }

}  // namespace

const ExportFormat& export_onnx() {
  static const ExportFormat f{
      .name = "onnx",
      .check = check_llama_layout,
      .write =
          [](const ExportInputs& in) {
            write_safetensors_model(in, {}, in.q.quantization_config, false);
            const fs::path out = in.dir.model_dir();
            const fs::path staged = in.dir.root() / "export-onnx";
            fs::remove_all(staged);
            fs::create_directories(staged);
            exporter::onnx::GraphShape shape;
            exporter::onnx::Quantization qz;
            qz.int_weights = &in.q.int_weights;
            qz.activations = in.q.quantization_config.value("activations", json::object());
            qz.lpbq = in.q.quantization_config.value("lpbq", false);
            json config;
            {
              const auto floats = model::Checkpoint::open(out);
              config = floats.config();
              const int64_t max_pos = config.value("max_position_embeddings", int64_t{2048});
              // The default context is cut to the model's; a written one was checked at submission.
              shape.context_len = std::min<int64_t>(in.spec.onnx_context_len, max_pos);
              shape.seq_len = std::min<int64_t>(in.spec.onnx_seq_len, shape.context_len - 1);
              config.erase("qjobs_quantization");
              const exporter::onnx::WeightSource weight = [&](const std::string& n) {
                return floats.tensor(n).to(at::kFloat);
              };
              const std::string stem = stem_of(shape);
              exporter::onnx::write_llama_onnx(config, weight, shape, nullptr, staged / (stem + ".onnx"));
              write_file_atomic(staged / (stem + ".encodings"), exporter::onnx::aimet_encodings(config, qz).dump(1));
              exporter::onnx::write_llama_onnx(config, weight, shape, &qz, staged / (stem + "_qdq.onnx"));
            }
            move_weights_out(in.dir, float_source(in.dir));
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
            // What ONNX Runtime loads: the QDQ graph and its external data.
            json runtime = json::array();
            for (const auto& f : files)
              if (f.get<std::string>().starts_with(stem_of(shape) + "_qdq.")) runtime.push_back(f);
            in.rep.event({{"type", "export"}, {"format", "onnx"}, {"files", files}});
            return ExportResult{{{"format", "onnx"},
                                 {"graph", shape.name()},
                                 {"opset", exporter::onnx::kOpset},
                                 {"files", files},
                                 {"runtime_files", runtime},
                                 {"note",
                                  "the float graph with the job's weights and AIMET encodings (1.0.0) for device "
                                  "compilers; the _qdq graph "
                                  "simulates the quantization (DequantizeLinear weights, "
                                  "QuantizeLinear/DequantizeLinear inputs) in any "
                                  "ONNX runtime; prefill of " +
                                      std::to_string(shape.seq_len) + " tokens over a context of " +
                                      std::to_string(shape.context_len) + " with a KV-cache input/output pair"}},
                                {float_source(in.dir)}};
          },
      .read_back = [](const ExportInputs& in, ExportResult&) { return float_source(in.dir); },
      .report_note =
          [](const JobSpec&, const json& qc) {
            std::string files;
            for (const auto& f : qc.value("files", json::array()))
              files += (files.empty() ? "model/" : ", model/") + f.get<std::string>();
            std::string runtime;
            for (const auto& f : qc.value("runtime_files", json::array()))
              runtime += (runtime.empty() ? "" : " and ") + f.get<std::string>();
            return "Export format onnx (graph " + qc.value("graph", std::string()) + ", opset " +
                   std::to_string(qc.value("opset", 0)) + "): " + files + "; " + qc.value("note", std::string()) +
                   ". The quantized numbers above are of the model the QDQ graph computes; its size counts " + runtime +
                   ", what ONNX Runtime loads (the float graph and encodings beside it are for device "
                   "compilers).";
          }};
  return f;
}

}  // namespace qjobs::worker

// The ONNX export of a worker built without libonnx-dev (jobs/CMakeLists.txt):
// every entry point fails, naming the package.
#include "common/error.hpp"
#include "jobs/export/onnx_llama.hpp"

namespace qjobs::exporter::onnx {

namespace {
[[noreturn]] void unavailable() {
  throw Error(ErrorKind::invalid_input,
              "this qjobs-worker was built without the ONNX library (Debian's libonnx-dev): "
              "EXPORT_FORMAT onnx is not available; install it and rebuild");
}
}  // namespace

std::string GraphShape::name() const { return "ar" + std::to_string(seq_len) + "_cl" + std::to_string(context_len); }

void write_llama_onnx(const nlohmann::json&, const WeightSource&, const GraphShape&, const Quantization*,
                      const std::filesystem::path&) {
  unavailable();
}

nlohmann::json aimet_encodings(const nlohmann::json&, const Quantization&) { unavailable(); }

}  // namespace qjobs::exporter::onnx

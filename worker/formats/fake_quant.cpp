// EXPORT_FORMAT fake_quant: a float checkpoint of the dequantized weights,
// the recipe under config.json's qjobs_quantization (transformers and vLLM
// load it as the unquantized architecture).
#include "worker/export_format.hpp"

namespace qjobs::worker {

const ExportFormat& export_fake_quant() {
  static const ExportFormat f{.name = "fake_quant",
                              .float_only = true,
                              .write =
                                  [](const ExportInputs& in) {
                                    SafetensorsLayout layout;
                                    layout.last_use = true;
                                    write_safetensors_model(in, layout, in.q.quantization_config, false);
                                    return ExportResult{in.q.quantization_config, {}};
                                  },
                              .read_back = read_written_model,
                              .report_note =
                                  [](const JobSpec&, const nlohmann::json& qc) {
                                    return "Export format fake_quant; config.json's qjobs_quantization:" +
                                           json_block(qc);
                                  }};
  return f;
}

}  // namespace qjobs::worker

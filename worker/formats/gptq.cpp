// EXPORT_FORMAT gptq: AutoGPTQ's v1 layout (jobs/export/packed.hpp), with
// quantize_config.json, which AutoGPTQ's and GPTQModel's from_quantized read.
#include "worker/export_format.hpp"

#include "common/job_dir.hpp"
#include "jobs/export/packed.hpp"

namespace qjobs::worker {

const ExportFormat& export_gptq() {
  static const ExportFormat f{
      .name = "gptq",
      .packed = true,
      .write =
          [](const ExportInputs& in) {
            auto written = write_int_format(in, exporter::PackedFormat::gptq);
            const auto& qc = written.quantization_config;
            nlohmann::json qcfg = qc;
            qcfg["model_name_or_path"] = nullptr;
            qcfg["model_file_base_name"] = "model";
            write_file_atomic(in.dir.model_dir() / "quantize_config.json", qcfg.dump(2));
            if (!qc.value("sym", true))
              in.rep.warn(
                  "asymmetric GPTQ (ZERO_POINT: true): vLLM's Marlin kernels serve symmetric GPTQ only, so vLLM uses "
                  "its "
                  "slower GPTQ kernels for this checkpoint; set ZERO_POINT: false for Marlin. The GPTQ v1 layout "
                  "stores "
                  "each zero point minus 1 (a zero of 0 is stored as 15 at 4 bits), as AutoGPTQ expects");
            return written;
          },
      .read_back = read_written_model,
      .report_note = packed_report_note};
  return f;
}

}  // namespace qjobs::worker

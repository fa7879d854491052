// EXPORT_FORMAT awq: AutoAWQ's GEMM layout (jobs/export/packed.hpp), what
// vLLM's and transformers' AWQ loaders read.
#include "worker/export_format.hpp"

#include "jobs/export/packed.hpp"

namespace qjobs::worker {

const ExportFormat& export_awq() {
  static const ExportFormat f{
      .name = "awq",
      .packed = true,
      .write = [](const ExportInputs& in) { return write_int_format(in, exporter::PackedFormat::awq); },
      .read_back = read_written_model,
      .report_note = packed_report_note};
  return f;
}

}  // namespace qjobs::worker

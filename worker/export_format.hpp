// The export formats a job's EXPORT_FORMAT names, one file each under
// worker/formats/: what the format cannot hold (checked before quantizing),
// how it writes model/, and how the evaluation reads the written model back.
// Adding a format: its file, defining `export_<name>()`, and one line in
// QJOBS_EXPORT_FORMATS.
#pragma once

#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <ATen/ATen.h>
#include <nlohmann/json.hpp>

#include "common/job_dir.hpp"
#include "spec/job_spec.hpp"
#include "worker/verify.hpp"
#include "jobs/export/packed.hpp"
#include "jobs/model/checkpoint.hpp"
#include "jobs/model/model_config.hpp"
#include "jobs/model/safetensors.hpp"
#include "jobs/quant/algorithm.hpp"
#include "worker/status_reporter.hpp"

namespace qjobs::worker {

#define QJOBS_EXPORT_FORMATS(X) \
  X(fake_quant)                 \
  X(awq)                        \
  X(gptq)                       \
  X(compressed_tensors)         \
  X(gguf)                       \
  X(onnx)                       \
  X(mlx)

// What a format's writer reads. All references outlive the call.
struct ExportInputs {
  const model::Checkpoint& ckpt;  // the original checkpoint
  const quant::QuantOutput& q;    // the algorithm's result
  const LinearPlan& plan;         // every quantized Linear's weight settings (spec/linear_plan.hpp)
  const JobSpec& spec;
  const JobDir& dir;
  StatusReporter& rep;  // progress, warnings and events
  // Called with each checkpoint tensor's name once the writer of a format
  // that reads q's data only once (SafetensorsLayout::last_use) has written
  // it: the pipeline lets q's copy go (quant::release_written).
  std::function<void(const std::string& name)> written;
};

struct ExportResult {
  // What report.json records as the written model's quantization config
  // (config.json's quantization_config for the packed formats; the GGUF
  // file, the ONNX graphs otherwise).
  nlohmann::json quantization_config;
  // Scratch folders the read-back uses, removed after the evaluation.
  std::vector<std::filesystem::path> scratch;
  // What the verify stage compares the reference loader's read with; empty
  // for formats without a reference loader here.
  VerifyManifest verify;
};

struct ExportFormat {
  std::string_view name;  // as EXPORT_FORMAT spells it
  // The algorithm stores quantized Linears in their integer / W8A8 / FP4
  // form only (no float copy): the format packs them.
  bool packed = false;
  // The format has no per-column group map (g_idx) current engines read:
  // GPTQ's act-order keeps its groups in column order (STATIC_GROUPS,
  // compressed-tensors' actorder "weight"); the submission says so.
  bool column_order_groups = false;
  // The format writes the float replacements only (fake_quant, GGUF): the
  // integer codes are not kept (QuantInputs::keep_int_codes).
  bool float_only = false;
  // The export records a VerifyManifest and the verify stage reads it back
  // with the format's reference loader (worker/verify.hpp).
  bool verified = false;
  // Before quantizing: throws Error(invalid_input) naming what the format
  // cannot hold of a model of `config` (its layout), so no work is wasted.
  void (*check)(const JobSpec& spec, const model::ModelConfig& config) = nullptr;
  // Writes model/ from the inputs; throws Error(invalid_input) when the
  // algorithm's result has no form in this format.
  ExportResult (*write)(const ExportInputs& in) = nullptr;
  // The folder of a float-readable checkpoint (safetensors, possibly
  // packed: jobs/model/quantized_checkpoint.hpp reads those) whose weights
  // are exactly those of the written model: what the evaluation scores.
  std::filesystem::path (*read_back)(const ExportInputs& in, ExportResult& written) = nullptr;
  // One paragraph of report.md about the written model.
  std::string (*report_note)(const JobSpec& spec, const nlohmann::json& written_qc) = nullptr;
};

#define QJOBS_EXPORT_FORMAT_DECL(name) const ExportFormat& export_##name();
QJOBS_EXPORT_FORMATS(QJOBS_EXPORT_FORMAT_DECL)
#undef QJOBS_EXPORT_FORMAT_DECL

// Every format, in QJOBS_EXPORT_FORMATS order.
const std::vector<const ExportFormat*>& export_formats();
// The format named `name`; Error(invalid_input) listing the known ones.
const ExportFormat& export_format(std::string_view name);

// --- Shared by the formats' files -------------------------------------

// Writes one tensor of the output checkpoint: its name, the tensor, and
// the stored dtype when it is not the tensor's own (F8_E4M3 codes in uint8).
using PutTensor = std::function<void(const std::string& name, const at::Tensor& t, std::optional<model::StDtype> as)>;

// How a format stores the checkpoint's tensors. `encode` is called with each
// tensor of the original checkpoint (stem: its name without ".weight";
// is_weight: it is a ".weight"); it writes that tensor's stored form through
// `put` and returns true, or returns false to have it written as it is (or as
// the algorithm replaced it). `finish` adds tensors at the end of the last
// shard. `room_per_tensor` bounds how many tensors encode writes per input one.
struct SafetensorsLayout {
  std::function<bool(const std::string& stem, bool is_weight, const model::StTensorInfo& info, const PutTensor& put)>
      encode;
  std::function<std::size_t()> finish_count;  // tensors finish() will add
  std::function<void(const PutTensor& put)> finish;
  std::size_t room_per_tensor = 1;
  // Nothing reads q's tensor data after this writer (the read-back and the
  // verify stage read the written files): each tensor is handed to
  // ExportInputs::written as soon as it is in the output.
  bool last_use = false;
  // Top-level config.json keys written beside quantization_config (what the
  // format's schema has no field for: qjobs_quantization).
  nlohmann::json config_extra = nlohmann::json::object();
};

// Writes q's model into dir.model_dir() (replaced first) as safetensors
// shards named as transformers names them, one per input shard with one
// tensor in memory at a time, the index when sharded, config.json with
// `qc` under quantization_config (`packed`) or qjobs_quantization (a float
// checkpoint transformers must not take for a quantized one), and the
// tokenizer and other companion files.
void write_safetensors_model(const ExportInputs& in, const SafetensorsLayout& layout, const nlohmann::json& qc,
                             bool packed);

// Throws Error(invalid_input) when the algorithm's result has no quantized
// form at all (HQQ with real zero points, say) for a packed format.
void require_quantized_form(const ExportInputs& in);

// For the integer-only formats (awq, gptq): throws Error(invalid_input)
// when the algorithm's result has no integer form, or has W8A8 / FP4
// Linears, which only compressed-tensors holds.
void require_int_weights(const ExportInputs& in);

// The layout of the integer formats: each Linear with an integer form
// packed by exporter::pack in `format` (scales in the checkpoint's dtype
// where the format stores them so), everything else as floats.
SafetensorsLayout int_layout(const ExportInputs& in, exporter::PackedFormat format);

// read_back() of the safetensors formats: model/ itself, which
// jobs/model/quantized_checkpoint.hpp reads packed or not.
std::filesystem::path read_written_model(const ExportInputs& in, ExportResult& written);

// write() of the integer formats: require_int_weights, then the
// checkpoint in int_layout with the format's quantization_config.
ExportResult write_int_format(const ExportInputs& in, exporter::PackedFormat format);

// The weight settings every quantized Linear of `plan` shares, for the
// formats that hold one (awq, gptq, GGUF; the submission refuses overrides
// for them): the first Linear that is not skipped. Throws Error(invalid_input)
// when every Linear is skipped.
LinearScheme uniform_scheme(const LinearPlan& plan);

// report.md's note of a packed format: the quantization_config it records.
std::string packed_report_note(const JobSpec& spec, const nlohmann::json& qc);
// `j` as an indented JSON block of report.md.
std::string json_block(const nlohmann::json& j);

// A safetensors shard or its index (what the GGUF and ONNX exports replace).
bool is_weights_file(const std::filesystem::path& p);

// Moves the checkpoint in model/ to `to` and leaves in model/ its files that
// are not weights (config.json, the tokenizer).
void move_weights_out(const JobDir& dir, const std::filesystem::path& to);

// check() of the formats that write Llama-layout graphs.
void check_llama_layout(const JobSpec& spec, const model::ModelConfig& config);

}  // namespace qjobs::worker

// A finished job's report: report.json (the spec, sizes, metrics, per-layer
// errors, stage times, peak memory, the evaluations) and report.md, the same
// for people, with the per-layer error chart (layer_errors.svg).
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>

#include <nlohmann/json.hpp>

#include "common/job_dir.hpp"
#include "spec/job_spec.hpp"
#include "jobs/quant/algorithm.hpp"
#include "worker/status_reporter.hpp"

namespace qjobs::worker {

// `q` null: an Evaluate job (no quantization, `before` holds the model's
// results). `written_qc`: what the export recorded; `export_note`: its
// paragraph for report.md (ExportFormat::report_note). `memory`: the peak
// memory record.
void write_report(const JobSpec& spec, const std::filesystem::path& model_dir, uint64_t size_before,
                  std::optional<uint64_t> size_after, const quant::QuantOutput* q, const nlohmann::json& written_qc,
                  const std::string& export_note, const JobDir& dir, StatusReporter& rep, const nlohmann::json& before,
                  const nlohmann::json& after, const nlohmann::json& memory, const nlohmann::json& verify = nullptr);

}  // namespace qjobs::worker

// The job spec: Nyuntam's YAML, parsed and validated strictly. Submission
// (the server) and the worker both go through parse_job_spec, so a spec that
// was accepted is exactly the spec that runs.
//
// Top-level keys (Nyuntam's, all optional unless noted):
//   MODEL (required unless CUSTOM_MODEL_PATH), CUSTOM_MODEL_PATH, DATASET_NAME,
//   DATASET_SUBNAME, DATA_PATH, TEXT_COLUMN (comma list), SPLIT, FORMAT_STRING,
//   CUDA_ID ("0" or "0,1,2,3"), ALGORITHM (required), JOB_SERVICE, TASK,
//   ALGO_TYPE, JOB_ID, llm: {<ALGORITHM>: {...}}.
// Server-owned paths, accepted and ignored with a warning: USER_FOLDER,
//   JOB_PATH, MODEL_PATH, LOGGING_PATH, CACHE_PATH.
// qjobs' own: PRIORITY (int, -100..100, default 0, higher runs first),
//   TIMEOUT_S (seconds, 0 = none), MAX_ATTEMPTS (1..10, default 2),
//   DTYPE (auto | float32 | bfloat16 | float16: compute dtype; auto = float32
//   on a CPU, bfloat16 on a GPU), EXPORT_FORMAT (compressed-tensors, the
//   default of every quantizing algorithm: the packed form of its recipe;
//   awq: AutoAWQ GEMM; gptq: AutoGPTQ; fake_quant: float weights in the
//   original dtype, recipe under config.json's "qjobs_quantization"), eval: {tasks: [...]}
//   and calibration: {...} (algorithm_catalog.hpp).
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/environment.hpp"

namespace qjobs {

// One validation failure. line and column are 1-based; 0 when the problem has
// no place in the text (a required key that is missing).
struct SpecIssue {
  std::string path;  // "llm.RTN.W_BIT"
  int line = 0;
  int column = 0;
  std::string message;
};

nlohmann::json to_json(const SpecIssue& issue);

struct JobSpec {
  std::string model;              // MODEL, or CUSTOM_MODEL_PATH when that is set
  std::string custom_model_path;  // as given, may be empty
  std::string dataset_name;
  std::string dataset_subname;
  std::string data_path;
  std::vector<std::string> text_columns;  // TEXT_COLUMN split on ','
  std::string split;
  std::string format_string;
  std::vector<int> cuda_ids;  // CUDA_ID; its size is the number of devices asked for
  std::string algorithm;
  std::string job_service;
  std::string task;
  std::string algo_type;
  std::string job_id;                                // the user's name for the job (not the server's id)
  int priority = 0;                                  // -100..100, higher first
  double timeout_s = 0;                              // wall-clock limit of one attempt; 0 = none
  int max_attempts = 2;                              // attempts before a lost worker fails the job
  nlohmann::json params = nlohmann::json::object();  // the algorithm section, expanded,
                                                     // with the schema's defaults
  std::string dtype = "auto";                        // compute dtype
  std::string export_format = "fake_quant";          // EXPORT_FORMAT, resolved: compressed-tensors unless given
                                                     // (fake_quant for Evaluate) | awq | gptq | fake_quant
  int64_t onnx_seq_len = 128;                        // ONNX_SEQ_LEN: new tokens per call of the ONNX graph (AR)
  int64_t onnx_context_len = 1024;                   // ONNX_CONTEXT_LEN: past + new positions (CL), at most the model's
  bool verify = true;                                // VERIFY: the packed output is read back by its format's reference
                                                     // loader where the worker host has it (worker/verify.hpp)
  nlohmann::json eval = nlohmann::json::object();    // {tasks: [...]}, defaults applied
  nlohmann::json calibration = nlohmann::json::object();  // calibration_schema(), as given
  std::vector<std::string> warnings;                      // accepted but ignored keys

  // Devices the job occupies: the number of CUDA_ID entries, at least 1.
  int devices_requested() const;
};

nlohmann::json to_json(const JobSpec& spec);
JobSpec job_spec_from_json(const nlohmann::json& j);  // REQUIRES: j came from to_json

struct SpecParseResult {
  std::optional<JobSpec> spec;    // set exactly when issues is empty
  std::vector<SpecIssue> issues;  // at most kMaxSpecIssues + 1 (the last one counts the rest)
  bool too_large = false;         // refused for its expanded size (HTTP 413)
  // The model's config.json, when it is on this machine (a folder, or a hub
  // id in the caches) and its family reads it: what the estimate is made from.
  std::optional<nlohmann::json> model_config;
};

// Limits on hostile specs. A spec whose YAML, with every alias expanded, has
// more nodes or scalar bytes than these is refused before it is validated;
// at most kMaxSpecIssues problems are listed.
inline constexpr std::size_t kMaxSpecNodes = 100000;
inline constexpr std::size_t kMaxSpecBytes = 1 << 20;
inline constexpr std::size_t kMaxSpecIssues = 100;

// Parses and validates `yaml_text`. Never throws on bad input: every problem
// becomes a SpecIssue, with a "did you mean" where a near name exists. Text
// that is not UTF-8 is refused at its first bad byte (line and column).
//
// With `local_files` (the server at submission, `POST /jobs`), what the job
// will read from this machine is checked too, before anything runs: a MODEL
// given as a path (or a folder that exists) must be a folder with a
// config.json; DATA_PATH, calibration.data_path and every eval task's
// data_path must exist; DATASET_NAME must be under the data root
// (Environment::data_dir); an eval window longer than the model's
// max_position_embeddings is refused at its key. A model named by hub id is
// looked for in the environment's hub caches, for its config.json.
struct SpecContext {
  bool local_files = false;
  const Environment* env = nullptr;  // nullptr: Environment{} (./datasets, no hub cache)
};
SpecParseResult parse_job_spec(std::string_view yaml_text, const SpecContext& context = {});

// The EXPORT_FORMAT values and their rules: spec/export_formats.hpp.

}  // namespace qjobs

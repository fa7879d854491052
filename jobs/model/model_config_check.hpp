// Whether the worker can build a model from a checkpoint's config.json: its
// architecture is one of the model families, and the keys that family reads
// are present, typed and in range. Defined beside the family tables
// (jobs/model/model_config_check.cpp, in qjobs_model_config, which does not
// link libtorch), so that the server refuses at submission, with the same
// words, what the worker would refuse after the job started.
#pragma once

#include <optional>
#include <string>

#include <nlohmann/json.hpp>

namespace qjobs {

// The problem ("config.json: 'num_attention_heads' is 0, not in [1, 4096]"),
// or nullopt when the worker reads `config` and EXPORT_FORMAT
// `export_format` holds its layout (gguf and onnx: Llama's only). Bounded
// in time and memory.
std::optional<std::string> model_config_problem(const nlohmann::json& config, const std::string& export_format);

}  // namespace qjobs

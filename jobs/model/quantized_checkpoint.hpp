// Reading quantized checkpoints back: which Linears a checkpoint stores
// packed (AutoAWQ, AutoGPTQ, compressed-tensors; the layouts are described in
// jobs/export/packed.hpp, which writes them), their float weights, and the
// activation quantization a compressed-tensors scheme simulates. Everything
// here reads untrusted files: a malformed tensor or config throws
// Error(data_corruption | invalid_input) naming it.
#pragma once

#include <string>

#include <ATen/ATen.h>
#include <nlohmann/json.hpp>

#include "jobs/model/act_quant.hpp"

namespace qjobs::model {

class Checkpoint;

// The config group (its JSON) that Linear `name` belongs to in compressed-
// tensors config qc, or nullptr when it is ignored or in no group.
const nlohmann::json* scheme_group(const nlohmann::json& qc, const std::string& name);
// A group's format: its own "format", else the config's.
std::string group_format(const nlohmann::json& qc, const nlohmann::json& group);

// What a scheme's input_activations simulate (kind none for null).
ActQuant activation_from_args(const nlohmann::json& args, double static_scale);

// Whether Linear `prefix` is stored quantized in checkpoint `ckpt` of config
// qc (any packed or W8A8 form), so that unpack_weight reads it.
bool is_quantized_linear(const Checkpoint& ckpt, const std::string& prefix, const nlohmann::json& qc);

// The float32 weight [out, in] of Linear `prefix` ("model.layers.0.mlp.up_proj")
// from a quantized checkpoint whose config has `quantization_config` qc.
at::Tensor unpack_weight(const Checkpoint& ckpt, const std::string& prefix, const nlohmann::json& qc);

}  // namespace qjobs::model

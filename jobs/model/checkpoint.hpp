// A Hugging Face model directory on disk: config.json, the weight files
// (model.safetensors, shards listed by model.safetensors.index.json, or the
// same as pytorch_model.bin files written by torch.save) and
// the tokenizer files, with every tensor reachable by name through a memory
// map. Nothing is read into memory until a tensor is used.
#pragma once

#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <ATen/ATen.h>
#include <nlohmann/json.hpp>

#include "jobs/model/safetensors.hpp"

namespace qjobs::model {

class Checkpoint {
 public:
  // Opens `dir`. Throws Error(not_found) naming the missing file and
  // Error(data_corruption) naming the unreadable one.
  static Checkpoint open(const std::filesystem::path& dir);

  const std::filesystem::path& dir() const { return dir_; }
  const nlohmann::json& config() const { return config_; }
  // Tensor names in file order (shard by shard).
  const std::vector<std::string>& tensor_names() const { return names_; }
  bool has(const std::string& name) const { return where_.count(name) != 0; }
  const StTensorInfo& info(const std::string& name) const;
  // A view of the mapped tensor in its stored dtype. Throws Error(not_found).
  at::Tensor tensor(const std::string& name) const;

  // The weight files (safetensors, or torch.save files), and for each the
  // tensor names it holds, in order.
  const std::vector<std::shared_ptr<const TensorFile>>& files() const { return files_; }
  bool sharded() const { return sharded_; }
  // Files that travel with the model unchanged: tokenizer, generation config.
  std::vector<std::filesystem::path> companion_files() const;

 private:
  std::filesystem::path dir_;
  nlohmann::json config_;
  std::vector<std::shared_ptr<const TensorFile>> files_;
  std::vector<std::string> names_;
  std::map<std::string, std::size_t> where_;  // name -> index into files_
  bool sharded_ = false;
};

}  // namespace qjobs::model

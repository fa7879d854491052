#include "jobs/model/checkpoint.hpp"

#include <fstream>
#include <set>

#include "common/error.hpp"
#include "jobs/model/torch_bin.hpp"

namespace qjobs::model {
namespace fs = std::filesystem;

namespace {

nlohmann::json read_json(const fs::path& p) {
  std::ifstream in(p);
  if (!in) throw Error(ErrorKind::not_found, "missing " + p.string());
  auto j = nlohmann::json::parse(in, nullptr, false);
  if (j.is_discarded()) throw Error(ErrorKind::data_corruption, p.string() + " is not valid JSON");
  return j;
}

}  // namespace

Checkpoint Checkpoint::open(const fs::path& dir) {
  if (!fs::is_directory(dir)) throw Error(ErrorKind::not_found, "model directory " + dir.string() + " does not exist");
  Checkpoint c;
  c.dir_ = dir;
  c.config_ = read_json(dir / "config.json");

  // The order Hugging Face prefers: safetensors, then torch.save files.
  std::vector<fs::path> shards;
  bool torch_bin = false;
  const auto read_index = [&](const fs::path& index) {
    c.sharded_ = true;
    const auto j = read_json(index);
    if (!j.contains("weight_map") || !j["weight_map"].is_object())
      throw Error(ErrorKind::data_corruption, index.string() + " has no weight_map");
    std::set<std::string> seen;
    for (auto& [name, file] : j["weight_map"].items()) {
      const auto f = file.get<std::string>();
      if (f.find('/') != std::string::npos || f.find("..") != std::string::npos)
        throw Error(ErrorKind::data_corruption, index.string() + ": shard name '" + f + "' is not a plain file name");
      if (seen.insert(f).second) shards.push_back(dir / f);
    }
    std::sort(shards.begin(), shards.end());
  };
  if (fs::exists(dir / "model.safetensors")) {
    shards.push_back(dir / "model.safetensors");
  } else if (fs::exists(dir / "model.safetensors.index.json")) {
    read_index(dir / "model.safetensors.index.json");
  } else if (fs::exists(dir / "pytorch_model.bin")) {
    torch_bin = true;
    shards.push_back(dir / "pytorch_model.bin");
  } else if (fs::exists(dir / "pytorch_model.bin.index.json")) {
    torch_bin = true;
    read_index(dir / "pytorch_model.bin.index.json");
  } else {
    throw Error(ErrorKind::not_found, "no weights in " + dir.string() +
                                          ": expected model.safetensors, model.safetensors.index.json, "
                                          "pytorch_model.bin or pytorch_model.bin.index.json");
  }
  for (const auto& s : shards) {
    if (!fs::exists(s)) throw Error(ErrorKind::not_found, "missing weight shard " + s.string());
    if (torch_bin) c.files_.push_back(std::make_shared<TorchBinFile>(TorchBinFile::open(s)));
    else c.files_.push_back(std::make_shared<SafetensorsFile>(SafetensorsFile::open(s)));
    for (const auto& info : c.files_.back()->tensors()) {
      if (!c.where_.emplace(info.name, c.files_.size() - 1).second)
        throw Error(ErrorKind::data_corruption, "tensor '" + info.name + "' appears in two shards");
      c.names_.push_back(info.name);
    }
  }
  return c;
}

const StTensorInfo& Checkpoint::info(const std::string& name) const {
  const auto it = where_.find(name);
  if (it == where_.end())
    throw Error(ErrorKind::not_found, "checkpoint " + dir_.string() + " has no tensor '" + name + "'");
  return *files_[it->second]->find(name);
}

at::Tensor Checkpoint::tensor(const std::string& name) const {
  const auto it = where_.find(name);
  if (it == where_.end())
    throw Error(ErrorKind::not_found, "checkpoint " + dir_.string() + " has no tensor '" + name + "'");
  return files_[it->second]->tensor(name);
}

std::vector<fs::path> Checkpoint::companion_files() const {
  static const std::vector<std::string> names = {"tokenizer.json",
                                                 "tokenizer_config.json",
                                                 "tokenizer.model",
                                                 "special_tokens_map.json",
                                                 "generation_config.json",
                                                 "vocab.json",
                                                 "merges.txt",
                                                 "added_tokens.json"};
  std::vector<fs::path> out;
  for (const auto& n : names)
    if (fs::exists(dir_ / n)) out.push_back(dir_ / n);
  return out;
}

}  // namespace qjobs::model

// `pytorch_model.bin`: a state dict written by torch.save (PyTorch >= 1.6),
// i.e. a zip archive (entries stored, not compressed) holding
// `<prefix>/data.pkl` — a pickle of an OrderedDict name -> tensor, whose
// tensors refer by key to storages — and `<prefix>/data/<key>`, each
// storage's raw little-endian bytes.
//
// The pickle is read by a small interpreter written here (no Debian package
// reads it; libtorch's own unpickler rejects the OrderedDict of a state
// dict). It runs no code: only the globals a state dict needs are accepted
// (collections.OrderedDict, torch._utils._rebuild_tensor_v2 and
// _rebuild_parameter, torch.*Storage); any other global is an error naming
// it. The zip directory is read with libtorch's PyTorchStreamReader.
#pragma once

#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "jobs/model/safetensors.hpp"

namespace qjobs::model {

// Tensors alias a copy-on-write mapping of the file (a tensor whose bytes are
// not aligned to its element size is copied instead). Tensors sharing a
// storage (tied weights) alias the same bytes, as torch.load gives them.
class TorchBinFile final : public TensorFile {
 public:
  // Throws Error(data_corruption) naming the file for a legacy (pre-1.6,
  // non-zip) file, a malformed pickle, an unsupported global or a storage
  // that runs past the file; Error(io) when it cannot be read.
  static TorchBinFile open(const std::filesystem::path& path);

  const std::filesystem::path& path() const override { return path_; }
  const std::vector<StTensorInfo>& tensors() const override { return infos_; }
  const StTensorInfo* find(const std::string& name) const override;
  at::Tensor tensor(const std::string& name) const override;

  struct Entry {
    uint64_t file_offset = 0;    // first byte of the storage in the file
    int64_t storage_offset = 0;  // in elements
    std::vector<int64_t> stride;
  };

 private:
  std::filesystem::path path_;
  std::shared_ptr<MappedFile> mapping_;
  std::vector<StTensorInfo> infos_;  // begin/end: the bytes the view spans
  std::map<std::string, Entry> entries_;
};

}  // namespace qjobs::model

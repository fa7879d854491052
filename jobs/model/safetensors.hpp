// The safetensors format: an 8-byte little-endian header length N, N bytes of
// JSON header {"name": {"dtype", "shape", "data_offsets": [begin, end]},
// "__metadata__": {str: str}}, then the raw little-endian C-contiguous data.
// Written by hand: no Debian package reads it.
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <ATen/ATen.h>
#include <nlohmann/json.hpp>

#include "jobs/model/mapped_file.hpp"

namespace qjobs::model {

enum class StDtype { F64, F32, F16, BF16, I64, I32, I16, I8, U8, BOOL, F8_E4M3, F8_E5M2, U16, U32, U64 };

std::string st_dtype_name(StDtype d);
std::optional<StDtype> parse_st_dtype(const std::string& name);
std::size_t st_dtype_size(StDtype d);
// The ATen dtype a tensor of `d` is exposed as. F8_* are exposed as raw
// bytes (kByte) since libtorch 1.13 has no float8 type; U16/U32/U64 as the
// signed type of the same width (bit pattern kept).
at::ScalarType st_to_aten(StDtype d);
std::optional<StDtype> aten_to_st(at::ScalarType t);

struct StTensorInfo {
  std::string name;
  StDtype dtype = StDtype::F32;
  std::vector<int64_t> shape;
  uint64_t begin = 0;  // byte offsets into the data section
  uint64_t end = 0;
};

// One file of a checkpoint's weights, whatever its format: the names,
// dtypes and shapes it holds, and each tensor on demand.
// Thread safety: const methods may be called concurrently.
class TensorFile {
 public:
  virtual ~TensorFile() = default;
  virtual const std::filesystem::path& path() const = 0;
  // In storage order. begin/end are byte offsets where the format has them.
  virtual const std::vector<StTensorInfo>& tensors() const = 0;
  virtual const StTensorInfo* find(const std::string& name) const = 0;
  // The named tensor in its stored dtype; throws Error(not_found) when absent.
  virtual at::Tensor tensor(const std::string& name) const = 0;
};

// A read-only, memory-mapped safetensors file. Tensors returned by tensor()
// alias the mapping (copy-on-write, so in-place edits stay private) and keep
// it alive; the file is never read into memory as a whole.
class SafetensorsFile final : public TensorFile {
 public:
  // Throws Error(io) when the file cannot be opened and
  // Error(data_corruption) when the header or offsets are invalid; messages
  // name the file.
  static SafetensorsFile open(const std::filesystem::path& path);

  const std::filesystem::path& path() const override { return path_; }
  const std::vector<StTensorInfo>& tensors() const override { return infos_; }
  const StTensorInfo* find(const std::string& name) const override;
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  at::Tensor tensor(const std::string& name) const override;

 private:
  std::filesystem::path path_;
  std::shared_ptr<MappedFile> mapping_;
  std::vector<StTensorInfo> infos_;
  std::map<std::string, std::string> metadata_;
  uint64_t data_offset_ = 0;
};

struct NamedTensor {
  std::string name;
  at::Tensor tensor;          // any layout; written C-contiguous on the CPU
  std::optional<StDtype> as;  // override of the stored dtype (F8_E4M3 for kByte)
};

// Writes `tensors` in the given order (8-byte aligned data, header padded
// with spaces) atomically: a reader never sees a half-written file.
void save_safetensors(const std::filesystem::path& path, const std::vector<NamedTensor>& tensors,
                      const std::map<std::string, std::string>& metadata = {{"format", "pt"}});

// A safetensors file written one tensor at a time, so that no more than one
// tensor needs to be in memory: each add() writes its data at once, and
// finish() writes the header into the room kept for it ahead of the data
// (padded with spaces, as the format allows) and renames the file into
// place. A header larger than the room is still written, by moving the
// data once. A writer destroyed before finish() leaves no file behind.
class SafetensorsWriter {
 public:
  SafetensorsWriter(std::filesystem::path path, std::size_t header_room);
  ~SafetensorsWriter();
  SafetensorsWriter(const SafetensorsWriter&) = delete;
  SafetensorsWriter& operator=(const SafetensorsWriter&) = delete;

  void add(const NamedTensor& t);
  uint64_t data_bytes() const { return offset_; }
  void finish(const std::map<std::string, std::string>& metadata = {{"format", "pt"}});

  // Header room for `count` tensors whose names are at most `max_name` bytes.
  static std::size_t room_for(std::size_t count, std::size_t max_name);

 private:
  void write_at(uint64_t pos, const void* p, std::size_t n);
  std::filesystem::path path_, tmp_;
  int fd_ = -1;
  std::size_t room_;
  uint64_t offset_ = 0;  // bytes of data written
  std::vector<std::pair<std::string, nlohmann::json>> entries_;
};

}  // namespace qjobs::model

// GGUF, llama.cpp's model file (version 3), as its specification
// (ggml's docs/gguf.md) lays it out; written by hand, no Debian package
// writes GGUF. Little-endian throughout:
//
//   magic "GGUF", u32 version 3, u64 tensor count, u64 metadata count
//   metadata: {string key, u32 value type, value} each; a string is a u64
//             byte length and its bytes; an array is u32 element type, u64
//             count, the elements
//   tensor infos: {string name, u32 n_dims, u64 ne[n_dims] (ne[0] the
//             innermost: a [rows, cols] matrix is ne = {cols, rows}), u32
//             ggml type, u64 offset from the data section}
//   padding to `general.alignment` (32 unless the metadata says), then each
//   tensor's bytes at its offset, every offset a multiple of the alignment
//
// Block formats (32 values a block, along a row):
//   Q8_0  {f16 d; i8 q[32]}      d = max|x| / 127, q = round(x / d), x = d * q
//   Q4_0  {f16 d; u8 qs[16]}     d = m / -8 with m the value of largest
//                                magnitude (sign kept), q = min(15, trunc(x/d + 8.5)),
//                                qs[j] = q[j] | q[j + 16] << 4, x = (q - 8) * d
// (ggml's reference quantizers quantize_row_q8_0_ref / _q4_0_ref define them
// so; d is stored as IEEE half, and the codes are taken against the float d.)
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

namespace qjobs::exporter::gguf {

enum class TensorType : uint32_t { f32 = 0, f16 = 1, q4_0 = 2, q8_0 = 8 };

std::string_view type_name(TensorType t);  // "F32", "F16", "Q4_0", "Q8_0"
// Bytes of one row of `cols` values. Throws Error(invalid_input) for a
// block type whose 32 does not divide `cols`.
uint64_t row_bytes(TensorType t, int64_t cols);

// Rows [rows, cols] of float32 (row-major) in `t`'s layout, and back.
std::vector<uint8_t> encode(TensorType t, const float* x, int64_t rows, int64_t cols);
std::vector<float> decode(TensorType t, const uint8_t* data, std::size_t size, int64_t rows, int64_t cols);

// Value types of metadata (the specification's numbering).
enum class ValueType : uint32_t {
  u8 = 0,
  i8 = 1,
  u16 = 2,
  i16 = 3,
  u32 = 4,
  i32 = 5,
  f32 = 6,
  boolean = 7,
  string = 8,
  array = 9,
  u64 = 10,
  i64 = 11,
  f64 = 12,
};

// A GGUF file built in memory from metadata and tensor producers, written in
// one pass; only one tensor's bytes are held at a time.
class Writer {
 public:
  explicit Writer(uint32_t alignment = 32);

  void set_u32(const std::string& key, uint32_t v);
  void set_i32(const std::string& key, int32_t v);
  void set_f32(const std::string& key, float v);
  void set_bool(const std::string& key, bool v);
  void set_string(const std::string& key, const std::string& v);
  void set_strings(const std::string& key, const std::vector<std::string>& v);
  void set_i32s(const std::string& key, const std::vector<int32_t>& v);

  // A tensor of `shape` (outermost first, as torch holds it: [rows, cols])
  // whose bytes `make` returns when the file is written; they must be
  // row_bytes(type, cols) * rows long.
  void add_tensor(const std::string& name, std::vector<int64_t> shape, TensorType type,
                  std::function<std::vector<uint8_t>()> make);

  // Writes PATH.tmp and renames it to PATH. Throws Error(io / no_space).
  void write(const std::filesystem::path& path) const;

 private:
  struct Tensor {
    std::string name;
    std::vector<int64_t> shape;
    TensorType type;
    uint64_t bytes;
    std::function<std::vector<uint8_t>()> make;
  };
  void put_key(const std::string& key, ValueType type);
  uint32_t alignment_;
  uint64_t kv_count_ = 0;
  std::string kv_;  // the encoded metadata
  std::vector<Tensor> tensors_;
};

// What a GGUF file holds, as read back by read_header.
struct TensorInfo {
  std::string name;
  std::vector<int64_t> shape;  // outermost first ([rows, cols])
  TensorType type;
  uint64_t offset;  // from the file's start
  uint64_t bytes;
};
struct Header {
  uint32_t version = 0;
  uint32_t alignment = 32;
  nlohmann::json metadata = nlohmann::json::object();  // key -> value (arrays as JSON arrays)
  std::vector<TensorInfo> tensors;
};

// Reads a GGUF file's header. The file is untrusted: every count, length and
// offset is checked against the file's size and the types this reader knows;
// a bad one throws Error(data_corruption) naming the byte offset.
Header read_header(const std::filesystem::path& path);

}  // namespace qjobs::exporter::gguf

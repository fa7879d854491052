#include "jobs/export/gguf.hpp"

#include <c10/util/Half.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <fstream>

#include "common/error.hpp"

namespace qjobs::exporter::gguf {
namespace fs = std::filesystem;
using nlohmann::json;

namespace {

constexpr int64_t kBlock = 32;
constexpr uint32_t kVersion = 3;

uint16_t half_bits(float v) { return c10::Half(v).x; }
float half_value(uint16_t bits) { return static_cast<float>(c10::Half(bits, c10::Half::from_bits())); }

template <typename T>
void put(std::string& out, T v) {
  char b[sizeof(T)];
  std::memcpy(b, &v, sizeof(T));  // little-endian hosts only (x86-64, aarch64)
  out.append(b, sizeof(T));
}

void put_string(std::string& out, const std::string& s) {
  put<uint64_t>(out, s.size());
  out += s;
}

uint64_t align_up(uint64_t n, uint64_t a) { return (n + a - 1) / a * a; }

}  // namespace

std::string_view type_name(TensorType t) {
  switch (t) {
    case TensorType::f32:
      return "F32";
    case TensorType::f16:
      return "F16";
    case TensorType::q4_0:
      return "Q4_0";
    case TensorType::q8_0:
      return "Q8_0";
  }
  return "?";
}

uint64_t row_bytes(TensorType t, int64_t cols) {
  if (cols <= 0) throw Error(ErrorKind::invalid_input, "a GGUF row needs at least one value");
  switch (t) {
    case TensorType::f32:
      return 4 * static_cast<uint64_t>(cols);
    case TensorType::f16:
      return 2 * static_cast<uint64_t>(cols);
    case TensorType::q4_0:
    case TensorType::q8_0:
      if (cols % kBlock != 0)
        throw Error(ErrorKind::invalid_input,
                    std::string(type_name(t)) + " needs rows of a multiple of 32 values, got " + std::to_string(cols));
      return static_cast<uint64_t>(cols / kBlock) * (t == TensorType::q4_0 ? 2 + 16 : 2 + 32);
  }
  throw Error(ErrorKind::invalid_input, "unknown GGUF tensor type");
}

std::vector<uint8_t> encode(TensorType t, const float* x, int64_t rows, int64_t cols) {
  const uint64_t rb = row_bytes(t, cols);
  std::vector<uint8_t> out(rb * static_cast<uint64_t>(rows));
  uint8_t* p = out.data();
  const int64_t n = rows * cols;
  if (t == TensorType::f32) {
    std::memcpy(p, x, out.size());
    return out;
  }
  if (t == TensorType::f16) {
    for (int64_t i = 0; i < n; ++i) {
      const uint16_t h = half_bits(x[i]);
      std::memcpy(p + 2 * i, &h, 2);
    }
    return out;
  }
  for (int64_t b = 0; b < n / kBlock; ++b) {
    const float* v = x + b * kBlock;
    if (t == TensorType::q8_0) {
      float amax = 0;
      for (int64_t j = 0; j < kBlock; ++j) amax = std::max(amax, std::fabs(v[j]));
      const float d = amax / 127.0f;
      const float id = d != 0 ? 1.0f / d : 0.0f;
      const uint16_t h = half_bits(d);
      std::memcpy(p, &h, 2);
      for (int64_t j = 0; j < kBlock; ++j) p[2 + j] = static_cast<uint8_t>(static_cast<int8_t>(std::lround(v[j] * id)));
      p += 2 + kBlock;
    } else {
      float amax = 0, m = 0;
      for (int64_t j = 0; j < kBlock; ++j)
        if (std::fabs(v[j]) > amax) {
          amax = std::fabs(v[j]);
          m = v[j];
        }
      const float d = m / -8.0f;
      const float id = d != 0 ? 1.0f / d : 0.0f;
      const uint16_t h = half_bits(d);
      std::memcpy(p, &h, 2);
      for (int64_t j = 0; j < kBlock / 2; ++j) {
        const auto code = [&](float xv) {
          return static_cast<uint8_t>(std::min(15, static_cast<int>(static_cast<int8_t>(xv * id + 8.5f))));
        };
        p[2 + j] = static_cast<uint8_t>(code(v[j]) | (code(v[j + kBlock / 2]) << 4));
      }
      p += 2 + kBlock / 2;
    }
  }
  return out;
}

std::vector<float> decode(TensorType t, const uint8_t* data, std::size_t size, int64_t rows, int64_t cols) {
  const uint64_t rb = row_bytes(t, cols);
  if (size != rb * static_cast<uint64_t>(rows))
    throw Error(ErrorKind::data_corruption, std::string(type_name(t)) + " tensor of " + std::to_string(rows) + "x" +
                                                std::to_string(cols) + " needs " + std::to_string(rb * rows) +
                                                " bytes, has " + std::to_string(size));
  const int64_t n = rows * cols;
  std::vector<float> out(static_cast<std::size_t>(n));
  if (t == TensorType::f32) {
    std::memcpy(out.data(), data, size);
    return out;
  }
  if (t == TensorType::f16) {
    for (int64_t i = 0; i < n; ++i) {
      uint16_t h;
      std::memcpy(&h, data + 2 * i, 2);
      out[i] = half_value(h);
    }
    return out;
  }
  const uint8_t* p = data;
  for (int64_t b = 0; b < n / kBlock; ++b) {
    uint16_t h;
    std::memcpy(&h, p, 2);
    const float d = half_value(h);
    float* o = out.data() + b * kBlock;
    if (t == TensorType::q8_0) {
      for (int64_t j = 0; j < kBlock; ++j) o[j] = d * static_cast<float>(static_cast<int8_t>(p[2 + j]));
      p += 2 + kBlock;
    } else {
      for (int64_t j = 0; j < kBlock / 2; ++j) {
        o[j] = d * static_cast<float>((p[2 + j] & 0x0F) - 8);
        o[j + kBlock / 2] = d * static_cast<float>((p[2 + j] >> 4) - 8);
      }
      p += 2 + kBlock / 2;
    }
  }
  return out;
}

Writer::Writer(uint32_t alignment) : alignment_(alignment) {
  if (alignment == 0 || alignment % 8 != 0)
    throw Error(ErrorKind::invalid_input, "GGUF alignment must be a multiple of 8");
  if (alignment != 32) set_u32("general.alignment", alignment);
}

void Writer::put_key(const std::string& key, ValueType type) {
  put_string(kv_, key);
  put<uint32_t>(kv_, static_cast<uint32_t>(type));
  ++kv_count_;
}

void Writer::set_u32(const std::string& key, uint32_t v) {
  put_key(key, ValueType::u32);
  put(kv_, v);
}
void Writer::set_i32(const std::string& key, int32_t v) {
  put_key(key, ValueType::i32);
  put(kv_, v);
}
void Writer::set_f32(const std::string& key, float v) {
  put_key(key, ValueType::f32);
  put(kv_, v);
}
void Writer::set_bool(const std::string& key, bool v) {
  put_key(key, ValueType::boolean);
  put<uint8_t>(kv_, v ? 1 : 0);
}
void Writer::set_string(const std::string& key, const std::string& v) {
  put_key(key, ValueType::string);
  put_string(kv_, v);
}
void Writer::set_strings(const std::string& key, const std::vector<std::string>& v) {
  put_key(key, ValueType::array);
  put<uint32_t>(kv_, static_cast<uint32_t>(ValueType::string));
  put<uint64_t>(kv_, v.size());
  for (const auto& s : v) put_string(kv_, s);
}
void Writer::set_i32s(const std::string& key, const std::vector<int32_t>& v) {
  put_key(key, ValueType::array);
  put<uint32_t>(kv_, static_cast<uint32_t>(ValueType::i32));
  put<uint64_t>(kv_, v.size());
  for (const int32_t x : v) put(kv_, x);
}

void Writer::add_tensor(const std::string& name, std::vector<int64_t> shape, TensorType type,
                        std::function<std::vector<uint8_t>()> make) {
  if (shape.empty() || shape.size() > 4)
    throw Error(ErrorKind::invalid_input, "GGUF tensor " + name + ": 1 to 4 dimensions");
  int64_t rows = 1;
  for (std::size_t i = 0; i + 1 < shape.size(); ++i) rows *= shape[i];
  const uint64_t bytes = row_bytes(type, shape.back()) * static_cast<uint64_t>(rows);
  tensors_.push_back({name, std::move(shape), type, bytes, std::move(make)});
}

void Writer::write(const fs::path& path) const {
  std::string head;
  put<uint32_t>(head, 0x46554747u);  // "GGUF"
  put<uint32_t>(head, kVersion);
  put<uint64_t>(head, tensors_.size());
  put<uint64_t>(head, kv_count_);
  head += kv_;
  uint64_t offset = 0;
  for (const auto& t : tensors_) {
    put_string(head, t.name);
    put<uint32_t>(head, static_cast<uint32_t>(t.shape.size()));
    for (auto it = t.shape.rbegin(); it != t.shape.rend(); ++it) put<uint64_t>(head, static_cast<uint64_t>(*it));
    put<uint32_t>(head, static_cast<uint32_t>(t.type));
    put<uint64_t>(head, offset);
    offset = align_up(offset + t.bytes, alignment_);
  }
  head.resize(align_up(head.size(), alignment_), '\0');

  const fs::path tmp = path.string() + ".tmp";
  std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
  if (!out) throw Error(ErrorKind::io, "cannot create " + tmp.string());
  out.write(head.data(), static_cast<std::streamsize>(head.size()));
  uint64_t written = 0;
  for (const auto& t : tensors_) {
    const auto bytes = t.make();
    if (bytes.size() != t.bytes)
      throw Error(ErrorKind::internal, "GGUF tensor " + t.name + ": " + std::to_string(bytes.size()) + " bytes made, " +
                                           std::to_string(t.bytes) + " declared");
    out.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
    written += bytes.size();
    const uint64_t pad = align_up(written, alignment_) - written;
    static const char zeros[64] = {};
    for (uint64_t left = pad; left > 0;) {
      const auto k = std::min<uint64_t>(left, sizeof zeros);
      out.write(zeros, static_cast<std::streamsize>(k));
      left -= k;
    }
    written += pad;
  }
  out.flush();
  if (!out) throw Error(errno == ENOSPC ? ErrorKind::no_space : ErrorKind::io, "cannot write " + tmp.string());
  out.close();
  std::error_code ec;
  fs::rename(tmp, path, ec);
  if (ec) throw Error(ErrorKind::io, "cannot rename " + tmp.string() + ": " + ec.message());
}

namespace {

// A bounded cursor over the file's bytes.
class Reader {
 public:
  Reader(std::ifstream& in, uint64_t size) : in_(in), size_(size) {}
  uint64_t pos() const { return pos_; }
  [[noreturn]] void fail(const std::string& what) const {
    throw Error(ErrorKind::data_corruption, "GGUF at byte " + std::to_string(pos_) + ": " + what);
  }
  void read(void* dst, uint64_t n) {
    if (n > size_ - pos_) fail("runs past the end of the file (" + std::to_string(size_) + " bytes)");
    in_.read(static_cast<char*>(dst), static_cast<std::streamsize>(n));
    if (!in_) fail("read error");
    pos_ += n;
  }
  template <typename T>
  T get() {
    T v;
    read(&v, sizeof v);
    return v;
  }
  std::string string() {
    const auto n = get<uint64_t>();
    if (n > size_ - pos_ || n > (64u << 20)) fail("a string of " + std::to_string(n) + " bytes");
    std::string s(n, '\0');
    read(s.data(), n);
    return s;
  }
  json value(uint32_t type, int depth = 0) {
    switch (static_cast<ValueType>(type)) {
      case ValueType::u8:
        return get<uint8_t>();
      case ValueType::i8:
        return get<int8_t>();
      case ValueType::u16:
        return get<uint16_t>();
      case ValueType::i16:
        return get<int16_t>();
      case ValueType::u32:
        return get<uint32_t>();
      case ValueType::i32:
        return get<int32_t>();
      case ValueType::f32:
        return get<float>();
      case ValueType::boolean: {
        const auto b = get<uint8_t>();
        if (b > 1) fail("a boolean of " + std::to_string(b));
        return b == 1;
      }
      case ValueType::string:
        return string();
      case ValueType::u64:
        return get<uint64_t>();
      case ValueType::i64:
        return get<int64_t>();
      case ValueType::f64:
        return get<double>();
      case ValueType::array: {
        if (depth > 2) fail("arrays nested too deep");
        const auto elem = get<uint32_t>();
        const auto n = get<uint64_t>();
        if (n > size_ - pos_) fail("an array of " + std::to_string(n) + " elements");  // each takes a byte at least
        json a = json::array();
        for (uint64_t i = 0; i < n; ++i) a.push_back(value(elem, depth + 1));
        return a;
      }
    }
    fail("unknown value type " + std::to_string(type));
  }

 private:
  std::ifstream& in_;
  uint64_t size_;
  uint64_t pos_ = 0;
};

}  // namespace

Header read_header(const fs::path& path) {
  std::error_code ec;
  const uint64_t size = fs::file_size(path, ec);
  if (ec) throw Error(ErrorKind::not_found, "cannot read " + path.string() + ": " + ec.message());
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error(ErrorKind::io, "cannot open " + path.string());
  Reader r(in, size);
  Header h;
  if (r.get<uint32_t>() != 0x46554747u) r.fail("not a GGUF file (magic)");
  h.version = r.get<uint32_t>();
  if (h.version != 2 && h.version != 3) r.fail("GGUF version " + std::to_string(h.version) + " (2 and 3 are read)");
  const auto n_tensors = r.get<uint64_t>();
  const auto n_kv = r.get<uint64_t>();
  if (n_tensors > size / 24 || n_kv > size / 12) r.fail("more entries than the file can hold");
  for (uint64_t i = 0; i < n_kv; ++i) {
    std::string key = r.string();
    const auto type = r.get<uint32_t>();
    h.metadata[std::move(key)] = r.value(type);
  }
  if (h.metadata.contains("general.alignment")) {
    const auto& a = h.metadata["general.alignment"];
    if (!a.is_number_unsigned() || a.get<uint64_t>() == 0 || a.get<uint64_t>() % 8 != 0 || a.get<uint64_t>() > 4096)
      r.fail("general.alignment must be a multiple of 8 up to 4096");
    h.alignment = a.get<uint32_t>();
  }
  std::vector<std::pair<TensorInfo, uint64_t>> infos;  // info, offset from the data section
  for (uint64_t i = 0; i < n_tensors; ++i) {
    TensorInfo t;
    t.name = r.string();
    const auto dims = r.get<uint32_t>();
    if (dims == 0 || dims > 4) r.fail("tensor " + t.name + " has " + std::to_string(dims) + " dimensions");
    std::vector<int64_t> ne(dims);
    for (auto& d : ne) {
      const auto v = r.get<uint64_t>();
      if (v == 0 || v > (1ull << 40)) r.fail("tensor " + t.name + " has a dimension of " + std::to_string(v));
      d = static_cast<int64_t>(v);
    }
    t.shape.assign(ne.rbegin(), ne.rend());
    const auto type = r.get<uint32_t>();
    if (type != 0 && type != 1 && type != 2 && type != 8)
      r.fail("tensor " + t.name + " has ggml type " + std::to_string(type) + ", which this reader does not decode");
    t.type = static_cast<TensorType>(type);
    int64_t rows = 1;
    for (std::size_t k = 0; k + 1 < t.shape.size(); ++k) rows *= t.shape[k];
    try {
      t.bytes = row_bytes(t.type, t.shape.back()) * static_cast<uint64_t>(rows);
    } catch (const Error& e) {
      r.fail("tensor " + t.name + ": " + e.what());
    }
    const auto off = r.get<uint64_t>();
    if (off % h.alignment != 0) r.fail("tensor " + t.name + " is not aligned");
    infos.push_back({std::move(t), off});
  }
  const uint64_t data_start = align_up(r.pos(), h.alignment);
  for (auto& [t, off] : infos) {
    t.offset = data_start + off;
    if (t.offset > size || t.bytes > size - t.offset)
      throw Error(ErrorKind::data_corruption, "GGUF tensor " + t.name + " runs past the end of the file");
    h.tensors.push_back(std::move(t));
  }
  return h;
}

}  // namespace qjobs::exporter::gguf

#include "jobs/model/safetensors.hpp"

#include <fcntl.h>
#include <sys/sendfile.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstring>

#include <nlohmann/json.hpp>

#include "common/error.hpp"

namespace qjobs::model {
namespace fs = std::filesystem;

namespace {

struct DtypeRow {
  StDtype dtype;
  const char* name;
  std::size_t size;
  at::ScalarType aten;
};

const std::array<DtypeRow, 15> kDtypes{{
    {StDtype::F64, "F64", 8, at::kDouble},
    {StDtype::F32, "F32", 4, at::kFloat},
    {StDtype::F16, "F16", 2, at::kHalf},
    {StDtype::BF16, "BF16", 2, at::kBFloat16},
    {StDtype::I64, "I64", 8, at::kLong},
    {StDtype::I32, "I32", 4, at::kInt},
    {StDtype::I16, "I16", 2, at::kShort},
    {StDtype::I8, "I8", 1, at::kChar},
    {StDtype::U8, "U8", 1, at::kByte},
    {StDtype::BOOL, "BOOL", 1, at::kBool},
    {StDtype::F8_E4M3, "F8_E4M3", 1, at::kByte},
    {StDtype::F8_E5M2, "F8_E5M2", 1, at::kByte},
    {StDtype::U16, "U16", 2, at::kShort},
    {StDtype::U32, "U32", 4, at::kInt},
    {StDtype::U64, "U64", 8, at::kLong},
}};

const DtypeRow& row(StDtype d) {
  for (const auto& r : kDtypes)
    if (r.dtype == d) return r;
  throw Error(ErrorKind::internal, "unknown safetensors dtype");
}

}  // namespace

std::string st_dtype_name(StDtype d) { return row(d).name; }
std::size_t st_dtype_size(StDtype d) { return row(d).size; }
at::ScalarType st_to_aten(StDtype d) { return row(d).aten; }

std::optional<StDtype> parse_st_dtype(const std::string& name) {
  for (const auto& r : kDtypes)
    if (name == r.name) return r.dtype;
  return std::nullopt;
}

std::optional<StDtype> aten_to_st(at::ScalarType t) {
  for (const auto& r : kDtypes)  // first row wins: kByte -> U8, kShort -> I16
    if (r.aten == t) return r.dtype;
  return std::nullopt;
}

SafetensorsFile SafetensorsFile::open(const fs::path& path) {
  const auto where = path.string();
  auto mapping = MappedFile::open(path);
  const uint64_t file_size = mapping->size();
  if (file_size < 8)
    throw Error(ErrorKind::data_corruption,
                where + ": too short for a safetensors file (" + std::to_string(file_size) + " bytes)");
  const auto* bytes = mapping->data();
  uint64_t header_len = 0;
  for (int i = 7; i >= 0; --i) header_len = (header_len << 8) | bytes[i];
  if (header_len > file_size - 8 || header_len > (100ull << 20))
    throw Error(ErrorKind::data_corruption,
                where + ": header length " + std::to_string(header_len) + " exceeds the file");

  nlohmann::json header = nlohmann::json::parse(reinterpret_cast<const char*>(bytes + 8),
                                                reinterpret_cast<const char*>(bytes + 8 + header_len), nullptr, false);
  if (header.is_discarded() || !header.is_object())
    throw Error(ErrorKind::data_corruption, where + ": header is not a JSON object");

  SafetensorsFile f;
  f.path_ = path;
  f.mapping_ = std::move(mapping);
  f.data_offset_ = 8 + header_len;
  const uint64_t data_size = file_size - f.data_offset_;
  for (auto& [name, value] : header.items()) {
    if (name == "__metadata__") {
      if (value.is_object())
        for (auto& [k, v] : value.items())
          if (v.is_string()) f.metadata_[k] = v.get<std::string>();
      continue;
    }
    const auto bad = [&](const std::string& why) {
      return Error(ErrorKind::data_corruption, where + ": tensor '" + name + "': " + why);
    };
    if (!value.is_object() || !value.contains("dtype") || !value.contains("shape") || !value.contains("data_offsets"))
      throw bad("entry needs dtype, shape and data_offsets");
    StTensorInfo info;
    info.name = name;
    const auto dt = parse_st_dtype(value["dtype"].get<std::string>());
    if (!dt) throw bad("unknown dtype " + value["dtype"].dump());
    info.dtype = *dt;
    uint64_t numel = 1;
    for (const auto& d : value["shape"]) {
      if (!d.is_number_integer() || d.get<int64_t>() < 0) throw bad("bad shape");
      info.shape.push_back(d.get<int64_t>());
      numel *= static_cast<uint64_t>(d.get<int64_t>());
    }
    const auto& off = value["data_offsets"];
    if (!off.is_array() || off.size() != 2) throw bad("data_offsets must be [begin, end]");
    info.begin = off[0].get<uint64_t>();
    info.end = off[1].get<uint64_t>();
    if (info.end < info.begin || info.end > data_size)
      throw bad("data_offsets [" + std::to_string(info.begin) + ", " + std::to_string(info.end) +
                "] run past the data section (" + std::to_string(data_size) + " bytes; truncated file?)");
    if (info.end - info.begin != numel * st_dtype_size(info.dtype))
      throw bad("byte size " + std::to_string(info.end - info.begin) + " does not match shape");
    f.infos_.push_back(std::move(info));
  }
  std::sort(f.infos_.begin(), f.infos_.end(), [](const auto& a, const auto& b) { return a.begin < b.begin; });
  return f;
}

const StTensorInfo* SafetensorsFile::find(const std::string& name) const {
  for (const auto& i : infos_)
    if (i.name == name) return &i;
  return nullptr;
}

at::Tensor SafetensorsFile::tensor(const std::string& name) const {
  const StTensorInfo* info = find(name);
  if (info == nullptr) throw Error(ErrorKind::not_found, path_.string() + ": no tensor named '" + name + "'");
  auto* data = mapping_->data() + data_offset_ + info->begin;
  auto keep = mapping_;
  const auto options = at::TensorOptions().dtype(st_to_aten(info->dtype));
  if (info->end == info->begin) return at::empty(info->shape, options);
  // A misaligned start (legal in the format) would break vectorized kernels:
  // copy those few tensors instead of aliasing them.
  const auto align = st_dtype_size(info->dtype);
  if (reinterpret_cast<uintptr_t>(data) % align != 0) {
    auto out = at::empty(info->shape, options);
    std::memcpy(out.data_ptr(), data, info->end - info->begin);
    return out;
  }
  return at::from_blob(
      data, info->shape, [keep](void*) {}, options);
}

void save_safetensors(const fs::path& path, const std::vector<NamedTensor>& tensors,
                      const std::map<std::string, std::string>& metadata) {
  nlohmann::json header = nlohmann::json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  std::vector<at::Tensor> contiguous;
  uint64_t offset = 0;
  for (const auto& t : tensors) {
    auto c = t.tensor.to(at::kCPU).contiguous();
    const auto dt = t.as ? *t.as : aten_to_st(c.scalar_type()).value_or(StDtype::F32);
    if (!aten_to_st(c.scalar_type()) || st_dtype_size(dt) != c.element_size())
      throw Error(ErrorKind::invalid_input,
                  "cannot store tensor '" + t.name + "' of this dtype as " + st_dtype_name(dt));
    const uint64_t nbytes = static_cast<uint64_t>(c.numel()) * c.element_size();
    header[t.name] = {
        {"dtype", st_dtype_name(dt)}, {"shape", c.sizes().vec()}, {"data_offsets", {offset, offset + nbytes}}};
    offset += nbytes;
    contiguous.push_back(std::move(c));
  }
  std::string h = header.dump();
  while ((8 + h.size()) % 8 != 0) h.push_back(' ');

  const fs::path tmp = path.string() + ".tmp." + std::to_string(::getpid());
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) throw Error(error_kind_for_errno(errno), "cannot create " + tmp.string() + ": " + std::strerror(errno));
  const auto write_all = [&](const void* p, std::size_t n) {
    const char* c = static_cast<const char*>(p);
    while (n > 0) {
      const ssize_t w = ::write(fd, c, n);
      if (w < 0) {
        if (errno == EINTR) continue;
        const int err = errno;
        ::close(fd);
        ::unlink(tmp.c_str());
        throw Error(error_kind_for_errno(err), "write " + tmp.string() + ": " + std::strerror(err));
      }
      c += w;
      n -= static_cast<std::size_t>(w);
    }
  };
  unsigned char len[8];
  uint64_t hl = h.size();
  for (int i = 0; i < 8; ++i) len[i] = static_cast<unsigned char>((hl >> (8 * i)) & 0xff);
  write_all(len, 8);
  write_all(h.data(), h.size());
  for (const auto& c : contiguous) write_all(c.data_ptr(), static_cast<std::size_t>(c.numel()) * c.element_size());
  if (::fsync(fd) != 0 || ::close(fd) != 0) {
    const int err = errno;
    ::unlink(tmp.c_str());
    throw Error(error_kind_for_errno(err), "cannot flush " + tmp.string() + ": " + std::strerror(err));
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    const int err = errno;
    ::unlink(tmp.c_str());
    throw Error(ErrorKind::io, "rename to " + path.string() + ": " + std::strerror(err));
  }
}

namespace {

[[noreturn]] void throw_errno(const std::string& what, int err) {
  throw Error(error_kind_for_errno(err), what + ": " + std::strerror(err));
}

}  // namespace

std::size_t SafetensorsWriter::room_for(std::size_t count, std::size_t max_name) {
  // An entry: "name":{"data_offsets":[20 digits,20 digits],"dtype":"F8_E4M3","shape":[4 dims of 19]}.
  return 256 + count * (max_name + 180);
}

SafetensorsWriter::SafetensorsWriter(fs::path path, std::size_t header_room)
    : path_(std::move(path)), tmp_(path_.string() + ".tmp." + std::to_string(::getpid())), room_(header_room) {
  while ((8 + room_) % 8 != 0) ++room_;
  fd_ = ::open(tmp_.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd_ < 0) throw_errno("cannot create " + tmp_.string(), errno);
}

SafetensorsWriter::~SafetensorsWriter() {
  if (fd_ >= 0) {
    ::close(fd_);
    ::unlink(tmp_.c_str());
  }
}

void SafetensorsWriter::write_at(uint64_t pos, const void* p, std::size_t n) {
  const char* c = static_cast<const char*>(p);
  while (n > 0) {
    const ssize_t w = ::pwrite(fd_, c, n, static_cast<off_t>(pos));
    if (w < 0) {
      if (errno == EINTR) continue;
      throw_errno("write " + tmp_.string(), errno);
    }
    c += w;
    pos += static_cast<uint64_t>(w);
    n -= static_cast<std::size_t>(w);
  }
}

void SafetensorsWriter::add(const NamedTensor& t) {
  if (fd_ < 0) throw Error(ErrorKind::internal, "SafetensorsWriter::add after finish");
  const auto c = t.tensor.to(at::kCPU).contiguous();
  const auto dt = t.as ? *t.as : aten_to_st(c.scalar_type()).value_or(StDtype::F32);
  if (!aten_to_st(c.scalar_type()) || st_dtype_size(dt) != static_cast<std::size_t>(c.element_size()))
    throw Error(ErrorKind::invalid_input, "cannot store tensor '" + t.name + "' of this dtype as " + st_dtype_name(dt));
  const uint64_t nbytes = static_cast<uint64_t>(c.numel()) * c.element_size();
  if (nbytes > 0) write_at(8 + room_ + offset_, c.data_ptr(), nbytes);
  entries_.push_back(
      {t.name,
       {{"dtype", st_dtype_name(dt)}, {"shape", c.sizes().vec()}, {"data_offsets", {offset_, offset_ + nbytes}}}});
  offset_ += nbytes;
}

void SafetensorsWriter::finish(const std::map<std::string, std::string>& metadata) {
  nlohmann::json header = nlohmann::json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  for (auto& [name, e] : entries_) {
    if (header.contains(name))
      throw Error(ErrorKind::internal, "tensor '" + name + "' written twice to " + path_.string());
    header[name] = std::move(e);
  }
  std::string h = header.dump();
  if (h.size() > room_) {
    // Too little room: a second file with the header first, the data copied after it.
    std::size_t room = h.size();
    while ((8 + room) % 8 != 0) ++room;
    const fs::path tmp2 = tmp_.string() + "b";
    const int fd2 = ::open(tmp2.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd2 < 0) throw_errno("cannot create " + tmp2.string(), errno);
    off_t from = static_cast<off_t>(8 + room_);
    if (::lseek(fd2, static_cast<off_t>(8 + room), SEEK_SET) < 0) throw_errno("seek " + tmp2.string(), errno);
    uint64_t left = offset_;
    while (left > 0) {
      const ssize_t n = ::sendfile(fd2, fd_, &from, std::min<uint64_t>(left, 1 << 30));
      if (n <= 0) {
        const int err = n < 0 ? errno : EIO;
        ::close(fd2);
        ::unlink(tmp2.c_str());
        throw_errno("copy into " + tmp2.string(), err);
      }
      left -= static_cast<uint64_t>(n);
    }
    ::close(fd_);
    ::unlink(tmp_.c_str());
    fd_ = fd2;
    tmp_ = tmp2;
    room_ = room;
  }
  h.resize(room_, ' ');
  unsigned char len[8];
  const uint64_t hl = h.size();
  for (int i = 0; i < 8; ++i) len[i] = static_cast<unsigned char>((hl >> (8 * i)) & 0xff);
  write_at(0, len, 8);
  write_at(8, h.data(), h.size());
  if (::fsync(fd_) != 0) throw_errno("cannot flush " + tmp_.string(), errno);
  const int fd = fd_;
  fd_ = -1;
  if (::close(fd) != 0) {
    const int err = errno;
    ::unlink(tmp_.c_str());
    throw_errno("cannot flush " + tmp_.string(), err);
  }
  if (::rename(tmp_.c_str(), path_.c_str()) != 0) {
    const int err = errno;
    ::unlink(tmp_.c_str());
    throw Error(ErrorKind::io, "rename to " + path_.string() + ": " + std::strerror(err));
  }
}

}  // namespace qjobs::model

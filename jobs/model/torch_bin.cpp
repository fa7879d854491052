#include "jobs/model/torch_bin.hpp"

#include <caffe2/serialize/inline_container.h>

#include <cstring>
#include <fstream>
#include <variant>

#include "common/error.hpp"

namespace qjobs::model {
namespace fs = std::filesystem;

namespace {

// The Python values a state-dict pickle builds.
struct PyValue;
using PyRef = std::shared_ptr<PyValue>;

struct PyStorage {
  std::string key;
  StDtype dtype = StDtype::F32;
  int64_t numel = 0;
};

struct PyTensor {
  std::shared_ptr<PyStorage> storage;
  int64_t offset = 0;
  std::vector<int64_t> size;
  std::vector<int64_t> stride;
};

struct PyValue {
  enum class Kind { none, boolean, integer, real, str, bytes, tuple, list, dict, global, storage, tensor, mark };
  Kind kind = Kind::none;
  int64_t i = 0;
  double f = 0;
  std::string s;             // str, bytes, global "module.name"
  std::vector<PyRef> items;  // tuple, list
  std::vector<std::pair<PyRef, PyRef>> dict;
  std::shared_ptr<PyStorage> storage;
  PyTensor tensor;
};

PyRef make(PyValue::Kind k) {
  auto v = std::make_shared<PyValue>();
  v->kind = k;
  return v;
}

std::optional<StDtype> storage_dtype(const std::string& global) {
  static const std::map<std::string, StDtype> table = {
      {"torch.FloatStorage", StDtype::F32},     {"torch.HalfStorage", StDtype::F16},
      {"torch.BFloat16Storage", StDtype::BF16}, {"torch.DoubleStorage", StDtype::F64},
      {"torch.LongStorage", StDtype::I64},      {"torch.IntStorage", StDtype::I32},
      {"torch.ShortStorage", StDtype::I16},     {"torch.CharStorage", StDtype::I8},
      {"torch.ByteStorage", StDtype::U8},       {"torch.BoolStorage", StDtype::BOOL}};
  const auto it = table.find(global);
  if (it == table.end()) return std::nullopt;
  return it->second;
}

std::vector<int64_t> int_list(const PyRef& v, const std::string& what) {
  if (v->kind != PyValue::Kind::tuple && v->kind != PyValue::Kind::list)
    throw std::runtime_error(what + " is not a tuple");
  std::vector<int64_t> out;
  for (const auto& e : v->items) {
    if (e->kind != PyValue::Kind::integer) throw std::runtime_error(what + " holds a non-integer");
    out.push_back(e->i);
  }
  return out;
}

// A pickle interpreter for protocols 2-5 restricted to what torch.save
// writes for a state dict. Throws std::runtime_error; open() adds the file.
class Unpickler {
 public:
  explicit Unpickler(const std::string& bytes) : p_(bytes) {}

  PyRef run() {
    while (true) {
      const int op = byte();
      switch (op) {
        case 0x80:
          byte();
          break;  // PROTO
        case 0x95:
          skip(8);
          break;  // FRAME
        case '.':
          return pop();  // STOP
        case '(':
          push(make(PyValue::Kind::mark));
          break;
        case 'N':
          push(make(PyValue::Kind::none));
          break;
        case 0x88:
          push(boolean(true));
          break;  // NEWTRUE
        case 0x89:
          push(boolean(false));
          break;  // NEWFALSE
        case 'J':
          push(integer(static_cast<int32_t>(le(4))));
          break;  // BININT
        case 'K':
          push(integer(static_cast<int64_t>(le(1))));
          break;  // BININT1
        case 'M':
          push(integer(static_cast<int64_t>(le(2))));
          break;  // BININT2
        case 0x8a:
          push(long1());
          break;  // LONG1
        case 'G':
          push(binfloat());
          break;  // BINFLOAT
        case 'X':
          push(text(le(4), PyValue::Kind::str));
          break;  // BINUNICODE
        case 0x8c:
          push(text(le(1), PyValue::Kind::str));
          break;  // SHORT_BINUNICODE
        case 0x8d:
          push(text(le(8), PyValue::Kind::str));
          break;  // BINUNICODE8
        case 'B':
          push(text(le(4), PyValue::Kind::bytes));
          break;  // BINBYTES
        case 'C':
          push(text(le(1), PyValue::Kind::bytes));
          break;  // SHORT_BINBYTES
        case ')':
          push(make(PyValue::Kind::tuple));
          break;  // EMPTY_TUPLE
        case ']':
          push(make(PyValue::Kind::list));
          break;  // EMPTY_LIST
        case '}':
          push(make(PyValue::Kind::dict));
          break;  // EMPTY_DICT
        case 't':
          push(tuple(pop_mark()));
          break;  // TUPLE
        case 0x85:
          push(tuple(pop_n(1)));
          break;  // TUPLE1
        case 0x86:
          push(tuple(pop_n(2)));
          break;  // TUPLE2
        case 0x87:
          push(tuple(pop_n(3)));
          break;     // TUPLE3
        case 'a': {  // APPEND
          auto v = pop();
          list_top()->items.push_back(v);
          break;
        }
        case 'e': {  // APPENDS
          auto vs = pop_mark();
          auto l = list_top();
          l->items.insert(l->items.end(), vs.begin(), vs.end());
          break;
        }
        case 's': {  // SETITEM
          auto v = pop();
          auto k = pop();
          dict_top()->dict.emplace_back(k, v);
          break;
        }
        case 'u': {  // SETITEMS
          auto kv = pop_mark();
          if (kv.size() % 2 != 0) throw std::runtime_error("SETITEMS with an odd number of items");
          auto d = dict_top();
          for (std::size_t i = 0; i < kv.size(); i += 2) d->dict.emplace_back(kv[i], kv[i + 1]);
          break;
        }
        case 'q':
          memo_[le(1)] = top();
          break;  // BINPUT
        case 'r':
          memo_[le(4)] = top();
          break;  // LONG_BINPUT
        case 0x94:
          memo_[memo_.size()] = top();
          break;  // MEMOIZE
        case 'h':
          push(memo(le(1)));
          break;  // BINGET
        case 'j':
          push(memo(le(4)));
          break;     // LONG_BINGET
        case 'c': {  // GLOBAL
          const auto module = line();
          const auto name = line();
          push(global(module, name));
          break;
        }
        case 0x93: {  // STACK_GLOBAL
          const auto name = pop();
          const auto module = pop();
          push(global(module->s, name->s));
          break;
        }
        case 'Q':
          push(persistent(pop()));
          break;     // BINPERSID
        case 'R': {  // REDUCE
          auto args = pop();
          auto fn = pop();
          push(reduce(fn, args));
          break;
        }
        case 'b':
          pop();
          break;  // BUILD: the state of an OrderedDict (_metadata) or a Parameter; not needed
        default: {
          char hex[8];
          std::snprintf(hex, sizeof hex, "0x%02x", op);
          throw std::runtime_error(std::string("unsupported pickle opcode ") + hex + " at byte " +
                                   std::to_string(pos_ - 1));
        }
      }
    }
  }

 private:
  int byte() {
    if (pos_ >= p_.size()) throw std::runtime_error("pickle ends before STOP");
    return static_cast<unsigned char>(p_[pos_++]);
  }
  void skip(std::size_t n) {
    if (pos_ + n > p_.size()) throw std::runtime_error("pickle ends inside an opcode");
    pos_ += n;
  }
  uint64_t le(int n) {
    uint64_t v = 0;
    for (int i = 0; i < n; ++i) v |= static_cast<uint64_t>(byte()) << (8 * i);
    return v;
  }
  std::string line() {
    const auto end = p_.find('\n', pos_);
    if (end == std::string::npos) throw std::runtime_error("GLOBAL without a newline");
    auto s = p_.substr(pos_, end - pos_);
    pos_ = end + 1;
    return s;
  }
  PyRef text(uint64_t n, PyValue::Kind k) {
    if (pos_ + n > p_.size()) throw std::runtime_error("string runs past the pickle");
    auto v = make(k);
    v->s = p_.substr(pos_, n);
    pos_ += n;
    return v;
  }
  static PyRef boolean(bool b) {
    auto v = make(PyValue::Kind::boolean);
    v->i = b ? 1 : 0;
    return v;
  }
  static PyRef integer(int64_t i) {
    auto v = make(PyValue::Kind::integer);
    v->i = i;
    return v;
  }
  PyRef long1() {
    const auto n = le(1);
    if (n > 8) throw std::runtime_error("integer wider than 64 bits");
    uint64_t v = le(static_cast<int>(n));
    if (n > 0 && n < 8 && (v >> (8 * n - 1)) & 1) v |= ~uint64_t{0} << (8 * n);  // sign-extend
    return integer(static_cast<int64_t>(v));
  }
  PyRef binfloat() {
    uint64_t bits = 0;
    for (int i = 0; i < 8; ++i) bits = (bits << 8) | static_cast<uint64_t>(byte());  // big-endian
    auto v = make(PyValue::Kind::real);
    std::memcpy(&v->f, &bits, 8);
    return v;
  }
  static PyRef tuple(std::vector<PyRef> items) {
    auto v = make(PyValue::Kind::tuple);
    v->items = std::move(items);
    return v;
  }
  static PyRef global(const std::string& module, const std::string& name) {
    const auto full = module + "." + name;
    static const std::vector<std::string> allowed = {"collections.OrderedDict", "torch._utils._rebuild_tensor_v2",
                                                     "torch._utils._rebuild_parameter"};
    if (std::find(allowed.begin(), allowed.end(), full) == allowed.end() && !storage_dtype(full))
      throw std::runtime_error("global " + full + " is not part of a state dict (refused: a pickle may run code)");
    auto v = make(PyValue::Kind::global);
    v->s = full;
    return v;
  }
  static PyRef persistent(const PyRef& pid) {
    // ('storage', torch.FloatStorage, key, location, numel)
    if (pid->kind != PyValue::Kind::tuple || pid->items.size() != 5 || pid->items[0]->s != "storage" ||
        pid->items[1]->kind != PyValue::Kind::global || pid->items[2]->kind != PyValue::Kind::str ||
        pid->items[4]->kind != PyValue::Kind::integer)
      throw std::runtime_error("persistent id is not ('storage', type, key, location, numel)");
    auto v = make(PyValue::Kind::storage);
    v->storage = std::make_shared<PyStorage>();
    v->storage->key = pid->items[2]->s;
    v->storage->dtype = *storage_dtype(pid->items[1]->s);
    v->storage->numel = pid->items[4]->i;
    return v;
  }
  static PyRef reduce(const PyRef& fn, const PyRef& args) {
    if (fn->kind != PyValue::Kind::global || args->kind != PyValue::Kind::tuple)
      throw std::runtime_error("REDUCE of something other than a known global");
    if (fn->s == "collections.OrderedDict") return make(PyValue::Kind::dict);
    if (fn->s == "torch._utils._rebuild_parameter") {
      if (args->items.empty() || args->items[0]->kind != PyValue::Kind::tensor)
        throw std::runtime_error("_rebuild_parameter without a tensor");
      return args->items[0];
    }
    if (fn->s == "torch._utils._rebuild_tensor_v2") {
      // (storage, storage_offset, size, stride, requires_grad, backward_hooks[, metadata])
      if (args->items.size() < 4 || args->items[0]->kind != PyValue::Kind::storage ||
          args->items[1]->kind != PyValue::Kind::integer)
        throw std::runtime_error("_rebuild_tensor_v2 with unexpected arguments");
      auto v = make(PyValue::Kind::tensor);
      v->tensor.storage = args->items[0]->storage;
      v->tensor.offset = args->items[1]->i;
      v->tensor.size = int_list(args->items[2], "tensor size");
      v->tensor.stride = int_list(args->items[3], "tensor stride");
      if (v->tensor.size.size() != v->tensor.stride.size())
        throw std::runtime_error("tensor size and stride differ in rank");
      return v;
    }
    throw std::runtime_error("cannot call " + fn->s);
  }

  void push(PyRef v) { stack_.push_back(std::move(v)); }
  PyRef top() {
    if (stack_.empty()) throw std::runtime_error("pickle stack underflow");
    return stack_.back();
  }
  PyRef pop() {
    auto v = top();
    stack_.pop_back();
    return v;
  }
  std::vector<PyRef> pop_n(std::size_t n) {
    if (stack_.size() < n) throw std::runtime_error("pickle stack underflow");
    std::vector<PyRef> out(stack_.end() - static_cast<std::ptrdiff_t>(n), stack_.end());
    stack_.resize(stack_.size() - n);
    return out;
  }
  std::vector<PyRef> pop_mark() {
    for (std::size_t i = stack_.size(); i-- > 0;) {
      if (stack_[i]->kind == PyValue::Kind::mark) {
        std::vector<PyRef> out(stack_.begin() + static_cast<std::ptrdiff_t>(i) + 1, stack_.end());
        stack_.resize(i);
        return out;
      }
    }
    throw std::runtime_error("no MARK on the pickle stack");
  }
  PyRef memo(uint64_t k) {
    const auto it = memo_.find(k);
    if (it == memo_.end()) throw std::runtime_error("memo key " + std::to_string(k) + " was never stored");
    return it->second;
  }
  PyRef list_top() {
    auto l = top();
    if (l->kind != PyValue::Kind::list) throw std::runtime_error("APPEND to a non-list");
    return l;
  }
  PyRef dict_top() {
    auto d = top();
    if (d->kind != PyValue::Kind::dict) throw std::runtime_error("SETITEM on a non-dict");
    return d;
  }

  const std::string& p_;
  std::size_t pos_ = 0;
  std::vector<PyRef> stack_;
  std::map<uint64_t, PyRef> memo_;
};

}  // namespace

TorchBinFile TorchBinFile::open(const fs::path& path) {
  const auto where = path.string();
  {
    std::ifstream in(path, std::ios::binary);
    if (!in) throw Error(ErrorKind::io, "cannot open " + where);
    char magic[4] = {};
    in.read(magic, 4);
    if (std::memcmp(magic, "PK\x03\x04", 4) != 0)
      throw Error(ErrorKind::data_corruption,
                  where +
                      " is not a zip archive: the legacy torch.save format (PyTorch < 1.6) is not read; "
                      "re-save it with a current PyTorch or as safetensors");
  }
  TorchBinFile f;
  f.path_ = path;
  std::map<std::string, uint64_t> record_offsets;
  PyRef root;
  try {
    caffe2::serialize::PyTorchStreamReader reader(path.string());
    auto [data, size] = reader.getRecord("data.pkl");
    const std::string pickle(static_cast<const char*>(data.get()), size);
    root = Unpickler(pickle).run();
    if (root->kind != PyValue::Kind::dict) throw std::runtime_error("data.pkl does not hold a dict");
    for (const auto& [k, v] : root->dict)
      if (v->kind == PyValue::Kind::tensor && !record_offsets.count(v->tensor.storage->key))
        record_offsets[v->tensor.storage->key] = reader.getRecordOffset("data/" + v->tensor.storage->key);
  } catch (const Error&) {
    throw;
  } catch (const std::exception& e) {
    throw Error(ErrorKind::data_corruption, where + ": not a readable torch.save state dict: " + e.what());
  }
  f.mapping_ = MappedFile::open(path);
  const uint64_t file_size = f.mapping_->size();
  for (const auto& [k, v] : root->dict) {
    if (k->kind != PyValue::Kind::str)
      throw Error(ErrorKind::data_corruption, where + ": a state dict key is not a string");
    if (v->kind != PyValue::Kind::tensor) continue;  // e.g. an int buffer such as a step counter
    const auto& t = v->tensor;
    const auto elem = st_dtype_size(t.storage->dtype);
    // The last element the view touches must lie inside its storage.
    int64_t last = t.offset;
    int64_t numel = 1;
    for (std::size_t d = 0; d < t.size.size(); ++d) {
      numel *= t.size[d];
      if (t.size[d] > 0) last += (t.size[d] - 1) * t.stride[d];
    }
    const auto bad = [&](const std::string& why) {
      return Error(ErrorKind::data_corruption, where + ": tensor '" + k->s + "': " + why);
    };
    if (numel > 0 && (last >= t.storage->numel || t.offset < 0))
      throw bad("view runs past its storage of " + std::to_string(t.storage->numel) + " elements");
    Entry e;
    e.file_offset = record_offsets.at(t.storage->key);
    e.storage_offset = t.offset;
    e.stride = t.stride;
    if (e.file_offset + static_cast<uint64_t>(t.storage->numel) * elem > file_size)
      throw bad("storage data/" + t.storage->key + " runs past the end of the file (truncated?)");
    StTensorInfo info;
    info.name = k->s;
    info.dtype = t.storage->dtype;
    info.shape = t.size;
    info.begin = e.file_offset + static_cast<uint64_t>(t.offset) * elem;
    info.end = info.begin + static_cast<uint64_t>(numel) * elem;
    f.entries_[info.name] = e;
    f.infos_.push_back(std::move(info));
  }
  return f;
}

const StTensorInfo* TorchBinFile::find(const std::string& name) const {
  for (const auto& i : infos_)
    if (i.name == name) return &i;
  return nullptr;
}

at::Tensor TorchBinFile::tensor(const std::string& name) const {
  const StTensorInfo* info = find(name);
  if (info == nullptr) throw Error(ErrorKind::not_found, path_.string() + ": no tensor named '" + name + "'");
  const auto& e = entries_.at(name);
  const auto options = at::TensorOptions().dtype(st_to_aten(info->dtype));
  const auto elem = st_dtype_size(info->dtype);
  auto* base = mapping_->data() + e.file_offset;
  int64_t span = e.storage_offset + 1;  // elements from the storage start to the last one touched
  for (std::size_t d = 0; d < info->shape.size(); ++d)
    if (info->shape[d] > 0) span += (info->shape[d] - 1) * e.stride[d];
  if (info->end == info->begin) return at::empty(info->shape, options);
  if (reinterpret_cast<uintptr_t>(base) % elem != 0) {
    auto storage = at::empty({span}, options);
    std::memcpy(storage.data_ptr(), base, static_cast<std::size_t>(span) * elem);
    return storage.as_strided(info->shape, e.stride, e.storage_offset);
  }
  auto keep = mapping_;
  return at::from_blob(
             base, {span}, [keep](void*) {}, options)
      .as_strided(info->shape, e.stride, e.storage_offset);
}

}  // namespace qjobs::model

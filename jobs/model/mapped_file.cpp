#include "jobs/model/mapped_file.hpp"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <map>
#include <mutex>

#include "common/error.hpp"

namespace qjobs::model {
namespace {

// Open mappings by start address, so that release_mapped can tell a view of
// a file from heap memory (where MADV_DONTNEED would zero live data).
std::mutex g_maps_mu;
std::map<const unsigned char*, const MappedFile*>& open_maps() {
  static std::map<const unsigned char*, const MappedFile*> m;
  return m;
}

}  // namespace

void MappedFile::release(std::size_t offset, std::size_t n) const {
  if (addr_ == nullptr || offset >= size_) return;
  n = std::min(n, size_ - offset);
  static const auto page = static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));
  const auto begin = reinterpret_cast<uintptr_t>(data() + offset);
  const auto first = (begin + page - 1) / page * page;  // whole pages inside the range only
  const auto last = (begin + n) / page * page;
  if (last > first) ::madvise(reinterpret_cast<void*>(first), last - first, MADV_DONTNEED);
}

void release_mapped(const at::Tensor& t) {
  if (!t.defined() || !t.device().is_cpu() || !t.has_storage()) return;
  // The whole storage: a view of a mapped tensor (a transpose, a narrow) releases its tensor.
  const auto* p = static_cast<const unsigned char*>(t.storage().data());
  const std::size_t n = t.storage().nbytes();
  if (p == nullptr || n == 0) return;
  std::lock_guard lock(g_maps_mu);
  auto& maps = open_maps();
  auto it = maps.upper_bound(p);
  if (it == maps.begin()) return;
  --it;
  const MappedFile* m = it->second;
  if (p + n > m->data() + m->size()) return;
  m->release(static_cast<std::size_t>(p - m->data()), n);
}

std::shared_ptr<MappedFile> MappedFile::open(const std::filesystem::path& path) {
  const auto where = path.string();
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw Error(ErrorKind::io, "cannot open " + where + ": " + std::strerror(errno));
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    ::close(fd);
    throw Error(ErrorKind::io, "cannot stat " + where + ": " + std::strerror(errno));
  }
  std::shared_ptr<MappedFile> m(new MappedFile());
  m->size_ = static_cast<std::size_t>(st.st_size);
  if (m->size_ == 0) {
    ::close(fd);
    return m;
  }
  void* addr = ::mmap(nullptr, m->size_, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
  ::close(fd);
  if (addr == MAP_FAILED) throw Error(ErrorKind::io, "cannot map " + where + ": " + std::strerror(errno));
  m->addr_ = addr;
  std::lock_guard lock(g_maps_mu);
  open_maps()[m->data()] = m.get();
  return m;
}

MappedFile::~MappedFile() {
  if (addr_ == nullptr) return;
  {
    std::lock_guard lock(g_maps_mu);
    open_maps().erase(data());
  }
  ::munmap(addr_, size_);
}

}  // namespace qjobs::model

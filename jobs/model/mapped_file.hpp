// A whole file mapped private and writable (copy-on-write): tensors may alias
// it, and an in-place edit of such a tensor never reaches the file. The
// mapping lives as long as the last shared_ptr to it.
#pragma once

#include <cstddef>
#include <filesystem>
#include <memory>

#include <ATen/core/Tensor.h>

namespace qjobs::model {

class MappedFile;

// When `t` aliases a MappedFile that is still open, releases the pages of its
// bytes (as MappedFile::release); otherwise does nothing. What streamed
// onloading and packaging call when they are done with a mapped tensor.
void release_mapped(const at::Tensor& t);

class MappedFile {
 public:
  // Throws Error(io) naming the file when it cannot be opened or mapped.
  static std::shared_ptr<MappedFile> open(const std::filesystem::path& path);
  ~MappedFile();
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  unsigned char* data() const { return static_cast<unsigned char*>(addr_); }
  std::size_t size() const { return size_; }
  // Gives the resident pages of [offset, offset + n) back to the kernel
  // (MADV_DONTNEED on the whole pages inside the range): the process's RSS
  // drops and the next read faults them in from the file again. An in-place
  // edit in those pages is lost, so call it only on data nobody modified.
  void release(std::size_t offset, std::size_t n) const;

 private:
  MappedFile() = default;
  void* addr_ = nullptr;
  std::size_t size_ = 0;
};

}  // namespace qjobs::model
